"""The spool reader of one worker: reads the segments the ledger leases to it, in order of their
records, and reports back what it read and what was delivered.

A lease (spool/ledger.py) is one whole segment from where its acknowledged prefix ends. The
reader tails it (the writer may still append: an inotify watch wakes it) until the segment is
sealed — its footer, or the ledger's word when a full disk left no room for a footer — then lets
it go and asks for the next. Several workers each run a reader on the same spool; they never
read the same segment at once. `acknowledge` reports a delivered batch; the ledger keeps the
prefixes. The reader talks to the ledger through a `LedgerClient`: directly in the owning
process (`LocalLedger`), over a pipe from a worker process (receiver/workers/).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Protocol

from receiver.spool import notify
from receiver.spool.directory import new_identity, quarantine
from receiver.spool.errors import SpoolError
from receiver.spool.format import (
    FRAME_SIZE,
    HEADER_SIZE,
    SEGMENT_SUFFIX,
    Step,
    frame_at,
    next_valid_frame,
    parse_header,
    read_records,
    records_in,
    segment_name,
)
from receiver.spool.ledger import Ack, Lease, Ledger, Worker
from receiver.spool.records import Batch, Record

log = logging.getLogger(__name__)

# A damaged frame in the segment being written could be a write still being copied in; only
# once it stays damaged this long is it skipped as corruption.
_DAMAGE_GRACE = 1.0
# The reader sleeps on an inotify watch until a segment is written; it still looks at the
# files this often, so a notification the filesystem never delivers (or the ledger's word that
# a segment is sealed) costs latency, not events.
_WATCHED_POLL_INTERVAL = 0.25
_POLL_INTERVAL = 0.002  # without inotify
# Read chunks are sized from the average frame of the last batch (with this margin), so a
# batch of 2000 events reads ~2 MB rather than the whole segment; a short chunk only costs one
# more `read` call. The first read of a reader assumes frames this large.
_CHUNK_MARGIN = 1.25
_FIRST_FRAME_GUESS = 1024
_MIN_CHUNK = 65536


class LedgerClient(Protocol):
    """What a reader asks of the ledger (spool/ledger.py)."""

    def lease(self) -> Lease | None:
        """The next segment to read, or None for now (a later `wait_for_lease` may get one)."""

    def wait_for_lease(self, timeout: float) -> bool:
        """Block until a segment may be leased (or `timeout`)."""

    def sealed_end(self, segment: int) -> int | None:
        """Where the records of a segment this reader holds end, once the ledger knows."""

    def acknowledge(self, ack: Ack) -> None: ...

    def release(self, segment: int, read: int, offset: int) -> None: ...


class LeaseNews:
    """What the ledger told one reader and it has not taken yet: segments granted to it, and
    where the segments it reads were sealed. The part every `LedgerClient` shares."""

    def __init__(self) -> None:
        self._news = threading.Condition()
        self._granted: list[Lease] = []
        self._sealed: dict[int, int] = {}

    def granted(self, lease: Lease) -> None:
        with self._news:
            self._granted.append(lease)
            self._news.notify_all()

    def sealed(self, segment: int, end: int) -> None:
        with self._news:
            self._sealed[segment] = end
            self._news.notify_all()

    def _take(self) -> Lease | None:
        with self._news:
            return self._granted.pop(0) if self._granted else None

    def wait_for_lease(self, timeout: float) -> bool:
        with self._news:
            return self._news.wait_for(lambda: bool(self._granted), timeout)

    def sealed_end(self, segment: int) -> int | None:
        with self._news:
            return self._sealed.get(segment)

    def _forget(self, segment: int) -> None:
        with self._news:
            self._sealed.pop(segment, None)


class LocalLedger(LeaseNews):
    """A `LedgerClient` for a reader in the process that owns the ledger."""

    def __init__(self, ledger: Ledger, worker: Worker = "local") -> None:
        super().__init__()
        self._ledger = ledger
        self._worker = worker
        ledger.on_sealed(self._on_sealed)

    def _on_sealed(self, worker: Worker, segment: int, end: int) -> None:
        if worker == self._worker:
            self.sealed(segment, end)

    def lease(self) -> Lease | None:
        return self._take() or self._ledger.lease(self._worker, self.granted)

    def acknowledge(self, ack: Ack) -> None:
        self._ledger.acknowledge(self._worker, ack)

    def release(self, segment: int, read: int, offset: int) -> None:
        self._forget(segment)
        self._ledger.release(self._worker, segment, read, offset)

    def gone(self) -> None:
        """The reader stops: what it held goes back to the ledger."""
        self._ledger.worker_gone(self._worker)


class _Open:
    """The leased segment being read."""

    __slots__ = ("damage_since", "end", "fd", "identity", "idle_size", "number", "offset",
                 "ordinal")

    def __init__(self, lease: Lease, fd: int, identity: str) -> None:
        self.number, self.fd, self.identity = lease.segment, fd, identity
        self.offset, self.ordinal, self.end = lease.offset, lease.ordinal, lease.end
        self.idle_size: int | None = None  # file size when `read` last found nothing new
        self.damage_since: tuple[int, float] | None = None


class SpoolReader:
    """Reads leased segments for one worker. `read` and `wait` belong to one thread;
    `acknowledge` may be called from any (bulk request workers)."""

    def __init__(self, directory: Path, ledger: LedgerClient) -> None:
        self._directory = Path(directory)
        self._ledger = ledger
        self._open: _Open | None = None
        self._watch: notify.SegmentWatch | None = None  # opened by the first `wait`
        self._watch_tried = False
        self._average_frame = _FIRST_FRAME_GUESS
        self._closed = False

    # --- reading ---------------------------------------------------------------------------

    def read(self, max_records: int, max_bytes: int) -> Batch | None:
        """The next records of the segment this reader holds (at least one when any is there;
        never more than `max_records`, payloads summing to at most `max_bytes` unless the first
        alone is larger), all from one segment; None when nothing new is written yet."""
        if self._closed:
            raise SpoolError("spool reader is closed")
        while True:
            current = self._open or self._take_lease()
            if current is None:
                return None
            if current.idle_size is not None and current.damage_since is None \
                    and not self._may_have_news(current):
                return None  # nothing changed since the last look: skip the read
            batch = self._read(current, max(1, max_records), max_bytes)
            if batch is None or isinstance(batch, Batch):
                return batch
            # the segment is read to its end
            self._let_go(current)

    def _read(self, current: _Open, max_records: int, max_bytes: int) -> Batch | bool | None:
        """A batch, None (nothing new yet), or False (this segment is read to its end)."""
        records = min(max_records, 1 << 20)
        most = min(max_bytes, 64 * 1024**2) + records * FRAME_SIZE + FRAME_SIZE
        chunk = max(_MIN_CHUNK, min(most, int(records * self._average_frame * _CHUNK_MARGIN)))
        while True:
            end = current.end
            if end is not None and current.offset >= end:
                return False
            data = os.pread(current.fd, chunk, current.offset)
            limit = None if end is None else end - current.offset
            found, consumed = read_records(data, max_records, max_bytes, limit,
                                           current.number, current.offset)
            if found:
                return self._batch(current, found, consumed)
            frame = frame_at(data, 0)
            if (frame.step is Step.INCOMPLETE and frame.end > len(data)
                    and os.fstat(current.fd).st_size >= current.offset + frame.end):
                chunk = frame.end  # a record larger than the chunk: read it whole
                continue
            if frame.step is Step.FOOTER:
                current.end = current.offset
                return False
            if end is None:
                sealed = self._ledger.sealed_end(current.number)
                if sealed is not None:
                    current.end = sealed
                    continue
                if frame.step is not Step.DAMAGED or not self._damage_persists(current):
                    current.idle_size = current.offset + len(data)
                    return None
            if frame.step is Step.END and end is not None:
                # Before the sealed end, nothing more: the file was cut short. What it lost is
                # counted by the ledger when the prefix reaches the end.
                return self._skip_damage(current)
            if frame.step is Step.END or (frame.step is Step.INCOMPLETE and end is None):
                current.idle_size = current.offset + len(data)
                return None
            return self._skip_damage(current)

    def _batch(self, current: _Open, records: list[Record], consumed: int) -> Batch:
        base = current.offset
        self._average_frame = consumed // len(records)
        current.offset = base + consumed
        current.ordinal += len(records)
        current.idle_size = current.damage_since = None
        return Batch(current.number, current.identity, base, current.offset, current.ordinal,
                     records)

    def _damage_persists(self, current: _Open) -> bool:
        now = time.monotonic()
        seen = current.damage_since
        if seen is None or seen[0] != current.offset:
            current.damage_since = (current.offset, now)
            return False
        return now - seen[1] >= _DAMAGE_GRACE

    def _skip_damage(self, current: _Open) -> Batch:
        """Quarantine the damaged bytes at the read offset and move to the next valid frame (or
        the segment's end); the stretch is handed out as a batch of no records."""
        size = os.fstat(current.fd).st_size if current.end is None else current.end
        data = os.pread(current.fd, max(0, size - current.offset), current.offset)
        resume = next_valid_frame(data, 0)
        end = len(data) if resume is None else resume
        lost = 0
        if end:
            quarantine(self._directory, current.number, current.offset, data[:end])
            lost = records_in(data[:end])
            log.error("spool %s: %d damaged bytes in segment %d at offset %d skipped (about %d "
                      "records lost; copy in the quarantine folder)", self._directory, end,
                      current.number, current.offset, lost)
        start = current.offset
        current.offset += end
        current.damage_since = None
        if resume is None:
            if current.end is None:
                current.end = current.offset  # nothing valid follows: the segment ends here
            elif current.offset < current.end:  # cut short after it was sealed
                log.error("spool %s: segment %d ends at %d, before where it was sealed (%d): "
                          "the file was cut", self._directory, current.number, current.offset,
                          current.end)
                current.offset = current.end
        return Batch(current.number, current.identity, start, current.offset, current.ordinal,
                     [], lost)

    def _take_lease(self) -> _Open | None:
        while (lease := self._ledger.lease()) is not None:
            path = self._directory / segment_name(lease.segment)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:  # deleted meanwhile: nothing of it is left to read
                self._ledger.release(lease.segment, lease.ordinal, lease.offset)
                continue
            header = parse_header(os.pread(fd, HEADER_SIZE, 0))
            if header is not None:
                identity = header.identity
            else:  # damaged since the start: ids nobody used (a duplicate rather than a loss)
                identity = new_identity()
                log.error("spool %s: the header of segment %d is damaged; its events are sent "
                          "under the new identity %s (those delivered before may be indexed "
                          "twice)", self._directory, lease.segment, identity)
            self._open = _Open(lease, fd, identity)
            return self._open
        return None

    def _let_go(self, current: _Open) -> None:
        os.close(current.fd)
        self._open = None
        self._ledger.release(current.number, current.ordinal, current.offset)

    # --- waiting ---------------------------------------------------------------------------

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` seconds until new records may be readable."""
        deadline = time.monotonic() + timeout
        while not self._closed:
            current = self._open or self._take_lease()
            if current is None:  # asked for one: the ledger grants the next segment that frees
                return self._ledger.wait_for_lease(max(0.0, deadline - time.monotonic()))
            if self._may_have_news(current):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if not self._watch_tried:
                # Then look again: what was written before the watch existed is not reported.
                self._watch_tried = True
                self._watch = notify.SegmentWatch.open(self._directory, SEGMENT_SUFFIX)
                continue
            if self._watch is not None:
                self._watch.wait(min(remaining, _WATCHED_POLL_INTERVAL))
            else:
                time.sleep(min(remaining, _POLL_INTERVAL))
        return False

    def _may_have_news(self, current: _Open) -> bool:
        # A segment file deleted under the reader (by hand: drop_oldest never takes a segment
        # being read) is read on through the open descriptor: its events are still there.
        status = os.fstat(current.fd)
        if current.idle_size is None:
            return True
        if current.end is None and self._ledger.sealed_end(current.number) is not None:
            return True
        return status.st_size != current.idle_size

    # --- acknowledging ---------------------------------------------------------------------

    def acknowledge(self, batch: Batch, shipped: int = 0,
                    dead: tuple[tuple[str, int], ...] = ()) -> None:
        """Report a batch delivered: `shipped` of its events accepted, `dead` dead-lettered."""
        self._ledger.acknowledge(Ack(batch.segment, batch.start, batch.end, batch.ordinal,
                                     shipped, dead, batch.lost))

    def join(self, first: Batch, then: Batch) -> bool:
        """`then` continues `first` in the same segment: `first` takes its records and covers
        `[first.start, then.end)`, which the ledger's prefix passes over as it would over the
        two (an acknowledgement and a message to the ledger less)."""
        if then.segment != first.segment or then.start != first.end \
                or then.identity != first.identity or not first.records or not then.records:
            return False
        first.records += then.records
        first.end, first.ordinal = then.end, then.ordinal
        return True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._open is not None:
            os.close(self._open.fd)
            self._open = None
        if self._watch is not None:
            self._watch.close()

    def __enter__(self) -> SpoolReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
