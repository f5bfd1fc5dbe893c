"""Log files as what the shipper reads: `Batch`es of received records, ids made from content.

The shipper (receiver/ship/shipper.py) reads `SpoolSource`s; `ImportSource` is one. Each whole
line of a file becomes one version 2 received record (receiver/event.py), as if it had arrived
on the listener `file://<absolute path>` (`stdin://` for standard input) at the file's
modification time: that time is what the parser takes an RFC 3164 header's missing year from.

**Exactly once without state.** A record's `_id` is `event_id(identity, Position(segment,
offset))` (receiver/spool/records.py), unchanged, with
- `identity`: the file's fingerprint, a hash of its first line (receiver/files.py): the same
  when the file is renamed, rotated, compressed, read from stdin, or has grown since;
- `offset`: the line's byte offset in the decompressed text;
- `segment`: the CRC-32 of the line itself, so that an id names one line's content at one
  place of one file: two files that happen to begin with the same line share ids only where
  they hold the same line at the same offset (that is, where they are copies).
A rerun, an overlapping glob, `haproxy.log.1` read again as `haproxy.log.2.gz`: the same ids,
sent with `create`, answered 409 ("already there"). A `Batch`'s own `segment` is the number of
its file in the plan, which is how an acknowledgement finds the file's tally.
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from typing import BinaryIO

from receiver.event import FrameEncoder
from receiver.files import (
    FileError,
    LineReader,
    OpenedFile,
    fingerprint,
    first_line,
    open_lines,
    open_stream,
)
from receiver.spool.records import Batch, Position, Record

FILE_SCHEME = "file://"
STDIN_LISTENER = "stdin://"
STDIN = "-"


@dataclass(frozen=True, slots=True)
class Unit:
    """A piece of work: one file, or the lines of a plain file starting in `[start, end)`."""

    file: int  # the file's number in the plan
    path: str  # as the plan names it; "-" for standard input
    start: int = 0
    end: int | None = None


@dataclass
class FileTally:
    """What became of one file's lines (summed over its pieces, and over worker processes)."""

    path: str
    size: int = 0  # bytes on disk when planned (0: a stream)
    units: int = 1  # pieces planned
    kind: str = ""  # "plain" or "gzip", once opened
    consumed: int = 0  # bytes read from the file (compressed bytes for gzip)
    lines: int = 0  # whole lines read, but blank ones: the events handed to the shipper
    blank: int = 0
    cut: int = 0  # lines longer than listen.max_message_bytes, cut and tagged _truncated
    outside: int = 0  # events outside --since/--until (left out by the hook)
    shipped: int = 0  # acknowledged as delivered (or left out)
    dead: int = 0  # acknowledged as dead-lettered
    pending: int = 0  # bytes after the last line end: a line still being written
    finished: int = 0  # pieces read to their end
    errors: list[str] = field(default_factory=list)
    formats: Tally[str] = field(default_factory=Tally)  # `--dry-run`: events per log format

    @property
    def done(self) -> bool:
        """Every piece read, and every event read acknowledged."""
        return self.finished >= self.units and self.shipped + self.dead >= self.lines

    def add(self, other: FileTally) -> None:
        """Add another process's tally of the same file."""
        for name in ("consumed", "lines", "blank", "cut", "outside", "shipped", "dead", "pending",
                     "finished"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.kind = self.kind or other.kind
        self.errors += other.errors
        self.formats.update(other.formats)


def listener_of(path: str) -> str:
    """The listener a file's records name (and the hook reads `log.file.path` from)."""
    return STDIN_LISTENER if path == STDIN else FILE_SCHEME + os.path.abspath(path)


class _Open:
    """The unit being read."""

    def __init__(self, unit: Unit, opened: OpenedFile, tally: FileTally, identity: str | None,
                 received_at: float) -> None:
        self.unit = unit
        self.reader: LineReader = opened.reader
        self.tally = tally
        self.identity = identity
        self.received_at = received_at
        self.encoder = FrameEncoder(listener_of(unit.path))
        self.consumed = 0


class ImportSource:
    """Units of work -> batches for the shipper (the `SpoolSource` protocol); counts per file.

    `read` is called by the shipper's reading thread only; `acknowledge` by its delivery threads.
    """

    def __init__(self, next_unit: Callable[[], Unit | None], tallies: dict[int, FileTally], *,
                 max_line: int = 65536, stdin: BinaryIO | None = None) -> None:
        self._next_unit = next_unit
        self.tallies = tallies
        self._max_line = max_line
        self._stdin = stdin
        self._current: _Open | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.exhausted = False  # every unit was read to its end
        self.by_listener: dict[str, FileTally] = {}  # for the document hook's counts

    # --- SpoolSource ---------------------------------------------------------------------

    def read(self, max_records: int, max_bytes: int) -> Batch | None:
        """The next lines of the current file (never two files in one batch); None once every
        unit is read."""
        while not self._closed.is_set():
            current = self._current or self._open_next()
            if current is None:
                self.exhausted = True
                return None
            lines = current.reader.read(max_records, max_bytes)
            consumed = current.reader.consumed
            current.tally.consumed += consumed - current.consumed
            current.consumed = consumed
            if lines.lines:
                batch = self._batch(current, lines.offsets, lines.lines, lines.cut, lines.end)
                if batch is not None:
                    return batch
            elif current.reader.exhausted:
                self._finish(current)
        return None

    def wait(self, timeout: float) -> bool:
        """Nothing more comes once every unit is read: wait out the time (or until closed)."""
        self._closed.wait(timeout)
        return False

    def acknowledge(self, batch: Batch, shipped: int = 0,
                    dead: tuple[tuple[str, int], ...] = ()) -> None:
        tally = self.tallies[batch.segment]
        with self._lock:
            tally.shipped += shipped
            tally.dead += sum(count for _, count in dead)

    def join(self, first: Batch, then: Batch) -> bool:
        """Never: an import reads as fast as it ships, in full batches (nothing to gain)."""
        return False

    # --- the rest ------------------------------------------------------------------------

    def close(self) -> None:
        """Stop reading (an interrupted import); closes the file being read."""
        self._closed.set()
        current, self._current = self._current, None
        if current is not None:
            current.reader.close()

    def _open_next(self) -> _Open | None:
        while (unit := self._next_unit()) is not None:
            tally = self.tallies[unit.file]
            try:
                opened = self._open(unit)
                identity = None
                if unit.start > 0:  # a later piece: the fingerprint is the file's first line
                    line = first_line(unit.path, self._max_line)
                    if line is None:
                        raise FileError(f"{unit.path}: has no first line any more (truncated "
                                        "while read?)")
                    identity = fingerprint(line)
            except FileError as error:
                tally.errors.append(str(error))
                tally.finished += 1
                continue
            tally.kind = opened.kind
            received_at = opened.mtime if opened.mtime is not None else time.time()
            self._current = _Open(unit, opened, tally, identity, received_at)
            self.by_listener[self._current.encoder.listener] = tally
            return self._current
        return None

    def _open(self, unit: Unit) -> OpenedFile:
        if unit.path == STDIN:
            if self._stdin is None:
                raise FileError("-: standard input can be read once only")
            stream, self._stdin = self._stdin, None
            return open_stream(stream, STDIN, self._max_line)
        return open_lines(unit.path, start=unit.start, end=unit.end, max_line=self._max_line)

    def _finish(self, current: _Open) -> None:
        reader, tally = current.reader, current.tally
        tally.pending += reader.pending
        if reader.error is not None:
            tally.errors.append(str(reader.error))
        reader.close()
        tally.finished += 1
        self._current = None

    def _batch(self, current: _Open, offsets: list[int], lines: list[bytes],
               cut: frozenset[int], end: int) -> Batch | None:
        tally = current.tally
        if current.identity is None:  # the file's first lines: they name it
            current.identity = fingerprint(lines[0])
        if not all(map(bytes.strip, lines)):  # blank lines are no events
            keep = [i for i, line in enumerate(lines) if line.strip()]
            tally.blank += len(lines) - len(keep)
            cut = frozenset(keep.index(i) for i in cut if i in keep) if cut else cut
            offsets = [offsets[i] for i in keep]
            lines = [lines[i] for i in keep]
            if not lines:
                return None
        payloads = current.encoder.encode(lines, current.received_at, (None, None), cut)
        now = time.time()  # when it entered the pipeline: what `batch_age` counts from
        positions = map(Position, map(zlib.crc32, lines), offsets)
        records = list(map(Record, positions, payloads, repeat(now)))
        ordinal = tally.lines
        tally.lines += len(records)
        tally.cut += len(cut)
        return Batch(current.unit.file, current.identity, offsets[0], end, ordinal, records)
