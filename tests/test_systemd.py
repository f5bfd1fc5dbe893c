"""The notify protocol spoken to a real Unix datagram socket, as systemd listens on it: fields,
abstract addresses, no-op without systemd, and a watchdog that stops pinging while a loop is
silent."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from receiver.systemd import Notifier, ServiceNotifier, Watchdog, watchdog_interval
from tests.support import wait_for


class NotifySocket:
    """The service manager's end: a bound datagram socket collecting notifications."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.05)
        self.messages: list[dict[str, str]] = []

    def poll(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return self.messages
            self.messages.append(dict(line.split("=", 1) for line in data.decode().split("\n")))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[NotifySocket, str]]:
    path = str(tmp_path / "notify")
    listener = NotifySocket(path)
    yield listener, path
    listener.close()


def test_fields_arrive_in_one_datagram(manager: tuple[NotifySocket, str]) -> None:
    listener, path = manager
    notifier = Notifier(path)
    assert notifier.ready("ready; 2 listeners\nsecond line")
    assert notifier.stopping()
    assert listener.poll() == [{"READY": "1", "STATUS": "ready; 2 listeners second line"},
                               {"STOPPING": "1", "STATUS": "stopping"}]


def test_reloading_carries_the_monotonic_clock_in_microseconds(manager: tuple[NotifySocket, str]) -> None:
    listener, path = manager
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    Notifier(path).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    (message,) = listener.poll()
    assert message["RELOADING"] == "1"
    assert before <= int(message["MONOTONIC_USEC"]) <= after


def test_abstract_socket_address() -> None:
    name = f"haproxy-receiver-test-{os.getpid()}"
    listener = NotifySocket("\0" + name)
    try:
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        assert notifier.enabled and notifier.address_text == "@" + name
        assert notifier.watchdog()
        assert listener.poll() == [{"WATCHDOG": "1"}]
    finally:
        listener.close()


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert not notifier.ready() and not notifier.stopping() and not notifier.watchdog()
    service = ServiceNotifier(lambda: pytest.fail("no summary is computed without systemd"), env={})
    service.starting()
    service.ready()
    service.tick()
    service.stopping()
    service.close()
    assert not service.watchdog.enabled


def test_an_undeliverable_notification_is_logged_once_and_never_raises(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    with caplog.at_level(logging.WARNING, logger="receiver.systemd"):
        assert not notifier.status("a")
        assert not notifier.status("b")
    assert len(caplog.records) == 1 and "nobody-listens" in caplog.records[0].getMessage()


def test_watchdog_is_for_this_process_only() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None  # our parent's
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


def test_watchdog_pings_only_while_every_heartbeat_is_fresh(manager: tuple[NotifySocket, str]) -> None:
    listener, path = manager
    watchdog = Watchdog(Notifier(path), timeout=0.2)  # checks every 0.1 s
    steady = watchdog.heartbeat("main loop", max_silence=3600)
    wedged = watchdog.heartbeat("recv udp://127.0.0.1:5140", max_silence=0.5)
    watchdog.start()
    try:
        wait_for(lambda: any("WATCHDOG" in m for m in listener.poll()), 10, "a ping")
        # Stop beating `wedged`: the watchdog says so in STATUS= and pings no more...
        wait_for(lambda: any("wedged" in m.get("STATUS", "") for m in listener.poll()), 10,
                 "the wedged status")
        checks = watchdog.checks
        wait_for(lambda: watchdog.checks >= checks + 3, 10, "three more rounds")
        resumed = len(listener.poll())  # before the beats: a ping may follow them at once
        steady.beat()
        wedged.beat()  # ...until the loop makes progress again
        wait_for(lambda: any("WATCHDOG" in m for m in listener.poll()[resumed:]), 10, "pings again")
    finally:
        watchdog.stop()
    messages = listener.poll()
    stale_at = next(i for i, m in enumerate(messages) if "wedged" in m.get("STATUS", ""))
    assert messages[stale_at]["STATUS"].startswith("wedged: no progress from recv udp://127.0.0.1:5140")
    assert "main loop" not in messages[stale_at]["STATUS"]
    assert not any("WATCHDOG" in m for m in messages[stale_at:resumed])
    assert "WATCHDOG" in messages[stale_at - 1]


def test_a_removed_heartbeat_is_no_longer_watched(manager: tuple[NotifySocket, str]) -> None:
    _, path = manager
    watchdog = Watchdog(Notifier(path), timeout=10.0)
    closed = watchdog.heartbeat("closed listener", max_silence=0.0)
    assert watchdog.stale(time.monotonic() + 1) == [closed]
    watchdog.remove(closed)
    assert watchdog.stale(time.monotonic() + 1) == []
