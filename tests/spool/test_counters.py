"""The corruption counters keep the accounting identity exact (issue 27, item 9): a torn tail is
counted once, as found (recovered) and as lost; a damaged footer loses no record; a cut sealed
segment counts the records it lost. After each case, in the run that finds it:

    events_recovered + events_spooled
        = events_shipped + events_dead_lettered + events_dropped + spool_corrupt_records + pending
"""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.metrics import Metrics
from receiver.spool import SpoolWriter
from receiver.spool.format import FRAME_SIZE, HEADER_SIZE, iter_records, list_segments, segment_name
from tests.spool.helpers import counter, filled, numbers, payloads, reader_of, settings


def _ship_everything(writer: SpoolWriter) -> list[int]:
    """Read all, acknowledging every event as shipped; the event numbers."""
    seen: list[int] = []
    reader = reader_of(writer)
    while (batch := reader.read(100, 10**7)) is not None:
        seen += numbers([r.payload for r in batch.records])
        reader.acknowledge(batch, shipped=len(batch.records))
    reader.close()
    return seen


def _balance(metrics: Metrics, writer: SpoolWriter) -> tuple[float, float]:
    found = counter(metrics, "events_recovered") + counter(metrics, "events_spooled")
    gone = (counter(metrics, "events_shipped") + sum(
        s.value for m in metrics.events_dead_lettered.collect() for s in m.samples
        if s.name.endswith("_total")) + sum(
        s.value for m in metrics.events_dropped.collect() for s in m.samples
        if s.name.endswith("_total"))
        + counter(metrics, "spool_corrupt_records") + writer.ledger.pending())
    return found, gone


def _records_of(path: Path) -> int:
    return sum(1 for _ in iter_records(path.read_bytes(), HEADER_SIZE))


def test_a_torn_tail_is_counted_once_found_and_lost(tmp_path: Path) -> None:
    last = filled(tmp_path)[-1]
    path = tmp_path / segment_name(last)
    data = path.read_bytes()
    # a power cut mid-write: no footer, the first 200 bytes of a record at the end
    path.write_bytes(data[:-FRAME_SIZE] + data[HEADER_SIZE : HEADER_SIZE + 200])
    metrics = Metrics()
    writer = SpoolWriter(settings(tmp_path), metrics)
    assert counter(metrics, "spool_corrupt_records") == 1
    assert counter(metrics, "events_recovered") == 601  # was 600: the identity was off by 1
    writer.close()
    metrics = Metrics()
    writer = SpoolWriter(settings(tmp_path), metrics)  # the next start: cut already, not again
    assert counter(metrics, "spool_corrupt_records") == 0
    assert counter(metrics, "events_recovered") == 600
    assert _ship_everything(writer) == list(range(600))
    assert _balance(metrics, writer) == (600, 600)
    writer.close()


@pytest.mark.parametrize("byte", range(FRAME_SIZE))
def test_a_damaged_footer_loses_no_record(tmp_path: Path, byte: int) -> None:
    first = filled(tmp_path)[0]
    path = tmp_path / segment_name(first)
    records = _records_of(path)
    data = bytearray(path.read_bytes())
    data[len(data) - FRAME_SIZE + byte] ^= 0x04  # one bit of the footer
    path.write_bytes(bytes(data))
    metrics = Metrics()
    writer = SpoolWriter(settings(tmp_path), metrics)
    assert counter(metrics, "spool_corrupt_records") == 0  # was 1 for every byte
    assert counter(metrics, "events_recovered") == 600
    assert _records_of(path) == records  # the footer is rewritten, the records kept
    assert _ship_everything(writer) == list(range(600))
    assert _balance(metrics, writer) == (600, 600)
    writer.close()


def _cut_in_half(path: Path) -> tuple[int, int]:
    """Cut a sealed segment in the middle of a record; (records it held, records left whole)."""
    data = path.read_bytes()
    offsets = [frame.offset for frame in iter_records(data, HEADER_SIZE)]
    middle = offsets[len(offsets) // 2] + FRAME_SIZE + 7  # inside a record
    path.write_bytes(data[:middle])
    return len(offsets), len(offsets) // 2


def test_a_sealed_segment_cut_while_stopped_counts_every_record_it_lost(tmp_path: Path) -> None:
    segments = filled(tmp_path)
    first = _records_of(tmp_path / segment_name(segments[0]))  # events before the cut segment
    held, left = _cut_in_half(tmp_path / segment_name(segments[1]))
    metrics = Metrics()
    writer = SpoolWriter(settings(tmp_path), metrics)
    assert counter(metrics, "spool_corrupt_records") == held - left  # was 1 (the torn record)
    assert counter(metrics, "events_recovered") == 600
    seen = _ship_everything(writer)
    assert seen == list(range(first + left)) + list(range(first + held, 600))
    assert _balance(metrics, writer) == (600, 600)
    writer.close()


def test_a_sealed_segment_cut_while_running_counts_every_record_it_lost(tmp_path: Path) -> None:
    metrics = Metrics()
    writer = SpoolWriter(settings(tmp_path), metrics)
    for start in range(0, 600, 50):
        writer.append(payloads(start, 50))
    segments = list_segments(tmp_path)
    held, left = _cut_in_half(tmp_path / segment_name(segments[0]))
    seen = _ship_everything(writer)  # was: stuck at the cut, the segment never finished
    assert seen == list(range(left)) + list(range(held, 600))
    assert counter(metrics, "spool_corrupt_records") == held - left  # was 1
    assert writer.ledger.pending() == 0
    assert _balance(metrics, writer) == (600, 600)
    writer.close()


def test_a_torn_tail_where_older_damage_was_quarantined_is_still_counted(tmp_path: Path) -> None:
    # Segment numbers start again when the ledger is lost: damage of another segment of the
    # same number may have been quarantined at the same offset before.
    last = filled(tmp_path)[-1]
    path = tmp_path / segment_name(last)
    data = path.read_bytes()
    torn_at = len(data) - FRAME_SIZE
    path.write_bytes(data[:torn_at] + data[HEADER_SIZE : HEADER_SIZE + 200])
    folder = tmp_path / "quarantine"
    folder.mkdir()
    (folder / f"{last:012d}-{torn_at:012d}.bin").write_bytes(b"other damage, long ago")
    metrics = Metrics()
    writer = SpoolWriter(settings(tmp_path), metrics)
    assert counter(metrics, "spool_corrupt_records") == 1  # was 0: taken for the old damage
    assert counter(metrics, "events_recovered") == 601
    assert len(list(folder.iterdir())) == 2
    writer.close()
