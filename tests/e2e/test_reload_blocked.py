"""SIGHUP while a full spool under `block` holds a TCP sender (issue 27, item 3): a `[listen]`
change cannot be taken by the stream listeners' loop while a connection's batch waits for room,
so it is applied once there is room; the process never ends, and every line is indexed exactly
once. A real receiver; Elasticsearch behind a proxy that is down until the change is pending."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from tests.e2e.test_reload import LINE, Streamer, config
from tests.support import Receiver, TcpProxy, free_port, http_get_text, search_sorted, wait_for

SMALL_SPOOL = {"spool__max_bytes": "'512KiB'", "spool__segment_bytes": "'256KiB'",
               "spool__max_record_bytes": "'80KiB'", "spool__when_full": "'block'",
               "elasticsearch__retry_initial": "0.1",
               "elasticsearch__retry_max": "0.5", "elasticsearch__batch_age": "0.1"}


class Sender(Streamer):
    """`Streamer` that ends by itself after `limit` lines; `finish()` waits for its last
    `sendall` (it may wait long on a full spool) instead of closing under it."""

    def __init__(self, port: int, limit: int) -> None:
        super().__init__(port)
        self.limit = limit

    def run(self) -> None:
        while not self.halt.is_set() and self.sent < self.limit:
            batch = "".join(LINE.format(via="tcp", n=n) + "\n"
                            for n in range(self.sent, self.sent + 50))
            self.sock.sendall(batch.encode())
            self.sent += 50
            self.halt.wait(0.025)

    def finish(self) -> int:
        self.join(120)
        assert not self.is_alive(), "the sender still blocked"
        self.sock.close()
        return self.sent


def not_ready(receiver: Receiver) -> bool:
    try:
        http_get_text(f"http://127.0.0.1:{receiver.metrics_port}/readyz")
    except OSError as error:  # urllib's HTTPError for the 503
        return "503" in str(error)
    return False


def test_a_listen_change_waits_for_room_and_the_process_lives(tmp_path: Path, es_url: str) -> None:
    first_udp, second_udp, tcp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM), free_port()
    path = tmp_path / "config.toml"
    config(path, [first_udp], tcp, **SMALL_SPOOL)
    proxy = TcpProxy(es_url)  # down: nothing ships, the spool fills
    receiver = Receiver(tmp_path, proxy.url, listen_flags=False, extra=["--config", str(path)])
    receiver.start()
    streamer = Sender(tcp, 8000)
    try:
        streamer.start()
        wait_for(lambda: not_ready(receiver), 60, "the spool full")
        config(path, [first_udp, second_udp], tcp, **SMALL_SPOOL)
        assert receiver.process is not None
        receiver.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "the [listen] change completes once they go on" in receiver.stderr(),
                 60, "the reload to wait for room")
        assert receiver.process.poll() is None
        # a second change meanwhile is refused with a log line, and the process lives on
        config(path, [second_udp], tcp, **SMALL_SPOOL)
        receiver.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "the previous [listen] change still waits" in receiver.stderr(), 60,
                 "the second reload refused")
        assert receiver.process.poll() is None
        proxy.start()  # room returns
        wait_for(lambda: "reload: the [listen] change is applied" in receiver.stderr(), 60,
                 "the change applied")
        assert f"listening on udp://127.0.0.1:{second_udp}" in receiver.stderr()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(LINE.format(via="udp", n=0).encode(), ("127.0.0.1", second_udp))
        sent = streamer.finish()
        assert sent == 8000
        wait_for(lambda: receiver.metric("haproxy_receiver_events_shipped_total") == sent + 1, 90,
                 f"every line shipped ({sent} + 1)")
        inflow, outflow = receiver.flows()
        assert (inflow, outflow) == (sent + 1, sent + 1)
        assert receiver.metric("haproxy_receiver_events_dropped_total") == 0
        assert receiver.process.poll() is None
        assert receiver.stop() == 0
    finally:
        streamer.halt.set()
        proxy.close()
        if receiver.process is not None and receiver.process.poll() is None:
            receiver.kill()
    rows = search_sorted(es_url, "haproxy.seq", ["haproxy.seq", "haproxy.via"])
    tcp_numbers = sorted(int(r["haproxy.seq"]) for r in rows if r["haproxy.via"] == "tcp")
    assert tcp_numbers == list(range(sent)), "a line was lost or indexed twice over the reload"
    assert [int(r["haproxy.seq"]) for r in rows if r["haproxy.via"] == "udp"] == [0]
