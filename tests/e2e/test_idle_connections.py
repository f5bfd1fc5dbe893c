"""Real HAProxy 2.6 and the receiver's idle timeout (issue 17, item 4): HAProxy keeps its log
connection open however long it is idle and reconnects at once when the receiver ends it, so
closing idle connections (and evicting them when the limits are reached) costs no line.
haproxy/json-tcp.cfg as shipped (`log tcp@`), documents on stdout."""

from __future__ import annotations

import functools
import http.client
from pathlib import Path

from tests.support import REPO, Backend, Receiver, free_port, haproxy, wait_for


def get(port: int, path: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        assert connection.getresponse().status == 200
    finally:
        connection.close()


def test_haproxy_reconnects_after_an_idle_close_and_no_line_is_lost(tmp_path: Path) -> None:
    receiver = Receiver(tmp_path, None, udp=False,
                        env={"HAPROXY_RECEIVER_LISTEN__IDLE_TIMEOUT": "1"})
    backend = Backend()
    frontend = free_port()
    env = {"RECEIVER_ADDR": f"127.0.0.1:{receiver.tcp_port}", "FRONTEND_BIND": f"127.0.0.1:{frontend}",
           "BACKEND_ADDR": f"127.0.0.1:{backend.port}"}
    received = "haproxy_receiver_messages_received_total"

    def closed_idle(at_least: int) -> bool:
        metric = "haproxy_receiver_connections_refused_total"
        return receiver.metric(metric, reason="idle_timeout") >= at_least

    try:
        receiver.start()
        with haproxy(REPO / "haproxy" / "json-tcp.cfg", env, tmp_path):
            get(frontend, "/before")
            wait_for(lambda: receiver.metric(received) >= 1, 20, "the first line")
            for closes in (1, 2):  # two idle closes, each followed by traffic
                wait_for(functools.partial(closed_idle, closes), 20, f"idle close {closes}")
                wait_for(lambda: receiver.metric("haproxy_receiver_connections_open") == 1, 20,
                         "HAProxy connected again")
                for i in range(20):
                    get(frontend, f"/after-{closes}-{i}")
            wait_for(lambda: receiver.metric(received) >= 41, 20, "every line")
            wait_for(lambda: receiver.metric("haproxy_receiver_spool_events_pending") == 0, 20,
                     "shipped")
        assert receiver.stop() == 0
    finally:
        backend.close()
        if receiver.process is not None and receiver.process.poll() is None:
            receiver.kill()

    paths = [document.get("url.path") for document in receiver.stdout_documents()]
    traffic = sorted(path for path in paths if path)
    expected = ["/before"] + [f"/after-{r}-{i}" for r in (1, 2) for i in range(20)]
    assert traffic == sorted(expected)
