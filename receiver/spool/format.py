"""The on-disk format of spool segment files: header, record frames, footer, and the scanner.

Everything that knows a byte offset inside a segment lives here; the writer, reader, recovery
and statistics modules use these functions and never parse bytes themselves.

    segment file  = header (42 bytes) · frame* · [footer frame]
    header        = magic "HRSPOOL\\0" · version u16 · header size u16 · identity (10 ASCII, of
                    the writer start that made it: SpoolWriter.identity) · segment number u64
                    · created at f64 (Unix s) · CRC32C of the 38 bytes before
    frame         = marker (4) · CRC32C u32 · length u32 · written at f64 (Unix s) · payload
                    (CRC32C covers length, written-at and payload; all integers little-endian)
    record frame  : marker b"\\x1eHRr", payload = one msgpack document of `length` bytes
    footer frame  : marker b"\\x1eHRf", no payload, `length` = number of records in the segment;
                    written when the segment is closed, lets statistics count in O(1)
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import google_crc32c

from receiver.spool.records import Position, Record

MAGIC = b"HRSPOOL\x00"
VERSION = 1
IDENTITY_LENGTH = 10
HEADER = struct.Struct("<8sHH10sQdI")
HEADER_SIZE = HEADER.size
FRAME = struct.Struct("<4sIId")
FRAME_SIZE = FRAME.size
RECORD_MARKER = b"\x1eHRr"
FOOTER_MARKER = b"\x1eHRf"
CHECKED = struct.Struct("<Id")  # the frame fields the CRC covers, before the payload
SEGMENT_SUFFIX = ".seg"
# A length this large cannot be a record: config caps records at half of a segment, and
# segments are far below 2 GiB, so it is a damaged frame.
MAX_FRAME_LENGTH = 1 << 31


def segment_name(number: int) -> str:
    return f"{number:012d}{SEGMENT_SUFFIX}"


def segment_number(name: str) -> int | None:
    """The number of a segment file name, or None for any other file."""
    stem, suffix = name[: -len(SEGMENT_SUFFIX)], name[-len(SEGMENT_SUFFIX):]
    if suffix != SEGMENT_SUFFIX or not stem.isdigit():
        return None
    return int(stem)


def list_segments(directory: Path) -> list[int]:
    """Segment numbers present in the directory, ascending."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    numbers = [n for n in map(segment_number, names) if n is not None]
    numbers.sort()
    return numbers


def pack_header(identity: str, number: int, created_at: float) -> bytes:
    body = HEADER.pack(MAGIC, VERSION, HEADER_SIZE, identity.encode("ascii"), number, created_at, 0)
    crc = google_crc32c.value(body[: HEADER_SIZE - 4])
    return body[: HEADER_SIZE - 4] + struct.pack("<I", crc)


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    identity: str
    number: int
    created_at: float


def parse_header(data: bytes) -> SegmentHeader | None:
    """The header at the start of `data`, or None when it is short, foreign or damaged."""
    if len(data) < HEADER_SIZE:
        return None
    magic, version, size, identity, number, created_at, crc = HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION or size != HEADER_SIZE:
        return None
    if google_crc32c.value(data[: HEADER_SIZE - 4]) != crc:
        return None
    return SegmentHeader(identity.decode("ascii", "replace"), number, created_at)


def record_crc(length: int, written_at: float, payload: bytes) -> int:
    """The CRC32C of a record frame: over its length, its written-at time and its payload."""
    return int(google_crc32c.value(CHECKED.pack(length, written_at) + payload))


def pack_record_head(payload: bytes, written_at: float) -> bytes:
    """The frame head that goes before `payload` in a segment."""
    length = len(payload)
    return FRAME.pack(RECORD_MARKER, record_crc(length, written_at, payload), length, written_at)


# Where the bytes the CRC covers start in a frame: `length` and `written at` come right after
# the CRC field and the payload right after them, so a record's checksum is that of one
# contiguous stretch of the segment, `frame[CHECKED_FROM:]` (what `record_crc` computes from the
# parts; tests/spool/test_format.py holds the two equal).
CHECKED_FROM = FRAME_SIZE - CHECKED.size
_RECORD_MARKER_VALUE = int.from_bytes(RECORD_MARKER, "little")
_FRAME_HEAD = struct.Struct("<IIId")  # FRAME, with the marker read as an integer (no bytes made)
assert _FRAME_HEAD.size == FRAME_SIZE


def read_records(
    data: bytes, max_records: int, max_bytes: int, limit: int | None, segment: int, base: int,
) -> tuple[list[Record], int]:
    """The valid records at the start of `data` (a buffer read at file offset `base` of segment
    `segment`, at a frame boundary): up to `max_records`, their payloads summing to at most
    `max_bytes` (the first one always), none ending after `limit`. Returns the records and the
    offset in `data` after the last one; stops at the first frame that is not a whole valid
    record (the caller asks `frame_at` what it is).

    The reading loop of a worker: one pass that checks each frame and builds its `Record`
    (tuples made with `tuple.__new__`, the checksum over the frame's own bytes), ~0.6 µs a
    record."""
    records: list[Record] = []
    keep = records.append
    unpack = _FRAME_HEAD.unpack_from
    crc32c = google_crc32c.value
    new, record, position = tuple.__new__, Record, Position
    marker_value = _RECORD_MARKER_VALUE
    size = len(data) if limit is None else min(len(data), limit)
    offset = total = count = 0
    while count < max_records and size - offset >= FRAME_SIZE:
        marker, checksum, length, written_at = unpack(data, offset)
        start = offset + FRAME_SIZE
        end = start + length
        if marker != marker_value or end > size or (count and total + length > max_bytes):
            break
        if crc32c(data[offset + CHECKED_FROM : end]) != checksum:
            break
        keep(new(record, (new(position, (segment, base + offset)), data[start:end], written_at)))
        count += 1
        total += length
        offset = end
    return records, offset


def records_in(damaged: bytes) -> int:
    """How many records a damaged stretch held, counted by the record markers in it (at least
    one: damage is only ever reported where a frame was expected)."""
    return max(1, damaged.count(RECORD_MARKER))


def pack_footer(count: int, sealed_at: float) -> bytes:
    crc = google_crc32c.value(CHECKED.pack(count, sealed_at))
    return FRAME.pack(FOOTER_MARKER, crc, count, sealed_at)


def parse_footer(data: bytes) -> int | None:
    """Record count from a footer frame (exactly FRAME_SIZE bytes), or None if it is not one."""
    footer = parse_footer_frame(data)
    return None if footer is None else footer[0]


def parse_footer_frame(data: bytes) -> tuple[int, float] | None:
    """(record count, sealed at) of a footer frame (exactly FRAME_SIZE bytes), or None."""
    if len(data) != FRAME_SIZE:
        return None
    marker, crc, count, sealed_at = FRAME.unpack(data)
    if marker != FOOTER_MARKER or google_crc32c.value(CHECKED.pack(count, sealed_at)) != crc:
        return None
    return int(count), float(sealed_at)


class Step(Enum):
    """What the scanner found at an offset."""

    RECORD = "record"  # a valid record frame
    FOOTER = "footer"  # a valid footer: the segment ends here
    END = "end"  # no bytes left
    INCOMPLETE = "incomplete"  # a frame that may still be being written (or a torn tail)
    DAMAGED = "damaged"  # bytes that are not a valid frame


@dataclass(slots=True)
class Frame:
    step: Step
    offset: int
    end: int = 0  # offset after the frame
    written_at: float = 0.0
    payload: bytes = b""
    count: int = 0  # footer only


def frame_at(data: bytes, offset: int, max_length: int = MAX_FRAME_LENGTH) -> Frame:
    """Classify the frame starting at `offset` of `data` (a buffer starting at file offset 0
    or anywhere: offsets are relative to `data`)."""
    available = len(data) - offset
    if available <= 0:
        return Frame(Step.END, offset)
    if available < FRAME_SIZE:
        marker = data[offset : offset + 4]
        if RECORD_MARKER.startswith(marker[:available]) or FOOTER_MARKER.startswith(marker[:available]):
            return Frame(Step.INCOMPLETE, offset)
        return Frame(Step.DAMAGED, offset)
    marker, crc, length, written_at = FRAME.unpack_from(data, offset)
    if marker == RECORD_MARKER:
        if length > max_length:
            return Frame(Step.DAMAGED, offset)
        end = offset + FRAME_SIZE + length
        if end > len(data):
            return Frame(Step.INCOMPLETE, offset, end)
        payload = data[offset + FRAME_SIZE : end]
        if record_crc(length, written_at, payload) != crc:
            return Frame(Step.DAMAGED, offset, end)
        return Frame(Step.RECORD, offset, end, written_at, payload)
    if marker == FOOTER_MARKER:
        if google_crc32c.value(CHECKED.pack(length, written_at)) != crc:
            return Frame(Step.DAMAGED, offset)
        return Frame(Step.FOOTER, offset, offset + FRAME_SIZE, written_at, count=length)
    return Frame(Step.DAMAGED, offset)


def next_valid_frame(data: bytes, offset: int, max_length: int = MAX_FRAME_LENGTH) -> int | None:
    """Offset of the first valid record or footer frame after `offset`, or None."""
    position = offset + 1
    while True:
        candidates = [
            found
            for found in (data.find(RECORD_MARKER, position), data.find(FOOTER_MARKER, position))
            if found >= 0
        ]
        if not candidates:
            return None
        position = min(candidates)
        if frame_at(data, position, max_length).step in (Step.RECORD, Step.FOOTER):
            return position
        position += 1


@dataclass(slots=True)
class Damage:
    """A run of bytes in a segment that holds no valid frame."""

    start: int
    end: int
    torn_tail: bool  # nothing valid follows: a half-written end, truncated on recovery


@dataclass(slots=True)
class SegmentScan:
    records: int = 0
    end: int = HEADER_SIZE  # offset after the last valid frame (record or footer)
    footer: int | None = None  # footer count when the segment ends with a valid footer
    damage: list[Damage] | None = None


def scan_segment(data: bytes, max_length: int = MAX_FRAME_LENGTH) -> SegmentScan:
    """Walk a whole segment (`data` = file contents): count records, find damage."""
    scan = SegmentScan(damage=[])
    offset = HEADER_SIZE
    assert scan.damage is not None
    while True:
        frame = frame_at(data, offset, max_length)
        if frame.step is Step.END:
            break
        if frame.step is Step.RECORD:
            scan.records += 1
            offset = scan.end = frame.end
            continue
        if frame.step is Step.FOOTER and frame.end == len(data):
            scan.footer = frame.count
            scan.end = frame.end
            break
        # damaged, incomplete, or a footer with bytes after it (not where footers go)
        resume = next_valid_frame(data, offset, max_length)
        if resume is None:
            scan.damage.append(Damage(offset, len(data), torn_tail=True))
            break
        scan.damage.append(Damage(offset, resume, torn_tail=False))
        offset = resume
    return scan


def iter_records(data: bytes, offset: int, max_length: int = MAX_FRAME_LENGTH) -> Iterator[Frame]:
    """Valid records of a complete segment from `offset`, skipping damage, up to a footer."""
    while True:
        frame = frame_at(data, offset, max_length)
        if frame.step is Step.RECORD:
            yield frame
            offset = frame.end
        elif frame.step in (Step.END, Step.FOOTER):
            return
        else:
            resume = next_valid_frame(data, offset, max_length)
            if resume is None:
                return
            offset = resume
