"""Start-up with damaged spool directories: torn tails, flipped bits, cut or empty segments,
damaged headers, missing or damaged ledgers, an older version's checkpoint, lost, damaged or
copied identity files, and writers killed -9 in the middle of writing. The start always
succeeds, every valid record is read, damage is quarantined and the records it held counted."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from receiver.metrics import Metrics
from receiver.spool import SpoolWriter, event_id
from receiver.spool.directory import IDENTITY_FILE, LEGACY_CHECKPOINT_FILE, QUARANTINE_DIR, place_of
from receiver.spool.format import (
    FRAME_SIZE,
    HEADER_SIZE,
    iter_records,
    list_segments,
    parse_header,
    segment_name,
)
from receiver.spool.ledger import LEDGER_FILE
from tests.spool.helpers import counter, drain, filled, numbers, payloads, reader_of, settings
from tests.support import REPO


def _quarantined(directory: Path) -> list[Path]:
    folder = directory / QUARANTINE_DIR
    return sorted(folder.iterdir()) if folder.exists() else []


def _segment(directory: Path, number: int) -> Path:
    return directory / segment_name(number)


def _header_identity(directory: Path, number: int) -> str:
    header = parse_header(_segment(directory, number).read_bytes())
    assert header is not None
    return header.identity


def test_torn_tail_is_truncated_and_everything_before_it_kept(tmp_path: Path) -> None:
    last = filled(tmp_path)[-1]
    path = _segment(tmp_path, last)
    data = path.read_bytes()
    # as after a power cut mid-write: no footer, half of a record at the end
    path.write_bytes(data[:-FRAME_SIZE] + data[HEADER_SIZE : HEADER_SIZE + 200])
    metrics = Metrics()
    writer = SpoolWriter(settings(tmp_path), metrics)
    assert counter(metrics, "spool_corrupt_records") == 1
    assert len(_quarantined(tmp_path)) == 1
    reader = reader_of(writer)
    assert drain(reader) == list(range(600))
    writer.append(payloads(600, 1))
    assert drain(reader) == [600]  # new data follows
    writer.close()


def test_flipped_bits_in_a_closed_segment_skip_only_that_record(tmp_path: Path) -> None:
    first = filled(tmp_path)[0]
    path = _segment(tmp_path, first)
    data = bytearray(path.read_bytes())
    record = FRAME_SIZE + len(payloads(0, 1)[0])  # every test record has the same size
    data[HEADER_SIZE + 3 * record + 100] ^= 0x10  # inside the payload of the 4th record
    path.write_bytes(bytes(data))
    metrics = Metrics()
    writer = SpoolWriter(settings(tmp_path), metrics)
    assert counter(metrics, "spool_corrupt_records") == 0  # closed: recovery does not scan it
    seen = drain(reader_of(writer))
    assert seen == [n for n in range(600) if n != 3]
    assert counter(metrics, "spool_corrupt_records") == 1  # the one record, counted by its reader
    assert writer.ledger.pending() == 0
    assert len(_quarantined(tmp_path)) == 1
    writer.close()


def test_flipped_bits_in_the_last_segment_of_a_crashed_writer(tmp_path: Path) -> None:
    last = filled(tmp_path)[-1]
    path = _segment(tmp_path, last)
    data = bytearray(path.read_bytes()[:-FRAME_SIZE])  # crashed: no footer
    data[HEADER_SIZE + 10] ^= 0xFF  # the first record's length field
    path.write_bytes(bytes(data))
    metrics = Metrics()
    writer = SpoolWriter(settings(tmp_path), metrics)
    assert len(_quarantined(tmp_path)) == 1  # recovery found and copied it
    seen = drain(reader_of(writer))
    assert len(seen) == 599 and seen == sorted(seen)
    assert counter(metrics, "spool_corrupt_records") == 1  # counted once, by the reader
    assert len(_quarantined(tmp_path)) == 1
    writer.close()


def test_cut_header_and_empty_segments_are_removed(tmp_path: Path) -> None:
    segments = filled(tmp_path)
    _segment(tmp_path, segments[-1] + 1).write_bytes(b"HRSPO")  # crashed while starting one
    _segment(tmp_path, segments[-1] + 2).write_bytes(b"")
    metrics = Metrics()
    writer = SpoolWriter(settings(tmp_path), metrics)
    assert counter(metrics, "spool_corrupt_records") == 0  # no record was in them
    assert len(_quarantined(tmp_path)) == 1  # the cut header is kept for a look
    assert not _segment(tmp_path, segments[-1] + 1).exists()
    assert not _segment(tmp_path, segments[-1] + 2).exists()
    writer.append(payloads(600, 1))
    seen = drain(reader_of(writer))
    assert seen == list(range(601))
    assert list_segments(tmp_path)[-1] > segments[-1] + 2  # numbers are never reused
    writer.close()


def test_damaged_header_is_rewritten_and_records_kept(tmp_path: Path) -> None:
    first = filled(tmp_path)[0]
    path = _segment(tmp_path, first)
    data = bytearray(path.read_bytes())
    data[2] ^= 0x01  # the magic
    path.write_bytes(bytes(data))
    metrics = Metrics()
    writer = SpoolWriter(settings(tmp_path), metrics)
    assert counter(metrics, "spool_corrupt_records") == 0  # every record is kept
    assert path.read_bytes()[:8] == b"HRSPOOL\x00"
    assert drain(reader_of(writer)) == list(range(600))
    writer.close()


def test_missing_or_damaged_ledger_reads_from_the_oldest_segment(tmp_path: Path) -> None:
    filled(tmp_path)
    writer = SpoolWriter(settings(tmp_path), Metrics())
    reader = reader_of(writer)
    for _ in range(3):
        batch = reader.read(10, 10**6)
        assert batch is not None
        reader.acknowledge(batch)
    reader.close()
    writer.close()
    (tmp_path / LEDGER_FILE).write_bytes(b"\x00garbage")
    writer = SpoolWriter(settings(tmp_path), Metrics())
    assert drain(reader_of(writer), acknowledge=False) == list(range(600))
    writer.close()
    (tmp_path / LEDGER_FILE).unlink()
    writer = SpoolWriter(settings(tmp_path), Metrics())
    assert drain(reader_of(writer), acknowledge=False) == list(range(600))
    writer.close()


def test_an_older_versions_checkpoint_is_taken_over(tmp_path: Path) -> None:
    # The checkpoint file of versions before the ledger: two slots of
    # magic, version, sequence, segment, offset, ordinal, saved at, CRC32C.
    import struct

    import google_crc32c

    segments = filled(tmp_path)
    in_first = len(list(iter_records(_segment(tmp_path, segments[0]).read_bytes(), HEADER_SIZE)))
    (tmp_path / LEDGER_FILE).unlink()
    record = FRAME_SIZE + len(payloads(0, 1)[0])
    body = struct.pack("<8sIQQQQd", b"HRCKPT\x00\x00", 1, 5, segments[1], HEADER_SIZE + 7 * record,
                       7, 0.0)
    slot = body + struct.pack("<I", google_crc32c.value(body))
    (tmp_path / LEGACY_CHECKPOINT_FILE).write_bytes(slot + bytes(len(slot)))
    (tmp_path / "read-position").write_bytes(bytes(16))
    writer = SpoolWriter(settings(tmp_path), Metrics())
    seen = drain(reader_of(writer))
    # The first segment and 7 records of the second were acknowledged before the upgrade.
    assert seen == list(range(in_first + 7, 600))
    assert segments[0] not in list_segments(tmp_path)
    assert not (tmp_path / LEGACY_CHECKPOINT_FILE).exists()
    assert not (tmp_path / "read-position").exists()
    writer.close()


def test_an_identity_file_copied_into_another_spool_does_not_make_its_ids_collide(
    tmp_path: Path,
) -> None:
    # Issue 17's case: `spool/identity` copied into a second receiver's empty spool (a VM
    # image); both then numbered their segments 1, 2, ... under one identity, and Elasticsearch
    # kept one of each colliding pair (2 of 1,000 events vanished).
    first, second = tmp_path / "a", tmp_path / "b"
    filled(first, 100)
    second.mkdir()
    (second / IDENTITY_FILE).write_bytes((first / IDENTITY_FILE).read_bytes())
    writer = SpoolWriter(settings(second), Metrics())
    writer.append(payloads(0, 100))
    ids: set[str] = set()
    reader = reader_of(writer)
    while (batch := reader.read(1000, 10**7)) is not None:
        ids.update(event_id(batch.identity, r.position) for r in batch.records)
        reader.acknowledge(batch)
    writer.close()
    original = SpoolWriter(settings(first), Metrics())
    reader = reader_of(original)
    while (batch := reader.read(1000, 10**7)) is not None:
        assert not ids & {event_id(batch.identity, r.position) for r in batch.records}
        reader.acknowledge(batch)
    original.close()


def test_a_copied_spool_gets_a_new_identity_and_keeps_the_old_ids(tmp_path: Path) -> None:
    original = tmp_path / "a"
    filled(original, 100)
    name = (original / IDENTITY_FILE).read_text().split()[0]
    identity = _header_identity(original, list_segments(original)[0])
    copy = tmp_path / "b"
    copy.mkdir()
    for path in original.iterdir():  # a snapshot of the volume, restored elsewhere
        if path.is_file():
            (copy / path.name).write_bytes(path.read_bytes())
    assert (copy / IDENTITY_FILE).read_text().split()[1] != place_of(copy)
    writer = SpoolWriter(settings(copy), Metrics())
    assert writer.spool_identity != name
    assert writer.identity != identity
    writer.append(payloads(100, 1))
    reader = reader_of(writer)
    ids: dict[int, str] = {}
    while (batch := reader.read(1000, 10**7)) is not None:
        ids.update((n, batch.identity) for n in numbers([r.payload for r in batch.records]))
        reader.acknowledge(batch)
    assert sorted(ids) == list(range(101))
    assert {ids[n] for n in range(100)} == {identity}  # the copied events: the same ids
    assert ids[100] == writer.identity  # new events: new ids
    writer.close()
    again = SpoolWriter(settings(original), Metrics())  # the original keeps its name
    assert again.spool_identity == name
    again.close()


def test_lost_identity_is_taken_back_from_the_segments(tmp_path: Path) -> None:
    # The name is taken from the newest segment's header (ids do not depend on it).
    newest = filled(tmp_path)[-1]
    (tmp_path / IDENTITY_FILE).write_text("!!\n")
    writer = SpoolWriter(settings(tmp_path), Metrics())
    assert writer.spool_identity == _header_identity(tmp_path, newest)
    writer.close()
    (tmp_path / IDENTITY_FILE).unlink()
    newest = list_segments(tmp_path)[-1]
    writer = SpoolWriter(settings(tmp_path), Metrics())
    assert writer.spool_identity == _header_identity(tmp_path, newest)
    writer.close()


def test_random_garbage_segment_never_stops_the_start(tmp_path: Path) -> None:
    segments = filled(tmp_path)
    rng = random.Random(7)
    _segment(tmp_path, segments[-1] + 1).write_bytes(rng.randbytes(50_000))
    (tmp_path / "not-a-segment.txt").write_text("hello")
    writer = SpoolWriter(settings(tmp_path), Metrics())
    writer.append(payloads(600, 1))
    assert drain(reader_of(writer)) == list(range(601))
    writer.close()


_WRITER = textwrap.dedent(
    """
    import sys
    from receiver.event import encode_document
    from receiver.config import SpoolSettings
    from receiver.metrics import Metrics
    from receiver.spool import SpoolWriter
    directory, start = sys.argv[1], int(sys.argv[2])
    writer = SpoolWriter(SpoolSettings(dir=directory, segment_bytes=65536, max_bytes=1 << 30,
                                       max_record_bytes=8192, fsync="never"), Metrics())
    print("ready", flush=True)
    n = start
    while True:
        batch = [encode_document({"n": i, "pad": "y" * 300}) for i in range(n, n + 200)]
        n += writer.append(batch)
        print(n, flush=True)
    """
)


def test_kill_9_while_writing_loses_nothing_accepted_and_leaves_no_gap(tmp_path: Path) -> None:
    rng = random.Random(11)
    expected_next = 0
    for _ in range(8):
        child = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path), str(expected_next)],
            cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        accepted = expected_next
        for _ in range(rng.randint(1, 40)):
            accepted = int(child.stdout.readline())
        child.send_signal(signal.SIGKILL)
        child.wait()
        writer = SpoolWriter(settings(tmp_path, max_bytes=1 << 30), Metrics())  # recovers
        seen = drain(reader_of(writer))
        writer.close()
        # every accepted event is there, in order, once; a batch cut by the kill leaves a
        # contiguous prefix of itself and nothing after
        assert seen[: accepted - expected_next] == list(range(expected_next, accepted))
        assert seen == list(range(expected_next, expected_next + len(seen)))
        expected_next += len(seen)
