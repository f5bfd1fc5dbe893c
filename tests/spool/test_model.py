"""Model-based test: random sequences of appends, reads, out-of-order acknowledgements and
restarts, checked against plain sets. Whatever the order, the reader hands out every appended
event once per life, in order; a restart resumes exactly after each segment's contiguous
acknowledged prefix; the ledger and `spool_stats` count exactly what is pending; acknowledged
segments disappear."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.metrics import Metrics
from receiver.spool import Batch, SpoolWriter, spool_stats
from receiver.spool.format import list_segments
from tests.spool.helpers import numbers, payloads, reader_of
from tests.spool.helpers import settings as spool_settings

operation = st.one_of(
    st.tuples(st.just("append"), st.integers(1, 120), st.integers(0, 900)),
    st.tuples(st.just("read"), st.integers(1, 80), st.integers(1, 20_000)),
    st.tuples(st.just("ack"), st.integers(0, 10), st.just(0)),
    st.tuples(st.just("restart"), st.just(0), st.just(0)),
)


@dataclass
class _Read:
    batch: Batch
    events: list[int]
    acked: bool = False


def _committed(reads: list[_Read], committed: set[int]) -> set[int]:
    """Per segment, the batches of this life acknowledged in a row from its first one."""
    by_segment: dict[int, list[_Read]] = {}
    for read in reads:
        by_segment.setdefault(read.batch.segment, []).append(read)
    done = set(committed)
    for segment_reads in by_segment.values():
        for read in sorted(segment_reads, key=lambda r: r.batch.start):
            if not read.acked:
                break
            done.update(read.events)
    return done


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, min_size=1, max_size=40))
def test_spool_behaves_like_a_set(operations: list[tuple[str, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        config = spool_settings(directory, max_bytes=64 * 1024**2)
        writer = SpoolWriter(config, Metrics())
        reader = reader_of(writer)
        appended = 0  # events 0..appended-1 are in the spool
        committed: set[int] = set()  # acknowledged for good (survives restarts)
        life: list[_Read] = []  # batches read since the last restart
        handed: list[int] = []  # events handed out in this life, in order
        unread_at_start: list[int] = []  # what this life had to read at its start
        for kind, a, b in operations:
            if kind == "append":
                assert writer.append(payloads(appended, a, pad=b)) == a
                appended += a
            elif kind == "read":
                batch = reader.read(a, b)
                expected = [n for n in unread_at_start if n not in handed] + [
                    n for n in range(max([*unread_at_start, -1]) + 1, appended)
                    if n not in handed and n not in committed]
                if not expected:
                    assert batch is None
                    continue
                assert batch is not None
                got = numbers([r.payload for r in batch.records])
                assert 1 <= len(got) <= a
                assert got == expected[: len(got)]  # in order, nothing skipped or repeated
                handed += got
                life.append(_Read(batch, got))
            elif kind == "ack" and life:
                waiting = [read for read in life if not read.acked]
                if waiting:
                    read = waiting[a % len(waiting)]
                    reader.acknowledge(read.batch, len(read.events))
                    read.acked = True
                    committed = _committed(life, committed)
            elif kind == "restart":
                reader.close()
                writer.close()
                writer = SpoolWriter(config, Metrics())
                reader = reader_of(writer)
                life.clear()
                handed.clear()
                unread_at_start = [n for n in range(appended) if n not in committed]
            assert spool_stats(directory).events_pending == appended - len(committed)
            assert writer.ledger.pending() == appended - len(committed)
        rest: list[_Read] = []
        while (batch := reader.read(1000, 1 << 20)) is not None:
            got = numbers([r.payload for r in batch.records])
            handed += got
            rest.append(_Read(batch, got))
        assert len(handed) == len(set(handed))  # once per life
        assert set(handed) | committed == set(range(appended))  # nothing left behind
        for read in reversed(life + rest):
            if not read.acked:
                reader.acknowledge(read.batch, len(read.events))
        assert writer.ledger.pending() == 0
        assert spool_stats(directory).events_pending == 0
        assert len(list_segments(directory)) <= 1  # only the one being written
        reader.close()
        writer.close()
