"""SIGHUP reloads the configuration of a real `haproxy-receiver run`: listeners added, kept and
removed while a sender streams over the kept one (every line shipped exactly once), batching
and logging changed live, an invalid file refused with the running configuration kept, spool
settings named as needing a restart, and RELOADING=1 / READY=1 told to the service manager."""

from __future__ import annotations

import signal
import socket
import threading
from pathlib import Path

from tests.support import Receiver, free_port, search_sorted, wait_for
from tests.test_systemd import NotifySocket

LINE = ('<134>Nov 25 18:21:08 haproxy[7]: {{"ci":"10.0.0.1","cp":4000,"ft":"fe","b":"be",'
        '"s":"s1","ST":200,"r":"GET /{via}/{n} HTTP/1.1","seq":{n},"via":"{via}"}}')


def config(path: Path, udp: list[int], tcp: int, **extra: str) -> None:
    lines = ["[listen]", f"udp = {[f'127.0.0.1:{p}' for p in udp]}", f"tcp = ['127.0.0.1:{tcp}']"]
    sections: dict[str, list[str]] = {}
    for dotted, value in extra.items():
        section, _, key = dotted.partition("__")
        sections.setdefault(section, []).append(f"{key} = {value}")
    for section, settings in sections.items():
        lines += [f"[{section}]", *settings]
    path.write_text("\n".join(lines).replace('"', "'") + "\n")


class Streamer(threading.Thread):
    """Sends numbered lines over one TCP connection until stopped, 500 a second (what the
    in-memory test server indexes of these documents on a loaded 2-core machine: at 2,000 a
    second the test spent most of its time draining a backlog); `sent` is how many."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sent = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            batch = "".join(LINE.format(via="tcp", n=n) + "\n"
                            for n in range(self.sent, self.sent + 50))
            self.sock.sendall(batch.encode())
            self.sent += 50
            self.halt.wait(0.1)

    def stop(self) -> int:
        self.halt.set()
        self.join(10)
        self.sock.close()
        return self.sent


def test_sighup_applies_listeners_batching_and_logging_live_and_loses_nothing(
    tmp_path: Path, es_url: str
) -> None:
    first_udp, second_udp, tcp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM), free_port()
    path = tmp_path / "config.toml"
    config(path, [first_udp], tcp, elasticsearch__batch_age="0.2")
    notify = NotifySocket(str(tmp_path / "notify"))
    receiver = Receiver(tmp_path, es_url, listen_flags=False, extra=["--config", str(path)],
                        env={"NOTIFY_SOCKET": str(tmp_path / "notify")})
    receiver.start()
    streamer = Streamer(tcp)
    try:
        streamer.start()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(LINE.format(via="udp", n=0).encode(), ("127.0.0.1", first_udp))
        wait_for(lambda: receiver.metric("haproxy_receiver_events_shipped_total") > 100, 30,
                 "traffic flowing")
        config(path, [second_udp], tcp, elasticsearch__batch_age="0.05",
               elasticsearch__batch_events="77", service__log_level="'debug'")
        assert receiver.process is not None
        receiver.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload: done" in receiver.stderr(), 30, "the reload")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(LINE.format(via="udp", n=1).encode(), ("127.0.0.1", second_udp))
        sent = streamer.stop()
        wait_for(lambda: receiver.metric("haproxy_receiver_events_shipped_total") == sent + 2, 60,
                 f"every line shipped ({sent} + 2; {receiver.stderr_path})")
        stderr = receiver.stderr()
        assert f"stopped listening on udp://127.0.0.1:{first_udp}" in stderr
        assert f"listening on udp://127.0.0.1:{second_udp}" in stderr
        assert "DEBUG receiver.service: reload: running with" in stderr  # the log level changed
        assert "'batch_events': 77" in stderr
        assert receiver.process.poll() is None
        assert receiver.stop() == 0
    finally:
        streamer.halt.set()
        if receiver.process is not None and receiver.process.poll() is None:
            receiver.kill()
        messages = notify.poll()
        notify.close()
    rows = search_sorted(es_url, "haproxy.seq", ["haproxy.seq", "haproxy.via"])
    tcp_numbers = sorted(int(r["haproxy.seq"]) for r in rows if r["haproxy.via"] == "tcp")
    assert tcp_numbers == list(range(sent)), "a line was lost or indexed twice over the reload"
    assert sorted(int(r["haproxy.seq"]) for r in rows if r["haproxy.via"] == "udp") == [0, 1]
    reloading = next(i for i, m in enumerate(messages) if m.get("RELOADING") == "1")
    assert "MONOTONIC_USEC" in messages[reloading]
    assert any(m.get("READY") == "1" for m in messages[reloading + 1:])


def test_an_invalid_file_is_refused_and_spool_changes_wait_for_a_restart(tmp_path: Path) -> None:
    udp, tcp = free_port(socket.SOCK_DGRAM), free_port()
    path = tmp_path / "config.toml"
    config(path, [udp], tcp)
    receiver = Receiver(tmp_path, None, listen_flags=False, extra=["--config", str(path)])
    receiver.start()
    try:
        assert receiver.process is not None
        path.write_text("[listen]\nudp = 'not a list of addresses'\nmax_connections = -3\n")
        receiver.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "the new configuration is refused" in receiver.stderr(), 30, "refusal")
        assert "max_connections" in receiver.stderr() or "listen.udp" in receiver.stderr()
        config(path, [udp], tcp, spool__max_bytes="'1GiB'")
        receiver.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "change only at a restart" in receiver.stderr(), 30, "restart-only")
        assert "spool.max_bytes" in receiver.stderr()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:  # still serving
            client.sendto(LINE.format(via="udp", n=5).encode(), ("127.0.0.1", udp))
        wait_for(lambda: any(doc.get("haproxy.seq") == 5 for doc in receiver.stdout_documents()),
                 30, "shipped")
        assert receiver.stop() == 0
    finally:
        if receiver.process is not None and receiver.process.poll() is None:
            receiver.kill()
