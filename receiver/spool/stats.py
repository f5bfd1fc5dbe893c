"""Looking at a spool: `spool stats` and `spool dump` from outside, the scrape-time gauges from
inside.

`spool_stats` and `dump_pending` only read (no lock, no repair, no ledger change), so they are
safe while the receiver runs: they take the acknowledged prefixes from the ledger's file and
count records in O(segments) (closed segments carry their record count in a footer; only the
segment being written is walked). The running service's gauges come from its ledger instead.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO, cast

import orjson

from receiver.event import Document, EventDecodeError, Received, decode
from receiver.metrics import CallbackCollector
from receiver.spool.clock import SPOOL_CLOCK, SpoolClock
from receiver.spool.directory import IDENTITY_FILE, LOCK_FILE, QUARANTINE_DIR
from receiver.spool.errors import SpoolError
from receiver.spool.format import (
    FRAME,
    FRAME_SIZE,
    HEADER_SIZE,
    RECORD_MARKER,
    Step,
    frame_at,
    iter_records,
    list_segments,
    next_valid_frame,
    parse_footer,
    parse_header,
    segment_name,
)
from receiver.spool.ledger import LEDGER_FILE, Ledger, read_progress
from receiver.spool.records import Position, event_id
from receiver.spool.recovery import newest_seal


@dataclass
class SpoolStats:
    directory: str
    identity: str
    segments: int
    bytes: int
    events_pending: int
    oldest_pending_age_seconds: float | None  # None when nothing is pending
    acknowledged: dict[int, int]  # segment -> offset its acknowledged prefix ends at
    quarantined_files: int = 0
    quarantined_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["acknowledged"] = {str(n): offset for n, offset in self.acknowledged.items()}
        return out


@dataclass
class RecordCounter:
    """Counts records per segment, remembering progress in segments that still grow."""

    _progress: dict[int, tuple[int, int, bool]] = field(default_factory=dict)  # end, count, final

    def count(self, path: Path, number: int, size: int) -> int:
        end, count, final = self._progress.get(number, (HEADER_SIZE, 0, False))
        if final:
            return count
        with open(path, "rb") as handle:
            if size >= HEADER_SIZE + FRAME_SIZE:
                handle.seek(size - FRAME_SIZE)
                footer = parse_footer(handle.read(FRAME_SIZE))
                if footer is not None:
                    self._progress[number] = (size, footer, True)
                    return footer
            handle.seek(end)
            data = handle.read(max(0, size - end))
        offset = 0
        while True:
            if len(data) - offset >= FRAME_SIZE:
                marker, _, length, _ = FRAME.unpack_from(data, offset)
                if marker == RECORD_MARKER and offset + FRAME_SIZE + length <= len(data):
                    count += 1
                    offset += FRAME_SIZE + length
                    continue
            frame = frame_at(data, offset)
            if frame.step in (Step.END, Step.INCOMPLETE, Step.FOOTER):
                break
            resume = next_valid_frame(data, offset)
            if resume is None:
                break
            offset = resume
        self._progress[number] = (end + offset, count, False)
        return count

    def forget_except(self, numbers: Iterable[int]) -> None:
        keep = set(numbers)
        for number in [n for n in self._progress if n not in keep]:
            del self._progress[number]


def check_spool_directory(directory: Path) -> None:
    """SpoolError unless `directory` is a spool a receiver made (for the inspecting commands:
    zeros for a mistyped path would read as "nothing pending")."""
    if not directory.exists():
        raise SpoolError(f"spool.dir = '{directory}': no such directory")
    if not directory.is_dir():
        raise SpoolError(f"spool.dir = '{directory}': not a directory")
    try:
        names = {entry.name for entry in os.scandir(directory)}
    except OSError as error:
        raise SpoolError(f"spool.dir = '{directory}': cannot read: {error.strerror}") from None
    if not names & {IDENTITY_FILE, LOCK_FILE, LEDGER_FILE} and not list_segments(directory):
        raise SpoolError(f"spool.dir = '{directory}': not a spool directory (no identity, "
                         "ledger or segments); a receiver has not run with it")


def spool_stats(directory: Path, counter: RecordCounter | None = None) -> SpoolStats:
    """Segments, bytes, pending events and the age of the oldest pending event."""
    directory = Path(directory)
    counter = counter or RecordCounter()
    sizes: dict[int, int] = {}
    for number in list_segments(directory):
        try:
            sizes[number] = (directory / segment_name(number)).stat().st_size
        except FileNotFoundError:  # deleted by the ledger while we looked
            continue
    counter.forget_except(sizes)
    _, progress = read_progress(directory)
    pending = 0
    oldest: float | None = None
    for number, size in sizes.items():
        offset, acked = progress.get(number, (HEADER_SIZE, 0))
        try:
            left = counter.count(directory / segment_name(number), number, size) - acked
        except FileNotFoundError:
            continue
        if left > 0:
            pending += left
            if oldest is None:
                oldest = _written_at(directory / segment_name(number), offset)
    quarantined = _quarantine_usage(directory)
    return SpoolStats(
        directory=str(directory),
        identity=_identity(directory),
        segments=len(sizes),
        bytes=sum(sizes.values()),
        events_pending=pending,
        oldest_pending_age_seconds=None if oldest is None
        else max(0.0, _spool_now(directory, sizes) - oldest),
        acknowledged={n: progress[n][0] for n in sizes if n in progress},
        quarantined_files=quarantined[0],
        quarantined_bytes=quarantined[1],
    )


def _spool_now(directory: Path, sizes: dict[int, int]) -> float:
    """Now, by the spool's clock (spool/clock.py), told of the newest time the spool shows: the
    newest segment's creation and the newest seal. When the wall clock stepped back while the
    receiver ran, its records are stamped ahead of the wall clock: measured by the wall clock,
    the age of the oldest pending event came out 0 and a real backlog looked shipped."""
    newest = newest_seal(directory)
    if sizes:
        try:
            with open(directory / segment_name(max(sizes)), "rb") as handle:
                header = parse_header(handle.read(HEADER_SIZE))
        except OSError:
            header = None
        if header is not None:
            newest = max(newest, header.created_at)
    clock = SpoolClock()  # not the process's own: this one is moved to another spool's time
    clock.not_before(newest)
    return clock.now()


def _written_at(path: Path, offset: int) -> float | None:
    """When the record at `offset` of a segment was written."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            head = handle.read(FRAME_SIZE)
    except OSError:
        return None
    if len(head) == FRAME_SIZE:
        marker, _, _, written_at = FRAME.unpack(head)
        if marker == RECORD_MARKER:
            return float(written_at)
    return None


def _identity(directory: Path) -> str:
    try:
        return (directory / IDENTITY_FILE).read_text("ascii", "replace").split("\n")[0].strip()
    except OSError:
        return ""


def _quarantine_usage(directory: Path) -> tuple[int, int]:
    try:
        entries = list(os.scandir(directory / QUARANTINE_DIR))
    except OSError:
        return 0, 0
    return len(entries), sum(entry.stat().st_size for entry in entries if entry.is_file())


Parse = Callable[[Received], dict[str, Any]]


def dump_pending(directory: Path, out: BinaryIO | TextIO, with_position: bool = False,
                 parse: Parse | None = None) -> int:
    """Write pending records as JSON lines; returns how many. A received message is shown as
    it is stored (`received_at`, `listener`, `source`, `port`, `cut`, `frame` as text), or, with
    `parse`, as the document it becomes; a record of an earlier version is its document. With
    `with_position`, each line also carries `_spool` (event id, segment, offset, written at)."""
    directory = Path(directory)
    _, progress = read_progress(directory)
    text = isinstance(out, io.TextIOBase)
    written = 0
    for number in list_segments(directory):
        try:
            data = (directory / segment_name(number)).read_bytes()
        except FileNotFoundError:
            continue
        header = parse_header(data)
        identity = header.identity if header is not None else ""
        offset = progress.get(number, (HEADER_SIZE, 0))[0]
        for frame in iter_records(data, offset):
            shown = _shown(frame.payload, parse)
            if with_position:
                position = Position(number, frame.offset)
                shown["_spool"] = {
                    "id": event_id(identity, position), "segment": number,
                    "offset": frame.offset, "written_at": frame.written_at,
                }
            line = orjson.dumps(shown, default=_jsonable, option=orjson.OPT_NON_STR_KEYS) + b"\n"
            if text:
                cast(TextIO, out).write(line.decode())
            else:
                cast(BinaryIO, out).write(line)
            written += 1
    return written


def _shown(payload: bytes, parse: Parse | None) -> dict[str, Any]:
    try:
        record = decode(payload)
    except EventDecodeError as error:  # a record we cannot read is shown, not hidden
        return {"_spool_error": str(error), "payload_base64": base64.b64encode(payload).decode()}
    if isinstance(record, Document):
        try:
            return record.document()
        except (EventDecodeError, ValueError) as error:
            return {"_spool_error": f"not a document: {error}",
                    "payload_base64": base64.b64encode(payload).decode()}
    if parse is not None:
        return parse(record)
    return {"received_at": record.received_at, "listener": record.listener,
            "source": record.source, "port": record.port, "cut": record.cut,
            "frame": record.frame.decode("utf-8", "backslashreplace")}


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"cannot show {type(value).__name__} as JSON")


def collector(directory: Path, ledger: Ledger,
              clock: Callable[[], float] = SPOOL_CLOCK.now) -> CallbackCollector:
    """Scrape-time gauges of the running spool: bytes, segments, events pending (the ledger's
    count: what is spooled and not yet acknowledged, delivered or counted dropped) and the age
    of the oldest pending event, by the clock that stamped it (the writer's, which never goes
    back: a backward step of the wall clock does not hide the lag)."""

    def rows() -> list[tuple[str, str, float]]:
        segments = list_segments(directory)
        size = 0
        for number in segments:
            try:
                size += (directory / segment_name(number)).stat().st_size
            except FileNotFoundError:
                continue
        oldest = ledger.oldest_pending()
        written = None if oldest is None else _written_at(directory / segment_name(oldest[0]),
                                                          oldest[1])
        return [
            ("spool_bytes", "Bytes of spool segment files on disk.", float(size)),
            ("spool_segments", "Spool segment files on disk.", float(len(segments))),
            ("spool_events_pending", "Spooled events not yet acknowledged by the output.",
             float(ledger.pending())),
            ("spool_oldest_pending_seconds",
             "Age of the oldest unacknowledged event (0 when none): the shipping lag.",
             0.0 if written is None else max(0.0, clock() - written)),
        ]

    return CallbackCollector(rows)
