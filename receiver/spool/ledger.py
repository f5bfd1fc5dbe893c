"""The spool ledger: which segments exist, who reads which, what is acknowledged, what was lost.

The ledger lives in the process that owns the spool directory (it holds the lock and writes the
segments) and is the one place that knows the spool's shared state:

- **Segments**: the writer reports each segment it opens, what it appended (bytes and records)
  and when it sealed it (with where its records end). That is all the writer keeps track of;
  room (`bytes_on_disk`), pending events and what `drop_oldest` may delete are answered here.
- **Leases**: readers (the parse-and-ship workers, `spool.reader.SpoolReader`) take a whole
  segment at a time, from where its acknowledged prefix ends; the lowest segment nobody reads
  goes first. A segment is read by one worker at a time, so several workers share a spool
  without coordinating anything but this.
- **Acknowledgements**: a worker reports every delivered batch (`Ack`: its byte range, and how
  many of its events were shipped or dead-lettered). A segment's acknowledged prefix moves over
  contiguous batches only, and events are counted shipped or dead-lettered when, and only when,
  the prefix passes them. A segment sealed and acknowledged to its end is deleted.
- **A worker that dies** loses its leases and its batches beyond the prefix: the segment is
  leased again from its prefix. The re-sent events carry the same ids (Elasticsearch answers 409
  for those it has) and are counted once, when the prefix passes them: so `events_shipped_total`
  stays exact through restarts of workers.

Persisted in `ledger` after every change of a prefix: the highest segment number ever created
and, for each segment with progress, its prefix (offset, records). Two checksummed slots are
overwritten in turn and in place, so a cut write leaves the previous state readable and a full
disk never stops it (only acknowledging frees space). No fsync: a prefix lost in a power cut
only means re-sending events that Elasticsearch recognises by their ids. A segment not listed
starts at its first record; a segment file that is gone is done.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import google_crc32c

from receiver.ratelimit import RateLimitedLog
from receiver.spool.directory import LEGACY_FILES, read_legacy_checkpoint
from receiver.spool.format import HEADER_SIZE, list_segments, segment_name
from receiver.spool.fs import FileSystem

log = logging.getLogger(__name__)

LEDGER_FILE = "ledger"
_MAGIC = b"HRLEDGR\x00"
_VERSION = 1
_HEAD = struct.Struct("<8sHHQQd")  # magic, version, entries, sequence, highest segment, saved at
_ENTRY = struct.Struct("<QQQ")  # segment, acknowledged offset, acknowledged records
# Segments with progress at once: one or two per worker in practice. Beyond this the newest
# prefixes are not saved: those segments are re-read from their start after a crash (harmless).
MAX_ENTRIES = 256
# An entry whose segment number has this bit is a seal: (segment, where its records end, how
# many records it holds), so that a sealed segment cut short while the receiver was stopped
# counts the records it lost (its footer, which holds the count, is what was cut). Seals fill
# the entries prefixes leave free, oldest segments first; older versions read them as prefixes
# of segments that do not exist, and ignore them.
SEAL_FLAG = 1 << 63
_SLOT = _HEAD.size + MAX_ENTRIES * _ENTRY.size + 4
DROPPED_OLDEST = "spool_full_oldest"

Worker = Hashable


@dataclass(frozen=True, slots=True)
class Lease:
    """A segment handed to one reader: read from `offset` (`ordinal` records come before it)
    up to `end` when the segment is sealed (None: the writer may still append)."""

    segment: int
    offset: int
    ordinal: int
    end: int | None


@dataclass(frozen=True, slots=True)
class Ack:
    """A delivered batch: frames `[start, end)` of `segment`, `ordinal` records of the segment
    up to `end`; how many of its events were shipped, and dead-lettered by reason. A damaged
    stretch the reader skipped is acknowledged as a batch of no events and `lost` records."""

    segment: int
    start: int
    end: int
    ordinal: int
    shipped: int = 0
    dead: tuple[tuple[str, int], ...] = ()
    lost: int = 0


class Counters(Protocol):
    """Where the ledger counts outcomes (`receiver.metrics.SpoolMetrics` in the service)."""

    def shipped(self, count: int) -> None: ...
    def dead_lettered(self, reason: str, count: int) -> None: ...
    def dropped(self, reason: str, count: int) -> None: ...
    def lost(self, count: int) -> None: ...


@dataclass(slots=True)
class _Segment:
    number: int
    size: int = HEADER_SIZE  # bytes on disk
    records: int = 0  # appended so far (all of them once sealed)
    end: int | None = None  # where records end, once sealed
    present: bool = True  # the file exists
    acked_offset: int = HEADER_SIZE
    acked: int = 0
    lost: int = 0  # records in damaged stretches the reader skipped
    early: dict[int, Ack] = field(default_factory=dict)  # delivered beyond the prefix, by start
    reader: Worker | None = None  # whose batches are outstanding
    reading: bool = False  # the reader still reads it (holds the lease)

    @property
    def pending(self) -> int:
        return max(0, self.records - self.acked - self.lost)

    @property
    def done(self) -> bool:
        return self.end is not None and self.acked_offset >= self.end and not self.reading


class Ledger:
    """The spool's shared state; thread-safe (one lock), used by the owning process."""

    def __init__(self, directory: Path, counters: Counters, fs: FileSystem | None = None) -> None:
        self._directory = Path(directory)
        self._counters = counters
        self._fs = fs or FileSystem()
        self._lock = threading.Lock()
        self._segments: dict[int, _Segment] = {}
        self._highest = 0
        self._waiting: dict[Worker, Callable[[Lease], None]] = {}
        self._on_sealed: list[Callable[[Worker, int, int], None]] = []
        self._on_freed: Callable[[], None] = lambda: None
        self._sequence = 0
        self._fd: int | None = None
        self._saved: dict[int, tuple[int, int]] = {}
        self.saved_seals: dict[int, tuple[int, int]] = {}  # segment -> (end, records), as loaded
        self._log = RateLimitedLog(log)
        self._written: tuple[int, dict[int, tuple[int, int]]] | None = None
        self._legacy_before: int | None = None  # an older version's checkpoint had passed these
        self._load()

    # --- start -------------------------------------------------------------------------------

    def _load(self) -> None:
        """The saved prefixes, or an older version's checkpoint (migrated at `restore`)."""
        saved = _read_saved(self._directory)
        if saved.damaged:
            log.warning("spool %s: the ledger is damaged; every segment is read from its start "
                        "(events already delivered are re-sent and recognised by their ids)",
                        self._directory)
        elif not (self._directory / LEDGER_FILE).exists() and list_segments(self._directory):
            log.warning("spool %s: the ledger is missing; every segment is read from its start "
                        "(events already delivered are re-sent and recognised by their ids)",
                        self._directory)
        self._sequence, self._highest, self._saved = saved.sequence, saved.highest, saved.prefixes
        self.saved_seals = saved.seals
        self._legacy_before = saved.legacy_before

    @property
    def highest_segment(self) -> int:
        """The highest segment number ever created here (numbers are never reused)."""
        return self._highest

    def restore(self, segments: Iterable[tuple[int, int, int, int]]) -> int:
        """Take the segments recovery found, all sealed, as `(number, size, records, end)`;
        deletes those already acknowledged to their end. Returns the events pending in them."""
        legacy_before = self._legacy_before
        with self._lock:
            for number, size, records, end in segments:
                offset, acked = self._saved.get(number, (HEADER_SIZE, 0))
                if legacy_before is not None and number < legacy_before:
                    offset, acked = end, records  # an older checkpoint had passed it
                segment = _Segment(number, size, records, end, acked_offset=offset, acked=acked)
                segment.acked = min(acked, records)
                self._segments[number] = segment
                self._highest = max(self._highest, number)
            for segment in [s for s in self._segments.values() if s.done]:
                self._finish(segment)
            self._save()
            for name in LEGACY_FILES:
                (self._directory / name).unlink(missing_ok=True)
            return sum(s.pending for s in self._segments.values())

    # --- the writer's side -------------------------------------------------------------------

    def opened(self, number: int, size: int) -> None:
        """The writer started segment `number` (`size` bytes: its header)."""
        with self._lock:
            self._segments[number] = _Segment(number, size)
            self._highest = max(self._highest, number)
            self._save()
            grants = self._grant_waiting()
        _deliver(grants)

    def appended(self, number: int, size: int, records: int) -> None:
        """Segment `number` grew to `size` bytes and `records` records."""
        with self._lock:
            segment = self._segments.get(number)
            if segment is not None:
                segment.size, segment.records = size, records

    def sealed(self, number: int, end: int, size: int) -> None:
        """The writer will not append to `number` again; its records end at `end`."""
        with self._lock:
            segment = self._segments.get(number)
            if segment is None:
                return
            segment.end, segment.size = end, size
            holder = segment.reader if segment.reading else None
            if segment.done:
                self._finish(segment)
            self._save()  # its seal
        if holder is not None:
            for callback in self._on_sealed:
                callback(holder, number, end)

    def bytes_on_disk(self) -> int:
        with self._lock:
            return sum(s.size for s in self._segments.values() if s.present)

    def drop_oldest(self) -> int | None:
        """`spool.when_full = "drop_oldest"`: delete the oldest sealed segment no worker holds
        open. Returns the bytes freed, None when there is none (the writer then refuses the
        new events instead).

        Events a worker already read sit in bulk requests that keep being retried: deleting
        their segment does not stop their delivery, so they are not dropped (they are counted
        shipped when acknowledged); segments read to their end go first. Then the oldest one
        not read yet: its events count as dropped. A segment a worker is reading is never
        taken: deleting a file held open frees nothing on disk, and its events are still
        readable (they used to be given up as dropped)."""
        with self._lock:
            idle = [s for s in self._segments.values()
                    if s.present and s.end is not None and not s.reading]
            if not idle:
                return None
            victim = min(idle, key=lambda s: (s.reader is None, s.number))
            try:
                self._fs.unlink(self._directory / segment_name(victim.number))
            except FileNotFoundError:
                pass
            except OSError as error:
                log.error("spool %s: cannot delete segment %d: %s", self._directory,
                          victim.number, error.strerror)
                return None
            victim.present = False
            freed = victim.size
            self._on_freed()
            if victim.reader is None:  # nobody holds any of it: every pending event is lost
                self._dropped(victim.number, victim.pending)
                del self._segments[victim.number]
            # else: read to its end, in delivery: kept until acknowledged (or its reader dies)
            self._save()
            return freed

    def _dropped(self, number: int, count: int) -> None:
        self._counters.dropped(DROPPED_OLDEST, count)
        if count:
            self._log(logging.WARNING, "oldest", "spool %s full (spool.when_full = drop_oldest): "
                      "deleted the oldest segment %d with %d unshipped events", self._directory,
                      number, count, count=count)

    # --- the readers' side ---------------------------------------------------------------------

    def on_freed(self, callback: Callable[[], None]) -> None:
        """`callback()` after a segment file was deleted (a writer waiting for room)."""
        self._on_freed = callback

    def on_sealed(self, callback: Callable[[Worker, int, int], None]) -> None:
        """`callback(worker, segment, end)` when a segment a worker reads is sealed."""
        self._on_sealed.append(callback)

    def lease(self, worker: Worker, grant: Callable[[Lease], None] | None = None) -> Lease | None:
        """The next segment for `worker` to read, or None; with `grant`, a worker that gets
        nothing now is given the next segment that becomes free through `grant` instead."""
        with self._lock:
            lease = self._next_lease(worker)
            if lease is None and grant is not None:
                self._waiting[worker] = grant
            return lease

    def _next_lease(self, worker: Worker) -> Lease | None:
        for number in sorted(self._segments):
            segment = self._segments[number]
            if segment.present and segment.reader is None:
                segment.reader, segment.reading = worker, True
                self._waiting.pop(worker, None)
                return Lease(number, segment.acked_offset, segment.acked, segment.end)
        return None

    def _grant_waiting(self) -> list[tuple[Callable[[Lease], None], Lease]]:
        grants = []
        for worker, grant in list(self._waiting.items()):
            lease = self._next_lease(worker)
            if lease is None:
                break
            grants.append((grant, lease))
        return grants

    def release(self, worker: Worker, number: int, read: int, offset: int) -> None:
        """`worker` stopped reading segment `number` after handing out `read` of its records,
        ending at `offset` (its end, unless the file was deleted under it). Batches it still
        delivers are acknowledged as usual."""
        with self._lock:
            segment = self._segments.get(number)
            if segment is None or segment.reader != worker:
                return
            segment.reading = False
            if segment.done:
                self._finish(segment)
                self._save()

    def acknowledge(self, worker: Worker, ack: Ack) -> None:
        with self._lock:
            segment = self._segments.get(ack.segment)
            if segment is None or segment.reader != worker or ack.start < segment.acked_offset:
                return  # a late answer for a lease that was taken back: its events come again
            segment.early[ack.start] = ack
            moved = False
            while (passed := segment.early.pop(segment.acked_offset, None)) is not None:
                segment.acked_offset, segment.acked = passed.end, passed.ordinal
                self._counters.shipped(passed.shipped)
                for reason, count in passed.dead:
                    self._counters.dead_lettered(reason, count)
                self._counters.lost(passed.lost)
                segment.lost += passed.lost
                moved = True
            if not moved:
                return
            if segment.end is not None and segment.acked_offset >= segment.end:
                self._missing(segment)
            if segment.done:
                self._finish(segment)
            self._save()

    def worker_gone(self, worker: Worker) -> None:
        """A worker exited: what it held is leased again from the acknowledged prefixes."""
        with self._lock:
            self._waiting.pop(worker, None)
            for segment in [s for s in self._segments.values() if s.reader == worker]:
                segment.reader, segment.reading = None, False
                segment.early.clear()
                if not segment.present:  # deleted while it held it: what it had is lost now
                    self._dropped(segment.number, segment.pending)
                    del self._segments[segment.number]
            grants = self._grant_waiting()
        _deliver(grants)

    def _missing(self, segment: _Segment) -> None:
        """Acknowledged to its end with records still pending: the file lost them (cut short,
        or damage that hid their markers). Counted lost, so the accounting closes."""
        missing = segment.pending
        if missing:
            self._counters.lost(missing)
            segment.lost += missing
            log.error("spool %s: segment %d ended %d records short of what was written (the "
                      "file was cut or damaged); counted lost", self._directory, segment.number,
                      missing)

    def _finish(self, segment: _Segment) -> None:
        """Sealed and acknowledged to its end: the segment file goes."""
        if segment.present:
            try:
                self._fs.unlink(self._directory / segment_name(segment.number))
            except FileNotFoundError:
                pass
            except OSError as error:  # kept on disk; finishing is tried again at the next start
                log.error("spool %s: cannot delete acknowledged segment %d: %s",
                          self._directory, segment.number, error.strerror)
                return
            self._on_freed()
        del self._segments[segment.number]

    # --- observing -----------------------------------------------------------------------------

    def pending(self) -> int:
        """Events spooled and not yet acknowledged (nor counted dropped)."""
        with self._lock:
            return sum(s.pending for s in self._segments.values())

    def oldest_pending(self) -> tuple[int, int] | None:
        """(segment, offset) of the oldest unacknowledged record still on disk."""
        with self._lock:
            for number in sorted(self._segments):
                segment = self._segments[number]
                if segment.present and segment.pending > 0:
                    return number, segment.acked_offset
            return None

    def progress(self) -> dict[int, tuple[int, int]]:
        """Acknowledged prefix (offset, records) of every segment tracked."""
        with self._lock:
            return {n: (s.acked_offset, s.acked) for n, s in self._segments.items()}

    # --- persistence ---------------------------------------------------------------------------

    def _save(self) -> None:
        entries = {n: (s.acked_offset, s.acked) for n, s in sorted(self._segments.items())
                   if s.acked_offset > HEADER_SIZE}
        for n, s in sorted(self._segments.items()):
            if len(entries) >= MAX_ENTRIES:
                break
            if s.end is not None and s.present:
                entries[n | SEAL_FLAG] = (s.end, s.records)
        if (self._highest, entries) == self._written:
            return
        self._sequence += 1
        body = _HEAD.pack(_MAGIC, _VERSION, min(len(entries), MAX_ENTRIES), self._sequence,
                          self._highest, time.time())
        body += b"".join(_ENTRY.pack(n, offset, acked)
                         for n, (offset, acked) in list(entries.items())[:MAX_ENTRIES])
        slot = body.ljust(_SLOT - 4, b"\0")
        slot += struct.pack("<I", google_crc32c.value(slot))
        try:
            if self._fd is None:
                self._fd = self._fs.open_rw(self._directory / LEDGER_FILE)
            self._fs.pwrite(self._fd, slot, (self._sequence % 2) * _SLOT)
        except OSError as error:  # the next change saves a newer state; replays are harmless
            log.error("spool %s: cannot save the ledger: %s", self._directory, error.strerror)
            return
        self._written = (self._highest, entries)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _slots(data: bytes) -> list[tuple[int, int, dict[int, tuple[int, int]]]]:
    """(sequence, highest segment, prefixes) of every intact slot of a ledger file."""
    found = []
    for start in range(0, len(data) - _SLOT + 1, _SLOT):
        slot = data[start : start + _SLOT]
        if google_crc32c.value(slot[:-4]) != struct.unpack("<I", slot[-4:])[0]:
            continue
        magic, version, count, sequence, highest, _ = _HEAD.unpack_from(slot)
        if magic != _MAGIC or version != _VERSION or count > MAX_ENTRIES:
            continue
        entries = {}
        for i in range(count):
            number, offset, acked = _ENTRY.unpack_from(slot, _HEAD.size + i * _ENTRY.size)
            entries[number] = (offset, acked)
        found.append((sequence, highest, entries))
    return found


@dataclass(frozen=True, slots=True)
class _Saved:
    """What a spool directory says of its progress: the newest intact ledger slot, or else an
    older version's checkpoint (every segment before `legacy_before` was acknowledged)."""

    sequence: int = 0
    highest: int = 0
    prefixes: dict[int, tuple[int, int]] = field(default_factory=dict)
    legacy_before: int | None = None
    damaged: bool = False  # a ledger file without an intact slot
    seals: dict[int, tuple[int, int]] = field(default_factory=dict)  # segment -> (end, records)


def _read_saved(directory: Path) -> _Saved:
    try:
        data = (directory / LEDGER_FILE).read_bytes()
    except FileNotFoundError:
        data = b""
    best = max(_slots(data), default=None, key=lambda slot: slot[0])
    if best is not None:
        sequence, highest, entries = best
        prefixes = {n: value for n, value in entries.items() if not n & SEAL_FLAG}
        seals = {n & ~SEAL_FLAG: value for n, value in entries.items() if n & SEAL_FLAG}
        return _Saved(sequence, highest, prefixes, seals=seals)
    legacy = read_legacy_checkpoint(directory)
    if legacy is None:
        return _Saved(damaged=bool(data))
    return _Saved(0, legacy.segment, {legacy.segment: (legacy.offset, legacy.ordinal)},
                  legacy.segment, damaged=bool(data))


def read_progress(directory: Path) -> tuple[int, dict[int, tuple[int, int]]]:
    """The saved state for tools that look from outside: (highest segment, prefixes)."""
    try:
        saved = _read_saved(Path(directory))
    except OSError:  # not readable by whoever asks: nothing known
        return 0, {}
    return saved.highest, saved.prefixes


def _deliver(grants: list[tuple[Callable[[Lease], None], Lease]]) -> None:
    for grant, lease in grants:
        grant(lease)
