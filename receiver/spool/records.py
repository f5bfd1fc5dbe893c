"""The values the spool hands out: positions, records, batches, and the event id built from them.

A position (segment number, byte offset of the frame) names one record of its segment;
`event_id` is built from the identity written in the segment's header and the position, so it
is stable across restarts and replays: that is what makes Elasticsearch's `create` action
deduplicate re-sends. It is never given to another event: every start of the writer puts an
identity of its own (random) in the headers of the segments it writes, and within one start
segment numbers only grow; so ids stay unique even when the ledger, which remembers the highest
segment number, is lost, damaged or restored from a backup and the numbers start again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Position(NamedTuple):
    """A record's place: ordered, hashable, immutable (a tuple: ~3x cheaper to make than a
    frozen dataclass, and the reader makes one per record)."""

    segment: int
    offset: int


class Record(NamedTuple):
    """One record as read: a tuple too, so that the reader builds one per record with
    `tuple.__new__` at C speed (a slotted dataclass's `__init__` cost ~0.3 µs a record more)."""

    position: Position
    payload: bytes
    written_at: float  # Unix time the record was appended


@dataclass(slots=True)
class Batch:
    """Records read from one segment, `[start, end)` in bytes; `ordinal` records of the
    segment come before `end`. A batch of no records stands for a damaged stretch the reader
    skipped (`lost` records, counted by their markers)."""

    segment: int
    identity: str  # the identity in the segment's header (its writer's): the first part of ids
    start: int
    end: int
    ordinal: int
    records: list[Record]
    lost: int = 0


def id_head(identity: str, segment: int) -> str:
    """The start of the event ids of one segment's records (see `event_id`)."""
    return f"{identity}-{segment:x}-"


def event_id(identity: str, position: Position) -> str:
    """Stable Elasticsearch `_id`: spool identity, segment and offset (hex), e.g. `ab12cd34ef-7-1a2b`."""
    return id_head(identity, position.segment) + format(position.offset, "x")


def parse_event_id(text: str) -> tuple[str, Position]:
    """The identity and position an `event_id` was built from (the Kafka path carries the id and
    rebuilds batches from it); ValueError if `text` is not one. `event_id(*parse_event_id(x))
    == x` for every id `event_id` makes (tests/spool/test_records.py)."""
    identity, segment, offset = text.rsplit("-", 2)
    position = Position(int(segment, 16), int(offset, 16))
    if not identity or event_id(identity, position) != text:
        raise ValueError(f"{text!r} is not an event id")
    return identity, position
