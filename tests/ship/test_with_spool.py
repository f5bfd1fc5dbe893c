"""The shipper with the real on-disk spool and a real OpenSearch-compatible server."""

from __future__ import annotations

import dataclasses
import json
import urllib.request
from pathlib import Path

from receiver.config import SpoolSettings
from receiver.event import encode_event
from receiver.metrics import Metrics
from receiver.spool import Position, SpoolReader, SpoolWriter
from tests.ship.harness import es_settings, running_shipper
from tests.ship.memory_spool import document
from tests.support import wait_for


def count(url: str) -> int:
    for method, path in (("POST", "/haproxy-*/_refresh"), ("GET", "/haproxy-*/_count")):
        request = urllib.request.Request(url + path, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read())
    return int(body["count"])


def test_ships_a_full_spool_and_moves_the_checkpoint(es_url: str, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    settings = dataclasses.replace(SpoolSettings(), dir=str(spool_dir), fsync="never")
    writer = SpoolWriter(settings, Metrics())
    assert writer.append([encode_event(document(i)) for i in range(1000)]) == 1000
    reader = SpoolReader(spool_dir)
    try:
        with running_shipper(es_settings([es_url], batch_events=300), reader,
                             tmp_path) as run:
            wait_for(lambda: run.value("events_shipped_total") == 1000, what="1000 shipped")
            end = reader_end(spool_dir)
            wait_for(lambda: reader.checkpoint >= end, what="checkpoint at the end")
    finally:
        reader.close()
    assert count(es_url) == 1000
    again = SpoolReader(spool_dir)
    try:
        assert again.read(10, 1 << 20) is None  # nothing left to ship after a restart
    finally:
        again.close()
        writer.close()


def reader_end(spool_dir: Path) -> Position:
    probe = SpoolReader(spool_dir)
    try:
        last = Position(0, 0)
        while (batch := probe.read(5000, 1 << 30)) is not None:
            last = batch.end
        return last
    finally:
        probe.close()
