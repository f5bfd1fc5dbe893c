"""Event ids are never reused, whatever file of the spool is lost, damaged, copied or restored
(issue 27, item 1): a deleted, zeroed or older ledger used to restart the segment numbers under
the same identity, so new events got ids already in the index (409: counted shipped, lost)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from receiver.metrics import Metrics
from receiver.spool import SpoolReader, SpoolWriter, event_id
from receiver.spool.format import HEADER_SIZE, list_segments, parse_header, segment_name
from receiver.spool.ledger import LEDGER_FILE
from tests.spool.helpers import counter, numbers, payloads, reader_of, settings


def _ship(reader: SpoolReader, ids: dict[str, int]) -> None:
    """Read and acknowledge everything readable; the event number of each id into `ids`."""
    while (batch := reader.read(1000, 10**7)) is not None:
        for record, n in zip(batch.records, numbers([r.payload for r in batch.records]),
                             strict=True):
            ids[event_id(batch.identity, record.position)] = n
        reader.acknowledge(batch)


def _run(directory: Path, first: int, count: int) -> dict[str, int]:
    """One start of the spool: `count` events appended, all shipped, stopped; as in the
    service, the reader finishes the segment sealed at the stop, so no segment is left."""
    writer = SpoolWriter(settings(directory), Metrics())
    for start in range(first, first + count, 50):
        writer.append(payloads(start, 50))
    ids: dict[str, int] = {}
    reader = reader_of(writer)
    _ship(reader, ids)
    writer.close()
    _ship(reader, ids)  # reads the footer: the last segment is acknowledged to its end
    reader.close()
    writer.ledger.close()
    assert list_segments(directory) == []  # the highest number is known to the ledger only
    return ids


def _delete(ledger: Path) -> None:
    ledger.unlink()


def _zero(length: int) -> Callable[[Path], None]:
    def damage(ledger: Path) -> None:
        ledger.write_bytes(bytes(length))
    return damage


def _reused(earlier: dict[str, int], later: dict[str, int]) -> int:
    """Ids given to two different events (a replay of the same event under its id is fine)."""
    return sum(1 for id_, n in later.items() if id_ in earlier and earlier[id_] != n)


@pytest.mark.parametrize("damage", [_delete, _zero(0), _zero(100), _zero(6000), _zero(20000)],
                         ids=["deleted", "empty", "zeroed-100", "zeroed-6000", "zeroed-20000"])
def test_a_lost_ledger_never_gives_new_events_the_ids_of_old_ones(
    tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    before = _run(tmp_path, 0, 600)
    assert sorted(before.values()) == list(range(600))
    damage(tmp_path / LEDGER_FILE)
    after = _run(tmp_path, 600, 600)
    assert set(after.values()) >= set(range(600, 1200))
    assert _reused(before, after) == 0  # was 275 (each case): new events under old ids


def test_a_ledger_restored_from_a_backup_never_gives_new_events_old_ids(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    ids = _run(spool, 0, 300)
    shutil.copy(spool / LEDGER_FILE, tmp_path / "ledger.backup")
    more = _run(spool, 300, 300)
    assert _reused(ids, more) == 0
    ids.update(more)
    shutil.copy(tmp_path / "ledger.backup", spool / LEDGER_FILE)  # an older highest segment
    later = _run(spool, 600, 300)
    assert set(ids.values()) == set(range(600))
    assert set(later.values()) >= set(range(600, 900))
    assert _reused(ids, later) == 0


def test_every_start_writes_its_segments_under_an_identity_of_its_own(tmp_path: Path) -> None:
    seen = set()
    for _ in range(5):
        writer = SpoolWriter(settings(tmp_path), Metrics())
        header = parse_header((tmp_path / segment_name(max(list_segments(tmp_path))))
                              .read_bytes()[:HEADER_SIZE])
        assert header is not None and header.identity == writer.identity
        seen.add(writer.identity)
        assert writer.spool_identity != writer.identity
        writer.close()
    assert len(seen) == 5


def test_events_of_a_segment_with_a_damaged_header_get_new_ids_and_are_counted(
    tmp_path: Path,
) -> None:
    # Its old identity is unknown: the spool cannot prove which ids its events had, so they are
    # sent under new ones (a duplicate at worst, never a loss), logged and counted.
    writer = SpoolWriter(settings(tmp_path), Metrics())
    for start in range(0, 600, 50):
        writer.append(payloads(start, 50))
    old_identity = writer.identity
    reader = reader_of(writer)
    first = reader.read(100, 10**7)  # the first 100 events of the first segment acknowledged
    assert first is not None and len(first.records) == 100
    reader.acknowledge(first)
    reader.close()
    writer.close()
    segments = list_segments(tmp_path)
    records = {n: sum(1 for _ in _records(tmp_path, n)) for n in segments}
    path = tmp_path / segment_name(segments[0])
    data = bytearray(path.read_bytes())
    data[12] ^= 0xFF  # inside the identity: the header's checksum fails
    path.write_bytes(bytes(data))
    metrics = Metrics()
    writer = SpoolWriter(settings(tmp_path), metrics)
    assert counter(metrics, "events_recovered") == 500
    assert counter(metrics, "spool_events_reidentified") == records[segments[0]] - 100
    identities = {}
    reader = reader_of(writer)
    while (batch := reader.read(1000, 10**7)) is not None:
        identities[batch.segment] = batch.identity
        reader.acknowledge(batch, shipped=len(batch.records))
    assert identities[segments[0]] == writer.identity != old_identity
    assert {identities[n] for n in segments[1:]} == {old_identity}
    assert counter(metrics, "events_shipped") == 500  # the identity holds: 500 found, 500 shipped
    writer.close()


def _records(directory: Path, number: int) -> list[int]:
    from receiver.spool.format import iter_records

    return [frame.offset for frame in iter_records((directory / segment_name(number)).read_bytes(),
                                                   HEADER_SIZE)]
