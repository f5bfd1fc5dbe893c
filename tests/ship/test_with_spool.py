"""The shipper with the real on-disk spool and a real OpenSearch-compatible server."""

from __future__ import annotations

import dataclasses
import json
import urllib.request
from pathlib import Path

from receiver.config import SpoolSettings
from receiver.event import FrameEncoder, encode_document
from receiver.metrics import Metrics
from receiver.spool import SpoolWriter
from tests.ship.harness import es_settings, running_shipper
from tests.ship.memory_spool import document
from tests.spool.helpers import reader_of
from tests.support import wait_for


def count(url: str) -> int:
    for method, path in (("POST", "/haproxy-*/_refresh"), ("GET", "/haproxy-*/_count")):
        request = urllib.request.Request(url + path, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read())
    return int(body["count"])


def test_ships_a_full_spool_and_the_ledger_counts_it_once(es_url: str, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    settings = dataclasses.replace(SpoolSettings(), dir=str(spool_dir), fsync="never")
    metrics = Metrics()
    writer = SpoolWriter(settings, metrics)
    # an upgrade: documents an earlier version spooled, then messages as received
    assert writer.append([encode_document(document(i)) for i in range(500)]) == 500
    line = ('<134>Nov 25 18:21:08 haproxy[1]: {{"ci":"10.0.0.1","ST":200,"seq":{n},'
            '"t":"25/Nov/2026:18:21:08.761"}}')
    frames = [line.format(n=n).encode() for n in range(500, 1000)]
    assert writer.append(FrameEncoder("udp://x").encode(frames, 1795631000.0, ("10.9.9.9", 9))) == 500
    reader = reader_of(writer)
    try:
        with running_shipper(es_settings([es_url], batch_events=300), reader, tmp_path):
            wait_for(lambda: writer.ledger.pending() == 0, what="everything acknowledged")
    finally:
        reader.close()
    assert metrics.events_shipped._value.get() == 1000  # counted by the ledger, once each
    assert count(es_url) == 1000
    writer.close()
    writer = SpoolWriter(settings, Metrics())  # a restart: nothing left to ship
    assert writer.ledger.pending() == 0
    assert reader_of(writer).read(10, 1 << 20) is None
    writer.close()
