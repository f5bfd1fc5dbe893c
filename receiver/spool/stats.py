"""Looking at a spool from outside: `spool stats`, `spool dump` and the scrape-time gauges.

Everything here only reads (no lock, no repair, no checkpoint), so it is safe while the receiver
runs. Pending events are counted in O(segments): closed segments carry their record count in a
footer; only the segment being written is walked, and the collector remembers how far it got.
"""

from __future__ import annotations

import base64
import io
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO, cast

import msgpack
import orjson

from receiver.event import EventDecodeError, decode_event
from receiver.metrics import CallbackCollector
from receiver.spool.directory import (
    IDENTITY_FILE,
    QUARANTINE_DIR,
    Checkpoint,
    read_checkpoint,
)
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
    segment_name,
)
from receiver.spool.records import Position, event_id


@dataclass
class SpoolStats:
    directory: str
    identity: str
    segments: int
    bytes: int
    events_pending: int
    oldest_pending_age_seconds: float | None  # None when nothing is pending
    checkpoint: Position | None
    quarantined_files: int = 0
    quarantined_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["checkpoint"] = (
            None if self.checkpoint is None
            else {"segment": self.checkpoint.segment, "offset": self.checkpoint.offset}
        )
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


def spool_stats(directory: Path, counter: RecordCounter | None = None) -> SpoolStats:
    """Segments, bytes, pending events and the age of the oldest pending event."""
    directory = Path(directory)
    counter = counter or RecordCounter()
    numbers = list_segments(directory)
    sizes: dict[int, int] = {}
    for number in numbers:
        try:
            sizes[number] = (directory / segment_name(number)).stat().st_size
        except FileNotFoundError:  # deleted by the reader while we looked
            continue
    counter.forget_except(sizes)
    checkpoint = read_checkpoint(directory) if sizes else None
    start = _start(checkpoint, sizes)
    pending = 0
    for number, size in sizes.items():
        if number < start.segment:
            continue
        try:
            pending += counter.count(directory / segment_name(number), number, size)
        except FileNotFoundError:
            continue
    pending = max(0, pending - start.ordinal)
    oldest = _oldest_written_at(directory, start, sizes) if pending else None
    quarantined = _quarantine_usage(directory)
    return SpoolStats(
        directory=str(directory),
        identity=_identity(directory),
        segments=len(sizes),
        bytes=sum(sizes.values()),
        events_pending=pending,
        oldest_pending_age_seconds=None if oldest is None else max(0.0, time.time() - oldest),
        checkpoint=None if checkpoint is None else Position(checkpoint.segment, checkpoint.offset),
        quarantined_files=quarantined[0],
        quarantined_bytes=quarantined[1],
    )


def _start(checkpoint: Checkpoint | None, sizes: dict[int, int]) -> Checkpoint:
    first = min(sizes, default=0)
    if checkpoint is None or checkpoint.segment < first:
        return Checkpoint(first, HEADER_SIZE, 0)
    return checkpoint


def _oldest_written_at(directory: Path, start: Checkpoint, sizes: dict[int, int]) -> float | None:
    for number in sorted(n for n in sizes if n >= start.segment):
        offset = start.offset if number == start.segment else HEADER_SIZE
        try:
            with open(directory / segment_name(number), "rb") as handle:
                handle.seek(offset)
                head = handle.read(FRAME_SIZE)
        except FileNotFoundError:
            continue
        if len(head) == FRAME_SIZE:
            marker, _, _, written_at = FRAME.unpack(head)
            if marker == RECORD_MARKER:
                return float(written_at)
    return None


def _identity(directory: Path) -> str:
    try:
        return (directory / IDENTITY_FILE).read_text("ascii", "replace").strip()
    except OSError:
        return ""


def _quarantine_usage(directory: Path) -> tuple[int, int]:
    try:
        entries = list(os.scandir(directory / QUARANTINE_DIR))
    except OSError:
        return 0, 0
    return len(entries), sum(entry.stat().st_size for entry in entries if entry.is_file())


def dump_pending(directory: Path, out: BinaryIO | TextIO, with_position: bool = False) -> int:
    """Write pending events (after the checkpoint) as JSON lines; returns how many. With
    `with_position`, each line also carries `_spool` (event id, segment, offset, written at)."""
    directory = Path(directory)
    numbers = list_segments(directory)
    checkpoint = read_checkpoint(directory) if numbers else None
    start = _start(checkpoint, dict.fromkeys(numbers, 0))
    identity = _identity(directory)
    text = isinstance(out, io.TextIOBase)
    written = 0
    for number in numbers:
        if number < start.segment:
            continue
        try:
            data = (directory / segment_name(number)).read_bytes()
        except FileNotFoundError:
            continue
        offset = start.offset if number == start.segment else HEADER_SIZE
        for frame in iter_records(data, offset):
            document = _document(frame.payload)
            if with_position:
                position = Position(number, frame.offset)
                document["_spool"] = {
                    "id": event_id(identity, position), "segment": number,
                    "offset": frame.offset, "written_at": frame.written_at,
                }
            line = orjson.dumps(document, default=_jsonable, option=orjson.OPT_NON_STR_KEYS) + b"\n"
            if text:
                cast(TextIO, out).write(line.decode())
            else:
                cast(BinaryIO, out).write(line)
            written += 1
    return written


def _document(payload: bytes) -> dict[str, Any]:
    try:
        return decode_event(payload).document()
    except (EventDecodeError, ValueError) as error:  # a record we cannot read is shown, not hidden
        return {"_spool_error": f"not an event record: {error}",
                "payload_base64": base64.b64encode(payload).decode()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, msgpack.ExtType):
        return {"ext": value.code, "data": base64.b64encode(value.data).decode()}
    raise TypeError(f"cannot show {type(value).__name__} as JSON")


def collector(directory: Path, held: Callable[[], int] | None = None) -> CallbackCollector:
    """Scrape-time gauges: spool bytes, segments, events pending, oldest pending age.

    `held` (SpoolWriter.held_by_shipper) adds the pending events whose segment drop_oldest
    deleted while the shipper held them: they are still on their way, not dropped."""
    counter = RecordCounter()

    def rows() -> list[tuple[str, str, float]]:
        stats = spool_stats(directory, counter)
        if held is not None:
            stats.events_pending += held()
        return [
            ("spool_bytes", "Bytes of spool segment files on disk.", float(stats.bytes)),
            ("spool_segments", "Spool segment files on disk.", float(stats.segments)),
            ("spool_events_pending", "Spooled events not yet acknowledged by the output.",
             float(stats.events_pending)),
            ("spool_oldest_pending_seconds",
             "Age of the oldest unacknowledged event (0 when none): the shipping lag.",
             stats.oldest_pending_age_seconds or 0.0),
        ]

    return CallbackCollector(rows)
