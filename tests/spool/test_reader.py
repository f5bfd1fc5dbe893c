"""Reading and acknowledging: order, segment rolls, the ledger's prefixes, deletion of
acknowledged segments, several readers sharing a spool by whole segments."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import msgpack

from receiver.metrics import Metrics
from receiver.spool import Position, SpoolWriter, event_id
from receiver.spool.format import HEADER_SIZE, list_segments
from tests.spool.helpers import KIB, drain, numbers, payloads, reader_of, settings


def test_roundtrip_keeps_order_payloads_and_times(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path), Metrics())
    sent = payloads(0, 50)
    assert writer.append(sent) == 50
    reader = reader_of(writer)
    batch = reader.read(1000, 10**6)
    assert batch is not None
    assert [r.payload for r in batch.records] == sent
    assert all(r.written_at > 0 for r in batch.records)
    positions = [r.position for r in batch.records]
    assert positions == sorted(positions) and len(set(positions)) == 50
    assert batch.end > positions[-1].offset and batch.segment == positions[-1].segment
    assert reader.read(1000, 10**6) is None
    writer.close()


def test_read_limits_records_and_bytes(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path), Metrics())
    writer.append(payloads(0, 30, pad=100))
    reader = reader_of(writer)
    first = reader.read(7, 10**6)
    assert first is not None and len(first.records) == 7
    size = len(first.records[0].payload)
    second = reader.read(100, 3 * size)
    assert second is not None and len(second.records) == 3
    assert numbers([r.payload for r in second.records]) == [7, 8, 9]
    one = reader.read(100, 1)  # the first record always comes, even when larger than max_bytes
    assert one is not None and len(one.records) == 1
    writer.close()


def test_chunks_follow_the_record_size_and_larger_records_still_come_whole(tmp_path: Path) -> None:
    # Small records teach the reader a small chunk; much larger ones after them (a chunk holds
    # only part of one) and the `max_records` limit must still give every record once, whole.
    writer = SpoolWriter(settings(tmp_path, segment_bytes=1024 * KIB), Metrics())
    small, large = payloads(0, 200, pad=10), payloads(200, 30, pad=3000)
    writer.append(small)
    writer.append(large)
    reader = reader_of(writer)
    got: list[bytes] = []
    while (batch := reader.read(64, 10**6)) is not None:
        assert 1 <= len(batch.records) <= 64
        assert all(type(r.payload) is bytes for r in batch.records)
        got += [r.payload for r in batch.records]
    assert got == small + large
    writer.close()


def test_segments_roll_and_reading_crosses_them(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path), Metrics())
    for start in range(0, 1000, 50):
        assert writer.append(payloads(start, 50)) == 50
    assert len(list_segments(tmp_path)) >= 7  # 1000 x ~430 bytes in 64 KiB segments
    reader = reader_of(writer)
    assert drain(reader, acknowledge=False) == list(range(1000))
    writer.close()


def test_acknowledging_out_of_order_advances_over_the_contiguous_prefix(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path), Metrics())
    writer.append(payloads(0, 40))
    reader = reader_of(writer)
    batches = [reader.read(10, 10**6) for _ in range(4)]
    assert all(b is not None for b in batches)
    b0, b1, b2, b3 = (b for b in batches if b is not None)
    segment = b0.segment

    def prefix() -> tuple[int, int]:
        return writer.ledger.progress()[segment]

    assert prefix() == (HEADER_SIZE, 0)
    reader.acknowledge(b2, 10)
    reader.acknowledge(b1, 10)
    assert prefix() == (HEADER_SIZE, 0)  # b0 still outstanding
    reader.acknowledge(b0, 10)
    assert prefix() == (b2.end, 30)
    reader.acknowledge(b3, 10)
    assert prefix() == (b3.end, 40)
    reader.acknowledge(b3, 10)  # twice: harmless, counted once
    assert prefix() == (b3.end, 40)
    assert writer.ledger.pending() == 0
    writer.close()


def test_a_batch_read_right_after_another_joins_it_and_one_acknowledgement_covers_both(
        tmp_path: Path) -> None:
    """What the shipper collects for one request is acknowledged as one batch (SpoolReader.join):
    only a batch that continues the other in its segment joins it."""
    metrics = Metrics()
    writer = SpoolWriter(settings(tmp_path), metrics)
    writer.append(payloads(0, 5))
    reader = reader_of(writer)
    first = reader.read(1000, 10**6)
    writer.append(payloads(5, 5))  # written while the first waited for company
    then = reader.read(1000, 10**6)
    assert first is not None and then is not None
    assert reader.join(first, then)
    assert numbers([r.payload for r in first.records]) == list(range(10))
    assert (first.start, first.end, first.ordinal) == (HEADER_SIZE, then.end, 10)
    segment = first.segment
    reader.acknowledge(first, 10)
    assert writer.ledger.progress()[segment] == (then.end, 10)
    assert metrics.events_shipped._value.get() == 10

    writer.append(payloads(10, 400))  # ~430 bytes each: the next segment starts in them
    batches = []
    while (batch := reader.read(10, 10**6)) is not None:
        batches.append(batch)
    crossing = next(n for n in range(1, len(batches))
                    if batches[n].segment != batches[n - 1].segment)
    for first, then in ((batches[0], batches[2]),  # batches[1] lies between them
                        (batches[crossing - 1], batches[crossing])):  # another segment
        was = (first.end, first.ordinal, len(first.records))
        assert not reader.join(first, then)
        assert (first.end, first.ordinal, len(first.records)) == was
    writer.close()


def test_prefix_survives_reopen_and_unacknowledged_records_come_again(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path), Metrics())
    writer.append(payloads(0, 30))
    reader = reader_of(writer)
    first, second = reader.read(10, 10**6), reader.read(10, 10**6)
    assert first is not None and second is not None
    reader.acknowledge(first)  # second handed out but never acknowledged
    reader.close()
    writer.close()

    metrics = Metrics()
    writer = SpoolWriter(settings(tmp_path), metrics)  # a restart
    assert metrics.events_recovered._value.get() == 20
    writer.append(payloads(30, 5))
    again = reader_of(writer)
    batch = again.read(1000, 10**6)
    assert batch is not None
    assert batch.records[0].position == second.records[0].position
    assert event_id(batch.identity, batch.records[0].position) == event_id(
        second.identity, second.records[0].position
    )
    assert numbers([r.payload for r in batch.records]) == list(range(10, 30))
    again.acknowledge(batch)
    assert drain(again) == list(range(30, 35))
    writer.close()


def test_fully_acknowledged_segments_are_deleted_and_numbers_never_reused(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path), Metrics())
    for start in range(0, 600, 50):
        writer.append(payloads(start, 50))
    before = list_segments(tmp_path)
    assert len(before) > 3
    reader = reader_of(writer)
    assert drain(reader) == list(range(600))
    assert list_segments(tmp_path) == [before[-1]]  # the one being written stays
    reader.close()
    writer.close()
    # a restart never reuses a segment number, even when every segment was deleted
    writer = SpoolWriter(settings(tmp_path), Metrics())
    assert list_segments(tmp_path) == [before[-1] + 1]
    writer.append(payloads(600, 1))
    batch = reader_of(writer).read(10, 10**6)
    assert batch is not None and batch.records[0].position.segment > before[-1]
    writer.close()


def test_event_id_is_short_and_distinct() -> None:
    one = event_id("abcdefghij", Position(3, 42))
    assert one == event_id("abcdefghij", Position(3, 42))
    assert one != event_id("abcdefghij", Position(3, 43))
    assert one != event_id("abcdefghij", Position(4, 42))
    assert one != event_id("abcdefghik", Position(3, 42))
    assert len(event_id("abcdefghij", Position(10**6, 64 * 1024**2))) <= 30


def test_wait_wakes_up_when_the_writer_appends(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path), Metrics())
    reader = reader_of(writer)
    assert reader.read(10, 10**6) is None
    assert not reader.wait(0.05)
    writer.append(payloads(0, 1))
    assert reader.wait(5)
    assert drain(reader) == [0]
    writer.close()


def test_two_readers_share_the_spool_by_whole_segments(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path), Metrics())
    for start in range(0, 1000, 50):
        writer.append(payloads(start, 50))
    one, two = reader_of(writer, "one"), reader_of(writer, "two")
    seen: dict[str, list[int]] = {"one": [], "two": []}
    segments: dict[str, set[int]] = {"one": set(), "two": set()}
    while True:
        progressed = False
        for name, reader in (("one", one), ("two", two)):
            batch = reader.read(30, 10**6)
            if batch is not None:
                progressed = True
                seen[name] += numbers([r.payload for r in batch.records])
                segments[name].add(batch.segment)
                reader.acknowledge(batch, len(batch.records))
        if not progressed:
            break
    assert sorted(seen["one"] + seen["two"]) == list(range(1000))  # each event once
    assert seen["one"] and seen["two"]  # both read
    assert not segments["one"] & segments["two"]  # never the same segment
    assert writer.ledger.pending() == 0
    writer.close()


def test_a_reader_that_goes_away_leaves_its_segment_to_another_from_the_prefix(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path), Metrics())
    writer.append(payloads(0, 40))
    gone = reader_of(writer, "gone")
    first, second = gone.read(10, 10**6), gone.read(10, 10**6)
    assert first is not None and second is not None
    gone.acknowledge(second)  # beyond the prefix: forgotten with its reader
    gone.acknowledge(first)
    gone.read(10, 10**6)  # handed out, never acknowledged
    writer.ledger.worker_gone("gone")
    other = reader_of(writer, "other")
    assert drain(other) == list(range(20, 40))
    writer.close()


def test_reader_reads_on_through_a_segment_deleted_under_it(tmp_path: Path) -> None:
    # Its events are still readable through the open file: never given up (issue 27, item 2;
    # the reader used to let go of the segment and its unread events were lost).
    writer = SpoolWriter(settings(tmp_path), Metrics())
    for start in range(0, 400, 50):
        writer.append(payloads(start, 50))
    reader = reader_of(writer)
    first = reader.read(5, 10**6)
    assert first is not None and first.records[0].position.segment == list_segments(tmp_path)[0]
    reader.acknowledge(first)
    os.unlink(tmp_path / f"{first.records[0].position.segment:012d}.seg")
    assert drain(reader) == list(range(5, 400))
    assert writer.ledger.pending() == 0
    writer.close()


def test_payload_bytes_are_not_interpreted(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path), Metrics())
    odd = [b"", b"\x00" * 10, b"\x1eHRr" * 50, msgpack.packb([1, 2, 3])]
    assert writer.append(odd) == 4
    batch = reader_of(writer).read(10, 10**6)
    assert batch is not None and [r.payload for r in batch.records] == odd
    writer.close()


def test_concurrent_writers_and_a_reader_thread_deliver_everything_once(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path, max_bytes=64 * 1024**2), Metrics())
    reader = reader_of(writer)
    per_thread = 3000

    def produce(first: int) -> None:
        for start in range(first, first + per_thread, 30):
            assert writer.append(payloads(start, 30, pad=100)) == 30

    producers = [threading.Thread(target=produce, args=(k * 100_000,)) for k in range(3)]
    for thread in producers:
        thread.start()
    seen: list[int] = []
    while len(seen) < 3 * per_thread:
        assert reader.wait(10)
        seen += drain(reader)
    for thread in producers:
        thread.join()
    assert sorted(seen) == sorted(n for k in range(3) for n in range(k * 100_000, k * 100_000 + per_thread))
    for k in range(3):  # each producer's events keep their order
        mine = [n for n in seen if k * 100_000 <= n < (k + 1) * 100_000]
        assert mine == sorted(mine)
    writer.close()
