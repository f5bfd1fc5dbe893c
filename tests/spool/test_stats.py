"""`spool stats`, `spool dump` and the scrape-time gauges, read while a writer and reader run."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from receiver.config import ParseSettings
from receiver.event import FrameEncoder, encode_document
from receiver.metrics import Metrics
from receiver.parse import Parser
from receiver.spool import (
    SpoolWriter,
    collector,
    dump_pending,
    event_id,
    spool_stats,
)
from receiver.spool.clock import SpoolClock
from receiver.spool.format import FRAME_SIZE, list_segments, segment_name
from tests.spool.helpers import payloads, reader_of, settings


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
    assert stats.identity == writer.spool_identity
    reader = reader_of(writer)
    acknowledged = 0
    for _ in range(3):  # batches stop at segment ends, so count what they held
        batch = reader.read(100, 10**6)
        assert batch is not None
        reader.acknowledge(batch)
        acknowledged += len(batch.records)
    assert spool_stats(tmp_path).events_pending == 500 - acknowledged
    assert batch is not None and spool_stats(tmp_path).acknowledged == {batch.segment: batch.end}
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
    writer.append([encode_document({"n": 20, "raw": "\ufffdbytes", "7": "int key"})])
    reader = reader_of(writer)
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


def test_dump_shows_received_messages_as_received_or_as_documents(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path), Metrics())
    line = b'<134>Nov 25 18:21:08 haproxy[1]: {"ci":"10.0.0.1","ST":404}'
    writer.append(FrameEncoder("udp://127.0.0.1:5140").encode([line], 1795631000.5,
                                                             ("192.0.2.7", 40000)))
    text = io.StringIO()
    assert dump_pending(tmp_path, text) == 1
    assert json.loads(text.getvalue()) == {
        "received_at": 1795631000.5, "listener": "udp://127.0.0.1:5140", "source": "192.0.2.7",
        "port": 40000, "cut": False, "frame": line.decode()}
    text = io.StringIO()
    parser = Parser(ParseSettings())
    assert dump_pending(tmp_path, text, parse=lambda r: parser.parse(r.frame, r.received_at)) == 1
    document = json.loads(text.getvalue())
    assert document["http.response.status_code"] == 404 and document["source.ip"] == "10.0.0.1"
    writer.close()


def test_collector_exposes_bytes_pending_and_lag(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path), Metrics())
    registry = CollectorRegistry()
    registry.register(collector(tmp_path, writer.ledger))
    writer.append(payloads(0, 120))
    value = registry.get_sample_value
    assert value("haproxy_receiver_spool_events_pending") == 120
    assert value("haproxy_receiver_spool_bytes") == spool_stats(tmp_path).bytes
    assert (value("haproxy_receiver_spool_oldest_pending_seconds") or 0) >= 0
    writer.append(payloads(120, 30))  # counted incrementally in the growing segment
    assert value("haproxy_receiver_spool_events_pending") == 150
    writer.close()


def test_the_oldest_age_is_read_by_the_spools_clock_after_the_wall_clock_stepped_back(
    tmp_path: Path,
) -> None:
    # The receiver ran an hour ahead (then NTP stepped the wall clock back): its records are
    # stamped in the wall clock's future. By the wall clock the backlog looked 0 s old.
    ahead = [time.time() + 3600]
    writer = SpoolWriter(settings(tmp_path), Metrics(),
                         clock=SpoolClock(wall=lambda: ahead[0], monotonic=lambda: 0.0))
    for start in range(0, 500, 50):
        writer.append(payloads(start, 50))
        ahead[0] += 30  # the segments below are created minutes apart
    assert len(list_segments(tmp_path)) > 2
    age = spool_stats(tmp_path).oldest_pending_age_seconds
    assert age is not None and age >= 60  # at least the newest segment's creation - the oldest
    writer.close()
