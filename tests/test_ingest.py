"""Ingest: received messages appended to a real spool as they arrived, read back."""

from __future__ import annotations

import threading
from pathlib import Path

from receiver.config import ByteSize, SpoolSettings
from receiver.event import Peer, Received, decode
from receiver.ingest import Ingest
from receiver.metrics import Metrics
from receiver.spool import SpoolWriter
from tests.spool.helpers import reader_of
from tests.support import wait_for

LINE = b'<134>Nov 25 18:00:00 lb1 haproxy[7]: {"ci":"10.0.0.1","ST":200,"B":9}'


def _spooled(writer: SpoolWriter) -> list[Received]:
    batch = reader_of(writer).read(100, 10**6)
    assert batch is not None
    records = [decode(record.payload) for record in batch.records]
    assert all(isinstance(r, Received) for r in records)
    return records  # type: ignore[return-value]


def test_messages_are_spooled_as_received_with_their_sender(tmp_path: Path) -> None:
    metrics = Metrics()
    writer = SpoolWriter(SpoolSettings(dir=str(tmp_path)), metrics)
    ingest = Ingest(writer, metrics, block=False)
    peers: list[Peer] = [("192.0.2.1", 40001), ("192.0.2.2", 40002)]
    assert ingest.accept([LINE, LINE + b"x"], peers, "udp://127.0.0.1:5140", "udp") == 2
    assert ingest.accept([b"<134>cut"], ("192.0.2.3", 50000), "tcp://127.0.0.1:5140", "tcp",
                         frozenset({0})) == 1
    first, second, third = _spooled(writer)
    assert (first.source, first.port, first.frame) == ("192.0.2.1", 40001, LINE)
    assert (second.source, second.port, second.frame) == ("192.0.2.2", 40002, LINE + b"x")
    assert first.listener == "udp://127.0.0.1:5140" and first.transport == "udp"
    assert first.received_at > 0 and not first.cut
    assert third.transport == "tcp" and third.cut and third.port == 50000
    value = metrics.registry.get_sample_value
    assert value("haproxy_receiver_messages_received_total",
                 {"listener": "udp://127.0.0.1:5140", "transport": "udp"}) == 2
    assert value("haproxy_receiver_received_bytes_total",
                 {"listener": "udp://127.0.0.1:5140", "transport": "udp"}) == 2 * len(LINE) + 1
    assert value("haproxy_receiver_events_spooled_total") == 3
    writer.close()


def test_received_is_counted_before_a_blocked_append(tmp_path: Path) -> None:
    # Under `block`, the listener waits for room inside `accept`: what it holds is already
    # counted received, so received >= spooled at every scrape (never the other way round).
    metrics = Metrics()
    settings = SpoolSettings(dir=str(tmp_path), segment_bytes=ByteSize(256 * 1024),
                             max_bytes=ByteSize(512 * 1024), fsync="never")
    writer = SpoolWriter(settings, metrics)
    ingest = Ingest(writer, metrics, block=True)
    big = [b"<134>" + b"x" * 1000] * 100
    while writer.append(big[:10]) == 10:  # full, by another way in
        pass
    filled = metrics.registry.get_sample_value("haproxy_receiver_events_spooled_total") or 0
    blocked = threading.Thread(target=ingest.accept, args=(big, ("192.0.2.1", 1), "tcp://x", "tcp"))
    blocked.start()
    value = metrics.registry.get_sample_value
    labels = {"listener": "tcp://x", "transport": "tcp"}
    wait_for(lambda: value("haproxy_receiver_messages_received_total", labels) == 100, 10,
             "the blocked batch counted received")
    assert blocked.is_alive()  # counted while the batch waits
    assert (value("haproxy_receiver_events_spooled_total") or 0) - filled < 100
    reader = reader_of(writer)
    while blocked.is_alive():  # shipping makes room; the blocked batch goes in whole
        batch = reader.read(1000, 10**7)
        if batch is not None:
            reader.acknowledge(batch, len(batch.records))
        blocked.join(0.01)
    assert value("haproxy_receiver_events_spooled_total") == filled + 100
    assert value("haproxy_receiver_events_dropped_total", {"reason": "spool_full"}) is None
    writer.close()
