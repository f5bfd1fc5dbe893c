"""An in-memory stand-in for receiver.spool's reader (its three members), for shipper tests.

Records are real spool records (receiver/event.py: documents, or messages as received) at real
`Position`s; `acknowledge` records which batches came back and what they said was shipped and
dead-lettered, so a test can check that exactly the delivered or dead-lettered ones were
acknowledged. `read` and `wait` belong to one thread (overlaps are recorded in `overlaps`: the
harness asserts there are none); `acknowledge` may come from any.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from receiver.event import encode_document
from receiver.spool.ledger import Counters
from receiver.spool.records import Batch, Position, Record


def document(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "@timestamp": f"2026-11-25T18:21:{n % 60:02d}.761Z",
        "source.ip": f"10.0.{n // 250 % 250}.{n % 250 + 1}",
        "source.port": 40000 + n % 20000,
        "http.request.method": "GET",
        "url.original": f"/item/{n}?q=1",
        "http.response.status_code": 200,
        "haproxy.bytes_read": 1000 + n,
        "haproxy.frontend_name": "web",
        "seq": n,
        **extra,
    }


class MemorySpool:
    identity = "testspool"

    def __init__(self, documents: list[dict[str, Any]] | None = None,
                 batch_records: int = 100) -> None:
        self._records: list[Record] = []
        self._next = 0
        self._batch_records = batch_records
        self._cond = threading.Condition()
        self.acknowledged: list[Batch] = []
        self.overlaps: list[str] = []
        self._guard = threading.Lock()
        self.outstanding: dict[int, Batch] = {}  # by start
        self.counters: Counters | None = None  # what the ledger would count into
        self.joins = 0
        self.add(documents or [])

    def add(self, documents: list[dict[str, Any]]) -> None:
        with self._cond:
            for doc in documents:
                position = Position(1, len(self._records) * 64)
                self._records.append(Record(position, encode_document(doc), time.time()))
            self._cond.notify_all()

    def add_payload(self, payload: bytes) -> None:
        with self._cond:
            self._records.append(Record(Position(1, len(self._records) * 64), payload, time.time()))
            self._cond.notify_all()

    def _enter(self, what: str) -> None:
        if not self._guard.acquire(blocking=False):
            self.overlaps.append(f"{what} in {threading.current_thread().name}")
            self._guard.acquire()

    def read(self, max_records: int, max_bytes: int) -> Batch | None:
        self._enter("read")
        try:
            return self._read(max_records, max_bytes)
        finally:
            self._guard.release()

    def _read(self, max_records: int, max_bytes: int) -> Batch | None:
        with self._cond:
            if self._next >= len(self._records):
                return None
            count = min(max_records, self._batch_records, len(self._records) - self._next)
            records = self._records[self._next : self._next + count]
            start = self._next * 64
            self._next += count
            batch = Batch(1, self.identity, start, self._next * 64, self._next, records)
            self.outstanding[batch.start] = batch
            return batch

    def wait(self, timeout: float) -> bool:
        self._enter("wait")
        try:
            with self._cond:
                return self._cond.wait_for(lambda: self._next < len(self._records), timeout)
        finally:
            self._guard.release()

    def acknowledge(self, batch: Batch, shipped: int = 0,
                    dead: tuple[tuple[str, int], ...] = ()) -> None:
        with self._cond:
            # Counted before the batch shows as acknowledged: a test that waited for the
            # acknowledgement reads the counters next (it once read them in between).
            if self.counters is not None:  # as the ledger does, for a batch acknowledged in order
                self.counters.shipped(shipped)
                for reason, count in dead:
                    self.counters.dead_lettered(reason, count)
            self.outstanding.pop(batch.start)
            self.acknowledged.append(batch)

    def join(self, first: Batch, then: Batch) -> bool:
        """As the spool reader joins: `then` starts where `first` ends (`joins` counts them)."""
        with self._cond:
            if then.start != first.end or not first.records or not then.records:
                return False
            self.outstanding.pop(then.start)
            first.records += then.records
            first.end, first.ordinal = then.end, then.ordinal
            self.joins += 1
            return True

    def acknowledged_records(self) -> int:
        with self._cond:
            return sum(len(b.records) for b in self.acknowledged)
