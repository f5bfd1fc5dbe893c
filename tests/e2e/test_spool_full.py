"""Full spool (issue 4): a small `spool.max_bytes` with Elasticsearch unreachable, under each
`when_full` policy, behaves as documented and the metrics add up:

    messages received = events shipped + events dropped (every reason) + events pending

`block` drops nothing: a TCP sender stalls while the spool is full and finishes once
Elasticsearch is back; UDP datagrams meanwhile wait in the kernel and the excess is dropped
there, counted (`udp_receive_drops`). `drop_newest` keeps the oldest events, `drop_oldest`
the newest. A real full disk (a small tmpfs) behaves like a full spool and recovers by itself.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.support import (
    Receiver,
    TcpProxy,
    http_get_text,
    search_sorted,
    small_tmpfs,
    wait_for,
)

KIB = 1024
PAD = "p" * 1000  # ~1.3 KB lines: the 128 KiB spool holds a few dozen events
SMALL_SPOOL = {
    "HAPROXY_RECEIVER_SPOOL__SEGMENT_BYTES": "64KiB",
    "HAPROXY_RECEIVER_SPOOL__MAX_BYTES": "128KiB",
    "HAPROXY_RECEIVER_SPOOL__MAX_RECORD_BYTES": "16KiB",
    "HAPROXY_RECEIVER_LISTEN__MAX_MESSAGE_BYTES": "8KiB",
    "HAPROXY_RECEIVER_SERVICE__SHUTDOWN_GRACE": "1",
    "HAPROXY_RECEIVER_ELASTICSEARCH__RETRY_INITIAL": "0.05",
    "HAPROXY_RECEIVER_ELASTICSEARCH__RETRY_MAX": "0.3",
    "HAPROXY_RECEIVER_ELASTICSEARCH__BATCH_AGE": "0.05",  # a 128 KiB spool drains in small bulks
    # Fixed daily indices: with `auto` the shipper reads nothing until Elasticsearch says
    # whether it has data streams, and these tests need it holding events while it is down.
    "HAPROXY_RECEIVER_ELASTICSEARCH__DESTINATION": "index",
}

RECEIVED = "haproxy_receiver_messages_received_total"
SHIPPED = "haproxy_receiver_events_shipped_total"
DROPPED = "haproxy_receiver_events_dropped_total"
PENDING = "haproxy_receiver_spool_events_pending"
SPOOLED = "haproxy_receiver_events_spooled_total"


def line(seq: int, via: str = "tcp") -> bytes:
    return (
        b'<134>Feb 26 05:17:05 fullhost haproxy[22]: {"ci":"10.0.0.1","cp":43174,'
        b'"t":"26/Feb/2020:05:17:05.438","ft":"fe_http","b":"be_app","s":"app1","ST":200,'
        b'"r":"GET /item HTTP/1.1","via":"%s","pad":"%s","seq":%d}\n' % (via.encode(), PAD.encode(), seq)
    )


class TcpSender:
    """Sends `numbers` over one connection in a thread; `progress` shows whether it stalls."""

    def __init__(self, port: int, numbers: range) -> None:
        self.numbers = numbers
        self.progress = 0  # lines handed to the kernel: numbers[:progress] were sent
        self.error: OSError | None = None
        self._finish = threading.Event()
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * KIB)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            for start in range(self.numbers.start, self.numbers.stop, 20):
                if self._finish.is_set():
                    break
                chunk = range(start, min(start + 20, self.numbers.stop))
                self._sock.sendall(b"".join(line(seq) for seq in chunk))
                self.progress += len(chunk)
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as error:
            self.error = error

    def finish(self) -> None:
        """Send no more chunks after the one in progress (which may be stalled)."""
        self._finish.set()

    @property
    def sent(self) -> range:
        return self.numbers[: self.progress]

    def close(self) -> None:
        self._thread.join(60)
        self._sock.close()


def unchanged_for(value: Callable[[], object], seconds: float) -> bool:
    """True if `value()` stays the same for `seconds` (observing a stall, a negative fact)."""
    first = value()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value() != first:
            return False
        time.sleep(0.05)
    return True


def readiness(receiver: Receiver) -> str:
    try:
        return http_get_text(f"http://127.0.0.1:{receiver.metrics_port}/readyz")
    except urllib.error.HTTPError as error:
        return f"{error.code} {error.read().decode()}"


class Counts(NamedTuple):
    received: float
    shipped: float
    dropped: float
    pending: float

    def __bool__(self) -> bool:
        return self.received == self.shipped + self.dropped + self.pending


def assert_accounted(receiver: Receiver, moment: str) -> Counts:
    """received = shipped + dropped + pending once things are quiet. Waited for, not asserted
    on one scrape: the shipper may run in a child process whose counters reach the endpoint a
    moment later."""
    def counts() -> Counts:
        return Counts(receiver.metric(RECEIVED), receiver.metric(SHIPPED),
                      receiver.metric(DROPPED), receiver.metric(PENDING))

    return wait_for(counts, 5, f"received = shipped + dropped + pending ({moment})")


@pytest.fixture
def proxy(es_url: str) -> Iterator[TcpProxy]:
    forwarder = TcpProxy(es_url)  # not started: Elasticsearch unreachable until a test says so
    yield forwarder
    forwarder.close()




@pytest.mark.parametrize("policy", [
    "drop_newest",
    "drop_oldest",
])
def test_dropping_policies_count_every_event(
    policy: str, tmp_path: Path, es_url: str, proxy: TcpProxy
) -> None:
    first, sent = range(10), range(300)
    receiver = Receiver(tmp_path, proxy.url,
                        env={**SMALL_SPOOL, "HAPROXY_RECEIVER_SPOOL__WHEN_FULL": policy})
    try:
        receiver.start()
        # The first events are read by the shipper and wait in a failing bulk request while
        # the rest fills the spool, as when Elasticsearch is down or slower than HAProxy.
        sender = TcpSender(receiver.tcp_port, first)
        wait_for(lambda: receiver.metric("haproxy_receiver_bulk_requests_total") > 0, 30,
                 "a first bulk request tried")
        sender.close()
        sender = TcpSender(receiver.tcp_port, sent[len(first):])
        wait_for(lambda: sender.done, 30, "the sender finished (dropping policies never block)")
        sender.close()
        assert sender.error is None, sender.error
        wait_for(lambda: receiver.metric(RECEIVED) == len(sent), 30, "every line received")
        _, shipped, dropped, pending = assert_accounted(receiver, "full, Elasticsearch down")
        assert shipped == 0 and dropped > 0 and pending > 0
        reason = "spool_full" if policy == "drop_newest" else "spool_full_oldest"
        assert receiver.metric(DROPPED, reason=reason) == dropped
        assert "dropping" in receiver.stderr() or "deleted the oldest segment" in receiver.stderr()

        proxy.start()
        wait_for(lambda: receiver.metric(PENDING) == 0, 60, "the spool drained")
        _, shipped, dropped_after, _ = assert_accounted(receiver, "drained")
        assert dropped_after == dropped and shipped == pending
        assert receiver.stop() == 0
    finally:
        if receiver.process is not None and receiver.process.poll() is None:
            receiver.kill()

    numbers = [int(row["haproxy.seq"]) for row in search_sorted(es_url, "haproxy.seq", ["haproxy.seq"])]
    assert len(numbers) == shipped and len(set(numbers)) == len(numbers)
    if policy == "drop_newest":  # the oldest events are kept
        assert numbers == list(range(len(numbers)))
    else:
        # Whole segments were deleted, the oldest not yet read first; what the shipper already
        # held in its (failing) bulk requests is still delivered. The newest events are kept,
        # and every event is either in the index or counted dropped.
        assert numbers == sorted(numbers) and numbers[-1] == sent.stop - 1
        assert len(numbers) + dropped == len(sent)


def test_block_stalls_the_sender_drops_nothing_and_resumes(
    tmp_path: Path, es_url: str, proxy: TcpProxy
) -> None:
    sent = range(1_000_000)  # more than any socket buffers: the sender must stall
    datagrams = range(100_000, 100_300)
    receiver = Receiver(tmp_path, proxy.url, env={
        **SMALL_SPOOL, "HAPROXY_RECEIVER_SPOOL__WHEN_FULL": "block",
        "HAPROXY_RECEIVER_LISTEN__UDP_RECEIVE_BUFFER": "64KiB",  # the kernel drops the excess
    })
    sender: TcpSender | None = None
    try:
        receiver.start()
        sender = TcpSender(receiver.tcp_port, sent)
        wait_for(lambda: readiness(receiver).startswith("503"), 30, "the spool to fill")
        assert "spool full" in readiness(receiver)
        running = sender
        wait_for(lambda: unchanged_for(lambda: running.progress, 1.0), 30, "the sender to stall")
        assert not sender.done and sender.progress < len(sent), "the sender was never held back"
        sender.finish()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for seq in datagrams:
                udp.sendto(line(seq, "udp"), ("127.0.0.1", receiver.udp_port))
        wait_for(lambda: receiver.metric("haproxy_receiver_udp_receive_drops") > 0, 10,
                 "UDP drops in the kernel counted while the spool is full")
        assert receiver.metric(RECEIVED, transport="udp") == 0
        assert receiver.metric(DROPPED) == 0 and receiver.metric(PENDING) > 0

        proxy.start()  # Elasticsearch is back: the spool drains, reading resumes
        wait_for(lambda: sender is not None and sender.done, 120, "the sender to finish")
        sender.close()
        assert sender.error is None, sender.error
        wait_for(lambda: receiver.metric(RECEIVED, transport="tcp") == len(sender.sent), 60,
                 "TCP received")
        wait_for(lambda: receiver.metric(PENDING) == 0, 120, "the spool drained")
        received, shipped, dropped, _ = assert_accounted(receiver, "drained after the stall")
        assert dropped == 0 and shipped == received
        udp_received = receiver.metric(RECEIVED, transport="udp")
        udp_dropped = receiver.metric("haproxy_receiver_udp_receive_drops")
        assert udp_received + udp_dropped == len(datagrams)
        assert receiver.stop() == 0
    finally:
        if receiver.process is not None and receiver.process.poll() is None:
            receiver.kill()
        if sender is not None:
            sender.close()

    rows = search_sorted(es_url, "haproxy.seq", ["haproxy.seq", "haproxy.via"])
    tcp = [int(row["haproxy.seq"]) for row in rows if row["haproxy.via"] == "tcp"]
    assert tcp == list(sender.sent), "TCP events lost or duplicated under `block`"
    assert len(rows) - len(tcp) == udp_received


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB filesystem (tmpfs), where the machine lets the tests mount one."""
    with small_tmpfs(tmp_path / "disk", 1024 * 1024) as point:
        yield point


def test_a_full_disk_drops_counted_and_recovers_by_itself(
    tmp_path: Path, es_url: str, proxy: TcpProxy, small_disk: Path
) -> None:
    receiver = Receiver(tmp_path, proxy.url, spool_dir=small_disk / "spool", env={
        "HAPROXY_RECEIVER_SPOOL__SEGMENT_BYTES": "256KiB",  # max_bytes stays 4 GiB: the disk fills
        "HAPROXY_RECEIVER_SPOOL__MAX_RECORD_BYTES": "16KiB",
        "HAPROXY_RECEIVER_LISTEN__MAX_MESSAGE_BYTES": "8KiB",
        "HAPROXY_RECEIVER_SPOOL__WHEN_FULL": "drop_newest",
        "HAPROXY_RECEIVER_SERVICE__SHUTDOWN_GRACE": "1",
        "HAPROXY_RECEIVER_ELASTICSEARCH__RETRY_INITIAL": "0.05",
        "HAPROXY_RECEIVER_ELASTICSEARCH__RETRY_MAX": "0.3",
    })
    first, second = range(0, 1000), range(1000, 1100)
    try:
        receiver.start()
        sender = TcpSender(receiver.tcp_port, first)
        wait_for(lambda: sender.done, 30, "the sender finished")
        sender.close()
        wait_for(lambda: receiver.metric(RECEIVED) == len(first), 30, "every line received")
        disk_full = receiver.metric(DROPPED, reason="disk_full")
        assert disk_full > 0, receiver.stderr()[-2000:]
        assert "disk full" in receiver.stderr()
        assert_accounted(receiver, "disk full, Elasticsearch down")
        assert receiver.process is not None and receiver.process.poll() is None

        proxy.start()  # shipping frees space; new events are accepted again
        wait_for(lambda: receiver.metric(PENDING) == 0, 60, "the spool drained")
        sender = TcpSender(receiver.tcp_port, second)
        wait_for(lambda: sender.done, 30, "the second sender finished")
        sender.close()
        wait_for(lambda: receiver.metric(RECEIVED) == 1100, 30, "the second round received")
        wait_for(lambda: receiver.metric(PENDING) == 0, 60, "the second round shipped")
        _, shipped, dropped, _ = assert_accounted(receiver, "space returned, drained")
        assert dropped == disk_full, "events dropped after space returned"
        assert receiver.stop() == 0
    finally:
        if receiver.process is not None and receiver.process.poll() is None:
            receiver.kill()

    numbers = {int(row["haproxy.seq"]) for row in search_sorted(es_url, "haproxy.seq", ["haproxy.seq"])}
    assert set(second) <= numbers and len(numbers) == shipped
    assert os.path.ismount(small_disk)
