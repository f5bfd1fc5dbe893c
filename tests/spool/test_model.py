"""Model-based test: random sequences of appends, reads, out-of-order acknowledgements and
restarts, checked against a plain list. Whatever the order, the reader hands out every appended
event once per life, in order; a restart resumes exactly after the contiguous acknowledged
prefix; `spool_stats` counts exactly what is pending; acknowledged segments disappear."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.metrics import Metrics
from receiver.spool import Batch, SpoolReader, SpoolWriter, spool_stats
from receiver.spool.format import list_segments
from tests.spool.helpers import numbers, payloads
from tests.spool.helpers import settings as spool_settings

operation = st.one_of(
    st.tuples(st.just("append"), st.integers(1, 120), st.integers(0, 900)),
    st.tuples(st.just("read"), st.integers(1, 80), st.integers(1, 20_000)),
    st.tuples(st.just("ack"), st.integers(0, 10), st.just(0)),
    st.tuples(st.just("restart"), st.just(0), st.just(0)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, min_size=1, max_size=40))
def test_spool_behaves_like_a_list(operations: list[tuple[str, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        config = spool_settings(directory, max_bytes=64 * 1024**2)
        writer = SpoolWriter(config, Metrics())
        reader = SpoolReader(directory)
        appended = 0  # events 0..appended-1 are in the spool
        committed = 0  # events before this one are acknowledged (contiguous prefix)
        next_read = 0
        outstanding: list[Batch] = []
        acknowledged: set[int] = set()
        first_of: dict[int, int] = {}  # batch seq -> its first event number
        for kind, a, b in operations:
            if kind == "append":
                assert writer.append(payloads(appended, a, pad=b)) == a
                appended += a
            elif kind == "read":
                batch = reader.read(a, b)
                if next_read == appended:
                    assert batch is None
                    continue
                assert batch is not None
                got = numbers([r.payload for r in batch.records])
                assert got == list(range(next_read, next_read + len(got)))
                assert 1 <= len(got) <= a
                first_of[batch.seq] = next_read
                next_read += len(got)
                outstanding.append(batch)
            elif kind == "ack" and outstanding:
                batch = outstanding.pop(a % len(outstanding))
                reader.acknowledge(batch)
                acknowledged.add(batch.seq)
                # the model: commit moves over batches acknowledged in a row from the oldest
                done = sorted(first_of)
                committed = 0 if not done else first_of[done[0]]
                for seq in done:
                    if seq not in acknowledged:
                        break
                    committed = first_of[seq] + _size(seq, first_of, next_read)
            elif kind == "restart":
                reader.close()
                writer.close()
                writer = SpoolWriter(config, Metrics())
                reader = SpoolReader(directory)
                next_read = committed
                outstanding.clear()
                acknowledged.clear()
                first_of.clear()
            assert spool_stats(directory).events_pending == appended - committed
        while (batch := reader.read(1000, 1 << 20)) is not None:
            got = numbers([r.payload for r in batch.records])
            assert got == list(range(next_read, next_read + len(got)))
            next_read += len(got)
            outstanding.append(batch)
        assert next_read == appended
        for batch in reversed(outstanding):
            reader.acknowledge(batch)
        assert spool_stats(directory).events_pending == 0
        assert len(list_segments(directory)) <= 2  # the newest, maybe one left to roll past
        reader.close()
        writer.close()


def _size(seq: int, first_of: dict[int, int], next_read: int) -> int:
    later = [first for other, first in first_of.items() if other > seq]
    return (min(later) if later else next_read) - first_of[seq]
