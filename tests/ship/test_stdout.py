"""The embedded default output: documents as JSON lines on a binary stream."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

from receiver.config import ElasticsearchSettings
from receiver.metrics import Metrics
from receiver.ship.output import make_output
from receiver.ship.stdout import StdoutOutput
from tests.ship.harness import FAST, running_shipper
from tests.ship.memory_spool import MemorySpool, document
from tests.support import wait_for


def test_documents_become_json_lines(tmp_path: Path) -> None:
    stream = io.BytesIO()
    settings = dataclasses.replace(ElasticsearchSettings(), **FAST)  # type: ignore[arg-type]
    output = make_output(settings, Metrics(), stream)
    assert isinstance(output, StdoutOutput)
    spool = MemorySpool([document(i) for i in range(120)])
    with running_shipper(settings, spool, tmp_path, output=output) as run:
        wait_for(lambda: spool.acknowledged_records() == 120, what="acknowledged")
        assert run.value("events_shipped_total") == 120
    rows = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert sorted(row["seq"] for row in rows) == list(range(120))
    assert rows[0] == document(rows[0]["seq"])


def test_a_closed_stream_keeps_events_spooled(tmp_path: Path) -> None:
    stream = io.BytesIO()
    stream.close()
    settings = dataclasses.replace(ElasticsearchSettings(), **FAST)  # type: ignore[arg-type]
    spool = MemorySpool([document(1)])
    with running_shipper(settings, spool, tmp_path, output=StdoutOutput(stream),
                         drain_seconds=0.1) as run:
        wait_for(lambda: run.value("bulk_requests_total", outcome="connection_error") >= 2,
                 what="failed writes")
    assert spool.acknowledged_records() == 0
