"""The record frame and the worker's reading loop (receiver/spool/format.py): the checksum taken
over one stretch of a frame is the one `record_crc` defines, and `read_records` finds exactly the
records the general scanner (`frame_at`) finds, where it finds them, within its limits."""

from __future__ import annotations

import random

import google_crc32c

from receiver.spool.format import (
    CHECKED_FROM,
    FRAME,
    FRAME_SIZE,
    Frame,
    Step,
    frame_at,
    pack_footer,
    pack_record_head,
    read_records,
    record_crc,
)
from receiver.spool.records import Position

SEGMENT, BASE = 7, 4242  # where the buffer was read from


def frames(payloads: list[bytes], first_time: float = 1795631000.25) -> bytes:
    return b"".join(pack_record_head(payload, first_time + n) + payload
                    for n, payload in enumerate(payloads))


def some_payloads(count: int, seed: int = 28) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.choice((0, 1, 17, 300, 700, 5000))) for _ in range(count)]


def scanned(data: bytes) -> list[Frame]:
    """The records from the start of `data` up to the first frame that is not one."""
    found, offset = [], 0
    while (frame := frame_at(data, offset)).step is Step.RECORD:
        found.append(frame)
        offset = frame.end
    return found


def test_a_records_checksum_is_that_of_one_stretch_of_its_frame() -> None:
    for n, payload in enumerate([b"", b"x", *some_payloads(50)]):
        written_at = 1795631000.0 + n / 7
        frame = pack_record_head(payload, written_at) + payload
        stored = FRAME.unpack_from(frame)[1]
        assert google_crc32c.value(frame[CHECKED_FROM:]) == stored
        assert record_crc(len(payload), written_at, payload) == stored


def test_read_records_finds_what_the_scanner_finds_and_stops_at_damage() -> None:
    payloads = some_payloads(40)
    data = bytearray(frames(payloads))
    whole = scanned(bytes(data))
    assert len(whole) == 40
    damaged = whole[25]
    data[damaged.offset + FRAME_SIZE + len(damaged.payload) // 2 - 1] ^= 0x40  # a flipped bit
    expected = scanned(bytes(data))
    assert len(expected) == 25
    records, consumed = read_records(bytes(data), 1000, 1 << 30, None, SEGMENT, BASE)
    assert [(r.position, r.payload, r.written_at) for r in records] == [
        (Position(SEGMENT, BASE + f.offset), f.payload, f.written_at) for f in expected]
    assert consumed == expected[-1].end
    assert frame_at(bytes(data), consumed).step is Step.DAMAGED


def test_read_records_keeps_to_its_limits() -> None:
    payloads = [b"a" * 100, b"b" * 200, b"c" * 300, b"d" * 50]
    data = frames(payloads) + pack_footer(4, 1795631100.0)
    ends = [f.end for f in scanned(data)]

    def read(max_records: int = 1000, max_bytes: int = 1 << 30,
             limit: int | None = None, buffer: bytes = data) -> tuple[list[bytes], int]:
        records, consumed = read_records(buffer, max_records, max_bytes, limit, SEGMENT, BASE)
        return [r.payload for r in records], consumed

    assert read() == (payloads, ends[3])  # the footer is not a record
    assert read(max_records=2) == (payloads[:2], ends[1])
    assert read(max_bytes=300) == (payloads[:2], ends[1])
    assert read(max_bytes=299) == (payloads[:1], ends[0])
    assert read(max_bytes=1) == (payloads[:1], ends[0])  # the first one always
    assert read(limit=ends[2]) == (payloads[:3], ends[2])
    assert read(limit=ends[2] - 1) == (payloads[:2], ends[1])  # none ends after the limit
    assert read(buffer=data[: ends[1] + FRAME_SIZE + 10]) == (payloads[:2], ends[1])  # torn
    assert read(buffer=b"") == ([], 0)
