"""Reading and acknowledging: order, segment rolls, the checkpoint, deletion of acknowledged
segments, and a reader in another process tailing a live writer."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import msgpack

from receiver.metrics import Metrics
from receiver.spool import Position, SpoolReader, SpoolWriter, event_id
from receiver.spool.format import list_segments
from tests.spool.helpers import KIB, drain, numbers, payloads, settings
from tests.support import REPO, wait_for


def test_roundtrip_keeps_order_payloads_and_times(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path), Metrics())
    sent = payloads(0, 50)
    assert writer.append(sent) == 50
    reader = SpoolReader(tmp_path)
    batch = reader.read(1000, 10**6)
    assert batch is not None
    assert [r.payload for r in batch.records] == sent
    assert all(r.written_at > 0 for r in batch.records)
    positions = [r.position for r in batch.records]
    assert positions == sorted(positions) and len(set(positions)) == 50
    assert batch.end > positions[-1]
    assert reader.read(1000, 10**6) is None
    writer.close()


def test_read_limits_records_and_bytes(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path), Metrics())
    writer.append(payloads(0, 30, pad=100))
    reader = SpoolReader(tmp_path)
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
    reader = SpoolReader(tmp_path)
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
    reader = SpoolReader(tmp_path)
    assert drain(reader, acknowledge=False) == list(range(1000))
    writer.close()


def test_acknowledging_out_of_order_advances_over_the_contiguous_prefix(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path), Metrics())
    writer.append(payloads(0, 40))
    reader = SpoolReader(tmp_path)
    batches = [reader.read(10, 10**6) for _ in range(4)]
    assert all(b is not None for b in batches)
    b0, b1, b2, b3 = (b for b in batches if b is not None)
    start = reader.checkpoint
    reader.acknowledge(b2)
    reader.acknowledge(b1)
    assert reader.checkpoint == start  # b0 still outstanding
    reader.acknowledge(b0)
    assert reader.checkpoint == b2.end
    reader.acknowledge(b3)
    assert reader.checkpoint == b3.end
    reader.acknowledge(b3)  # twice: harmless
    assert reader.checkpoint == b3.end
    writer.close()


def test_checkpoint_survives_reopen_and_unacknowledged_records_come_again(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path), Metrics())
    writer.append(payloads(0, 30))
    reader = SpoolReader(tmp_path)
    first, second = reader.read(10, 10**6), reader.read(10, 10**6)
    assert first is not None and second is not None
    reader.acknowledge(first)  # second handed out but never acknowledged
    reader.close()
    writer.close()

    writer = SpoolWriter(settings(tmp_path), Metrics())  # a restart
    writer.append(payloads(30, 5))
    again = SpoolReader(tmp_path)
    batch = again.read(1000, 10**6)
    assert batch is not None
    assert batch.records[0].position == second.records[0].position
    assert event_id(again.identity, batch.records[0].position) == event_id(
        reader.identity, second.records[0].position
    )
    assert numbers([r.payload for r in batch.records]) == list(range(10, 30))
    assert drain(again) == list(range(30, 35))
    writer.close()


def test_fully_acknowledged_segments_are_deleted_but_never_the_newest(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path), Metrics())
    for start in range(0, 600, 50):
        writer.append(payloads(start, 50))
    before = list_segments(tmp_path)
    assert len(before) > 3
    reader = SpoolReader(tmp_path)
    assert drain(reader) == list(range(600))
    after = list_segments(tmp_path)
    assert after == [before[-1]]
    writer.close()
    # a restart never reuses a segment number: positions stay unique event ids
    writer = SpoolWriter(settings(tmp_path), Metrics())
    writer.append(payloads(600, 1))
    batch = SpoolReader(tmp_path).read(10, 10**6)
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
    reader = SpoolReader(tmp_path)
    assert reader.read(10, 10**6) is None
    assert not reader.wait(0.05)
    writer.append(payloads(0, 1))
    assert reader.wait(5)
    assert drain(reader) == [0]
    writer.close()


_TAILER = textwrap.dedent(
    """
    import sys
    from receiver.event import decode_event, encode_event
    from pathlib import Path
    from receiver.spool import SpoolReader
    reader = SpoolReader(Path(sys.argv[1]))
    want, seen = int(sys.argv[2]), []
    while len(seen) < want:
        batch = reader.read(500, 1 << 20)
        if batch is None:
            if not reader.wait(30):
                break
            continue
        seen += [decode_event(r.payload).document()["n"] for r in batch.records]
        reader.acknowledge(batch)
    print(len(seen), int(seen == list(range(want))))
    """
)


def test_reader_in_another_process_tails_a_live_writer(tmp_path: Path) -> None:
    total = 5000
    writer = SpoolWriter(settings(tmp_path, max_bytes=64 * 1024**2), Metrics())
    child = subprocess.Popen(
        [sys.executable, "-c", _TAILER, str(tmp_path), str(total)],
        cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    for start in range(0, total, 100):  # rolls a segment every ~150 events while it reads
        assert writer.append(payloads(start, 100)) == 100
    out, _ = child.communicate(timeout=60)
    assert out.split() == [str(total), "1"]
    # it acknowledged everything: only the newest segment is left
    wait_for(lambda: len(list_segments(tmp_path)) == 1, 5, "acknowledged segments deleted")
    writer.close()


def test_reader_skips_a_segment_deleted_under_it(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path), Metrics())
    for start in range(0, 400, 50):
        writer.append(payloads(start, 50))
    reader = SpoolReader(tmp_path)
    first = reader.read(5, 10**6)
    assert first is not None and first.records[0].position.segment == list_segments(tmp_path)[0]
    os.unlink(tmp_path / f"{first.records[0].position.segment:012d}.seg")
    rest = drain(reader)
    assert rest and rest == sorted(rest) and rest[0] > 5
    assert rest[-1] == 399
    writer.close()


def test_payload_bytes_are_not_interpreted(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path), Metrics())
    odd = [b"", b"\x00" * 10, b"\x1eHRr" * 50, msgpack.packb([1, 2, 3])]
    assert writer.append(odd) == 4
    batch = SpoolReader(tmp_path).read(10, 10**6)
    assert batch is not None and [r.payload for r in batch.records] == odd
    writer.close()


def test_concurrent_writers_and_a_reader_thread_deliver_everything_once(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path, max_bytes=64 * 1024**2), Metrics())
    reader = SpoolReader(tmp_path)
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
