"""A spool on a volume smaller than a segment (issue 27, item 2): an 8 MiB file system (tmpfs,
mounted for the test: needs root) under the default 64 MiB segments, 40,000 events while the
output is down and a worker holds the first segment. `drop_oldest` used to delete the segment
the worker held open (freeing nothing), then drop every new event as `disk_full`, and the worker
gave up the deleted segment's still readable events: 37,000 of 40,000 dropped. Now segments are
sized from the room on the volume, a held segment is never deleted, and every event is either
read once or counted dropped, exactly."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from receiver.config import ByteSize
from receiver.metrics import Metrics
from receiver.spool import SpoolWriter
from receiver.spool.format import FRAME_SIZE, HEADER_SIZE, iter_records, segment_name
from tests.spool.helpers import KIB, counter, numbers, payloads, reader_of, settings
from tests.support import small_tmpfs

MIB = 1024 * KIB
EVENTS = 40_000
VOLUME = 8 * MIB


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs mounted at a temporary directory."""
    with small_tmpfs(tmp_path / "volume", VOLUME) as point:
        yield point


def _dropped(metrics: Metrics) -> dict[str, float]:
    return {sample.labels["reason"]: sample.value for family in metrics.events_dropped.collect()
            for sample in family.samples if sample.name.endswith("_total")}


@pytest.mark.parametrize("when_full", ["drop_oldest", "drop_newest"])
def test_a_volume_smaller_than_a_segment_drops_only_what_does_not_fit(
    volume: Path, when_full: str
) -> None:
    metrics = Metrics()
    writer = SpoolWriter(settings(volume / "spool", segment_bytes=ByteSize(64 * MIB),
                                  max_bytes=ByteSize(1024 * MIB), when_full=when_full), metrics)
    record = FRAME_SIZE + len(payloads(0, 1, pad=300)[0])
    reader = reader_of(writer)
    accepted = writer.append(payloads(0, 100, pad=300))
    held = reader.read(100, 10 * MIB)  # the output is down: this batch stays in flight
    assert held is not None and len(held.records) == 100
    for start in range(100, EVENTS, 100):
        accepted += writer.append(payloads(start, 100, pad=300))
    reader.acknowledge(held, shipped=100)  # the output is back: everything readable is shipped
    seen = numbers([r.payload for r in held.records])
    while (batch := reader.read(1000, 10 * MIB)) is not None:
        seen += numbers([r.payload for r in batch.records])
        reader.acknowledge(batch, shipped=len(batch.records))
    with contextlib.suppress(OSError):
        writer.close()
    dropped = _dropped(metrics)
    assert len(seen) == len(set(seen))  # nothing read twice
    assert len(seen) + sum(dropped.values()) == EVENTS  # every event shipped or counted dropped
    assert counter(metrics, "events_spooled") == accepted
    assert counter(metrics, "events_shipped") == len(seen)
    assert writer.ledger.pending() == 0
    # What the volume holds is kept, less one segment (an eighth of it) at most: 20,661
    # records fill 8 MiB. Was 100 with drop_oldest: 39,900 dropped.
    assert len(seen) >= VOLUME * 7 // 8 // record
    if when_full == "drop_oldest":
        assert set(dropped) == {"spool_full_oldest"}  # nothing new refused: the old made room
        # the segment the worker held, whole, then the newest events without a gap
        gap = next(i for i, n in enumerate(seen) if n != i)
        assert gap >= 100
        assert seen[gap:] == list(range(seen[gap], EVENTS))
    else:
        assert set(dropped) == {"disk_full"}
        assert seen == list(range(len(seen)))  # the oldest are kept


def test_drop_oldest_never_takes_the_segment_a_worker_reads(tmp_path: Path) -> None:
    # Without a small volume: spool.max_bytes is the limit, reached while the segment after
    # the one the worker holds is being written.
    metrics = Metrics()
    writer = SpoolWriter(settings(tmp_path, segment_bytes=ByteSize(64 * KIB),
                                  max_bytes=ByteSize(100 * KIB), when_full="drop_oldest"), metrics)
    reader = reader_of(writer)
    writer.append(payloads(0, 10))
    held = reader.read(10, MIB)  # in a bulk request that fails for now
    assert held is not None and len(held.records) == 10
    total = 2000
    for start in range(10, total, 10):
        assert writer.append(payloads(start, 10)) == 10  # never refuses
    first = writer.directory / segment_name(held.segment)
    assert first.exists()  # the segment the worker reads was not deleted
    in_first = sum(1 for _ in iter_records(first.read_bytes(), HEADER_SIZE))
    reader.acknowledge(held, shipped=10)
    seen = numbers([r.payload for r in held.records])
    while (batch := reader.read(100, MIB)) is not None:
        seen += numbers([r.payload for r in batch.records])
        reader.acknowledge(batch, shipped=len(batch.records))
    dropped = _dropped(metrics)
    assert seen[:in_first] == list(range(in_first))  # was: 10, the rest of it counted dropped
    assert seen[in_first:] == list(range(seen[in_first], total))  # then the newest, no gap
    assert set(dropped) == {"spool_full_oldest"}
    assert len(seen) + dropped["spool_full_oldest"] == total
    assert counter(metrics, "events_shipped") == len(seen) and writer.ledger.pending() == 0
    writer.close()
