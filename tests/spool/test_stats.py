"""`spool stats`, `spool dump` and the scrape-time gauges, read while a writer and reader run."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from receiver.event import encode_event
from receiver.metrics import Metrics
from receiver.spool import (
    SpoolReader,
    SpoolWriter,
    collector,
    dump_pending,
    event_id,
    spool_stats,
)
from receiver.spool.format import FRAME_SIZE, list_segments, segment_name
from tests.spool.helpers import payloads, settings


def test_stats_of_a_live_spool(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path), Metrics())
    empty = spool_stats(tmp_path)
    assert empty.events_pending == 0 and empty.oldest_pending_age_seconds is None
    for start in range(0, 500, 50):
        writer.append(payloads(start, 50))
    time.sleep(0.01)  # a measurable age, not synchronisation
    stats = spool_stats(tmp_path)
    assert stats.segments == len(list_segments(tmp_path)) > 1
    files = [tmp_path / segment_name(n) for n in list_segments(tmp_path)]
    assert stats.bytes == sum(f.stat().st_size for f in files)
    assert stats.events_pending == 500
    assert stats.oldest_pending_age_seconds is not None and stats.oldest_pending_age_seconds > 0
    assert stats.identity == writer.identity
    reader = SpoolReader(tmp_path)
    acknowledged = 0
    for _ in range(3):  # batches stop at segment ends, so count what they held
        batch = reader.read(100, 10**6)
        assert batch is not None
        reader.acknowledge(batch)
        acknowledged += len(batch.records)
    assert spool_stats(tmp_path).events_pending == 500 - acknowledged
    assert spool_stats(tmp_path).checkpoint == reader.checkpoint
    writer.close()


def test_pending_count_works_without_footers(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path), Metrics())
    for start in range(0, 300, 50):
        writer.append(payloads(start, 50))
    writer.close()
    for number in list_segments(tmp_path):  # as if every writer had crashed: no footer
        path = tmp_path / segment_name(number)
        path.write_bytes(path.read_bytes()[:-FRAME_SIZE])
    assert spool_stats(tmp_path).events_pending == 300


def test_dump_writes_pending_events_as_json_lines(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path), Metrics())
    writer.append(payloads(0, 20))
    writer.append([encode_event({"n": 20, "raw": "\ufffdbytes", "7": "int key"})])
    reader = SpoolReader(tmp_path)
    first = reader.read(5, 10**6)
    assert first is not None
    reader.acknowledge(first)
    text = io.StringIO()
    assert dump_pending(tmp_path, text) == 16
    lines = [json.loads(line) for line in text.getvalue().splitlines()]
    assert [d["n"] for d in lines] == list(range(5, 21))
    assert lines[-1]["raw"] == "\ufffdbytes" and lines[-1]["7"] == "int key"
    binary = io.BytesIO()
    assert dump_pending(tmp_path, binary, with_position=True) == 16
    positioned = json.loads(binary.getvalue().splitlines()[0])
    second = reader.read(1, 10**6)
    assert second is not None
    assert positioned["_spool"]["id"] == event_id(writer.identity, second.records[0].position)
    writer.close()


def test_collector_exposes_bytes_pending_and_lag(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path), Metrics())
    registry = CollectorRegistry()
    registry.register(collector(tmp_path))
    writer.append(payloads(0, 120))
    value = registry.get_sample_value
    assert value("haproxy_receiver_spool_events_pending") == 120
    assert value("haproxy_receiver_spool_bytes") == spool_stats(tmp_path).bytes
    assert (value("haproxy_receiver_spool_oldest_pending_seconds") or 0) >= 0
    writer.append(payloads(120, 30))  # counted incrementally in the growing segment
    assert value("haproxy_receiver_spool_events_pending") == 150
    writer.close()
