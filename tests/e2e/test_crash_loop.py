"""Crash loop (issue 4): `kill -9` the real receiver again and again while numbered events
arrive over TCP and ship to an OpenSearch-compatible server; at the end the index holds every
accepted event exactly once.

What counts as accepted is known without trusting the receiver:
- phase A: the receiver reported `events_spooled_total` = N for the N events sent, then it is
  killed at random moments while it ships them: all N must arrive, none twice;
- phase B: one connection per receiver incarnation, killed while the sender is still writing.
  What sat in the kernel's socket buffer was never accepted, so each connection may lose an
  unread tail, never anything else: its events in the index are a contiguous run from its first
  number. Every event found in the spool files right after a kill (spool dump) was accepted and
  must be indexed; so must at least as many as the incarnation reported spooled before the kill.
- last incarnation: its connection is closed cleanly, all of its events must arrive.
The same loop runs with Elasticsearch stopped and started at random moments (a TCP proxy in
front of the in-memory server is reset and refuses connections during an outage).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from receiver.config import ParseSettings
from receiver.parse import Parser
from receiver.spool import dump_pending
from tests.support import Receiver, TcpProxy, group_members, search_sorted, wait_for

SEED = int(os.environ.get("CRASH_LOOP_SEED", "4242"))
PHASE_A_EVENTS = 2500
PHASE_A_KILLS = 6
PHASE_B_KILLS = 16
LAST_EVENTS = 500
# events/s per connection in phase B: more than the in-memory server indexes of these documents
# (500-700/s measured on 2 cores), so a backlog still builds; 3000 only made the drain longer
RATE = 1000
BURST = 30
KILL_AFTER = (0.05, 0.6)  # seconds after an incarnation is healthy

ENV = {
    # Small bulk requests: many acknowledgements and checkpoints for a kill to land between.
    "HAPROXY_RECEIVER_ELASTICSEARCH__BATCH_EVENTS": "250",
    "HAPROXY_RECEIVER_ELASTICSEARCH__BATCH_AGE": "0.1",
    # Short backoff so an outage that ended is noticed quickly.
    "HAPROXY_RECEIVER_ELASTICSEARCH__RETRY_INITIAL": "0.05",
    "HAPROXY_RECEIVER_ELASTICSEARCH__RETRY_MAX": "0.3",
    "HAPROXY_RECEIVER_ELASTICSEARCH__REQUEST_TIMEOUT": "10",
    "HAPROXY_RECEIVER_SPOOL__SEGMENT_BYTES": "256KiB",  # rolls and deletions happen too
    "HAPROXY_RECEIVER_SPOOL__MAX_RECORD_BYTES": "64KiB",
    "HAPROXY_RECEIVER_LISTEN__MAX_MESSAGE_BYTES": "32KiB",
}

SPOOLED = "haproxy_receiver_events_spooled_total"
PENDING = "haproxy_receiver_spool_events_pending"


def line(conn: int, seq: int) -> bytes:
    """The JSON log-format of MISSION.md, with the connection and a global sequence number."""
    return (
        b'<134>Feb 26 05:17:05 crashhost haproxy[22]: {"ci":"10.0.0.1","cp":43174,'
        b'"t":"26/Feb/2020:05:17:05.438","ft":"fe_http","b":"be_app","s":"app1","Tt":92,'
        b'"ST":200,"r":"GET /item HTTP/1.1","conn":%d,"seq":%d}\n' % (conn, seq)
    )


class NumberedSender:
    """Writes numbered lines on one TCP connection until stopped, a limit, or a broken pipe."""

    def __init__(self, port: int, conn: int, first: int, *, rate: float | None = None,
                 limit: int | None = None) -> None:
        self.conn = conn
        self.first = first
        self.attempted = first  # every number below this was handed to the kernel, maybe partly
        self.error: OSError | None = None
        self._rate = rate
        self._limit = limit
        self._stop = threading.Event()
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self._thread = threading.Thread(target=self._run, name=f"sender-{conn}", daemon=True)
        self._thread.start()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def _run(self) -> None:
        next_at = time.monotonic()
        end = None if self._limit is None else self.first + self._limit
        while not self._stop.is_set() and (end is None or self.attempted < end):
            start = self.attempted
            stop = start + BURST if end is None else min(start + BURST, end)
            data = b"".join(line(self.conn, seq) for seq in range(start, stop))
            self.attempted = stop
            try:
                self._sock.sendall(data)
            except OSError as error:
                self.error = error
                return
            if self._rate:
                next_at += BURST / self._rate
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def close(self) -> None:
        """Stop writing and close cleanly: the receiver reads up to the end."""
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), f"sender {self.conn} stuck"
        with contextlib.suppress(OSError):  # already reset by a killed receiver
            self._sock.shutdown(socket.SHUT_WR)
        self._sock.close()


class Flapper:
    """Stops and starts the proxy in front of Elasticsearch at random moments."""

    def __init__(self, proxy: TcpProxy, rng: random.Random) -> None:
        self._proxy = proxy
        self._rng = rng
        self._stop = threading.Event()
        self.outages = 0
        self._thread = threading.Thread(target=self._run, name="flapper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._rng.uniform(0.2, 1.2)):
            if self._proxy.running:
                self._proxy.stop()
                self.outages += 1
            else:
                self._proxy.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._proxy.start()


@dataclass
class Ledger:
    """What the test knows about each connection, to judge the index at the end."""

    complete: dict[int, range] = field(default_factory=dict)  # conn -> numbers all accepted
    attempted: dict[int, range] = field(default_factory=dict)  # killed conn -> numbers written
    spooled_at_least: dict[int, int] = field(default_factory=dict)  # killed conn -> lower bound
    seen_in_spool: set[int] = field(default_factory=set)  # numbers found in the spool after kills
    kills_while_shipping: int = 0
    kills_while_receiving: int = 0


def spooled_numbers(spool_dir: Path) -> set[int]:
    """Sequence numbers of the pending events in the spool files (the receiver is dead)."""
    out = io.BytesIO()
    parser = Parser(ParseSettings())
    dump_pending(spool_dir, out, parse=lambda record: parser.parse(record.frame, record.received_at))
    numbers = set()
    for text in out.getvalue().splitlines():
        document = json.loads(text)
        assert "haproxy.seq" in document, document  # every spooled line is one of ours
        numbers.add(int(document["haproxy.seq"]))
    return numbers


def kill_9(receiver: Receiver, ledger: Ledger) -> None:
    """SIGKILL the receiver's process, check nothing of it lives on, read what it spooled."""
    assert receiver.process is not None
    pid = receiver.process.pid
    receiver.kill()
    wait_for(lambda: not group_members(pid), 10,
             "every process of the receiver to die with it (a child outliving kill -9 would "
             "keep shipping from the spool the next incarnation owns)")
    ledger.seen_in_spool |= spooled_numbers(receiver.spool_dir)


@pytest.fixture
def proxy(es_url: str) -> Iterator[TcpProxy]:
    forwarder = TcpProxy(es_url).start()
    yield forwarder
    forwarder.close()


@pytest.mark.parametrize("outages", [False, True], ids=["es_up", "es_outages"])
def test_kill_9_loop_indexes_every_accepted_event_exactly_once(
    outages: bool, tmp_path: Path, es_url: str, proxy: TcpProxy
) -> None:
    rng = random.Random(SEED * 2 + outages)
    receiver = Receiver(tmp_path, proxy.url, env=ENV)
    ledger = Ledger()
    flapper: Flapper | None = None
    try:
        receiver.start()
        # Phase A: everything accepted first, then killed while shipping.
        sender = NumberedSender(receiver.tcp_port, 0, 0, limit=PHASE_A_EVENTS)
        wait_for(lambda: sender.done, 30, "phase A sent")
        assert sender.error is None, sender.error
        wait_for(lambda: receiver.metric(SPOOLED) >= PHASE_A_EVENTS, 30, "phase A spooled")
        sender.close()
        ledger.complete[0] = range(0, PHASE_A_EVENTS)
        if outages:
            flapper = Flapper(proxy, random.Random(SEED + 7))
        for _ in range(PHASE_A_KILLS):
            time.sleep(rng.uniform(*KILL_AFTER))  # a random kill moment, not a synchronisation
            if receiver.metric(PENDING) > 0:
                ledger.kills_while_shipping += 1
            kill_9(receiver, ledger)
            receiver.start()

        # Phase B: killed while a sender is writing (and while shipping the backlog).
        next_seq = PHASE_A_EVENTS
        for conn in range(1, PHASE_B_KILLS + 1):
            sender = NumberedSender(receiver.tcp_port, conn, next_seq, rate=RATE)
            time.sleep(rng.uniform(*KILL_AFTER))
            spooled = int(receiver.metric(SPOOLED))
            if not sender.done:
                ledger.kills_while_receiving += 1
            kill_9(receiver, ledger)
            sender.close()
            ledger.attempted[conn] = range(next_seq, sender.attempted)
            ledger.spooled_at_least[conn] = spooled
            next_seq = sender.attempted
            receiver.start()

        # Last incarnation: a clean connection, then everything drains.
        last = PHASE_B_KILLS + 1
        sender = NumberedSender(receiver.tcp_port, last, next_seq, limit=LAST_EVENTS)
        wait_for(lambda: sender.done, 30, "last connection sent")
        sender.close()
        assert sender.error is None, sender.error
        wait_for(lambda: receiver.metric(SPOOLED) >= LAST_EVENTS, 30, "last events spooled")
        ledger.complete[last] = range(next_seq, next_seq + LAST_EVENTS)
        if flapper is not None:
            flapper.close()
        wait_for(lambda: receiver.metric(PENDING) == 0, 120, "the spool to drain into the index")
        assert receiver.stop() == 0
    finally:
        if flapper is not None:
            flapper.close()
        if receiver.process is not None and receiver.process.poll() is None:
            receiver.kill()

    rows = search_sorted(es_url, "haproxy.seq", ["haproxy.seq", "haproxy.conn"])
    judge(rows, ledger)
    assert ledger.kills_while_shipping >= 1, "no kill landed while events were pending"
    assert ledger.kills_while_receiving >= PHASE_B_KILLS // 2, "kills missed the senders"
    if flapper is not None:
        assert flapper.outages >= 3


def judge(rows: list[dict[str, object]], ledger: Ledger) -> None:
    numbers = [int(str(row["haproxy.seq"])) for row in rows]
    duplicates = sorted(n for n, times in Counter(numbers).items() if times > 1)
    assert not duplicates, f"indexed more than once: {duplicates[:20]} ({len(duplicates)} in all)"
    indexed = set(numbers)
    by_conn: dict[int, set[int]] = {}
    for row in rows:
        by_conn.setdefault(int(str(row["haproxy.conn"])), set()).add(int(str(row["haproxy.seq"])))
    for conn, expected in ledger.complete.items():
        missing = set(expected) - by_conn.get(conn, set())
        assert not missing, f"connection {conn}: accepted events missing: {sorted(missing)[:20]}"
    for conn, attempted in ledger.attempted.items():
        got = by_conn.get(conn, set())
        assert got <= set(attempted), f"connection {conn}: numbers never sent on it"
        run = range(attempted.start, attempted.start + len(got))
        assert got == set(run), (
            f"connection {conn}: a gap (only an unread tail may be lost): "
            f"missing {sorted(set(run) - got)[:20]}")
        assert len(got) >= ledger.spooled_at_least[conn], (
            f"connection {conn}: the receiver reported {ledger.spooled_at_least[conn]} spooled "
            f"before the kill, the index holds {len(got)}")
    lost_from_spool = ledger.seen_in_spool - indexed
    assert not lost_from_spool, f"in the spool after a kill, never indexed: {sorted(lost_from_spool)[:20]}"
    known = set().union(*ledger.complete.values(), *ledger.attempted.values())
    assert indexed <= known, f"numbers nobody sent: {sorted(indexed - known)[:20]}"
