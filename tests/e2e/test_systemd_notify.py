"""`haproxy-receiver run` under a service manager: the notify protocol over a real Unix datagram
socket, as systemd runs a `Type=notify` unit with `WatchdogSec=`: READY=1 only once senders are
served, STATUS= summaries, WATCHDOG=1 pings, STOPPING=1 at SIGTERM."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from tests.support import Receiver, wait_for
from tests.test_systemd import NotifySocket

LINE = b"<134>Nov 25 18:21:08 haproxy[7]: Proxy fe started."


def test_ready_after_the_listeners_are_bound_then_status_watchdog_and_stopping(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    manager = NotifySocket(path)
    receiver = Receiver(tmp_path, None, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    try:
        receiver.start()
        wait_for(lambda: any("READY" in m for m in manager.poll()), 30, "READY=1")
        # At READY=1 both listeners take traffic: the TCP port accepts and a datagram sent now
        # is received (not lost to a socket bound later).
        with socket.create_connection(("127.0.0.1", receiver.tcp_port), timeout=5) as tcp:
            tcp.sendall(LINE + b"\n")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(LINE, ("127.0.0.1", receiver.udp_port))
        wait_for(lambda: receiver.stdout_path.read_bytes().count(b"\n") == 2, 20, "both documents")
        wait_for(lambda: sum("WATCHDOG" in m for m in manager.poll()) >= 3, 20, "watchdog pings")
        assert receiver.stop(signal.SIGTERM) == 0
    finally:
        if receiver.process is not None and receiver.process.poll() is None:
            receiver.kill()
        messages = manager.poll()
        manager.close()
    ready = next(i for i, m in enumerate(messages) if "READY" in m)
    assert messages[0]["STATUS"].startswith("starting")
    assert messages[ready]["READY"] == "1"
    assert messages[ready]["STATUS"].startswith("ready; 2 listeners, received 0")
    assert not any("WATCHDOG" in m for m in messages[:ready])  # pings start once ready
    assert "STOPPING" in messages[-1] and messages[-1]["STATUS"].startswith("stopping: shipping")
    assert not any("STOPPING" in m for m in messages[:-1])
