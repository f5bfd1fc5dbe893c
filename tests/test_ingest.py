"""Ingest: parse -> encode -> spool append, read back from a real spool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from receiver.config import ParseSettings, SpoolSettings
from receiver.event import decode_event
from receiver.ingest import Ingest
from receiver.metrics import Metrics
from receiver.parse import TAG_FAILURE, Parser
from receiver.spool import SpoolReader, SpoolWriter

LINE = b'<134>Nov 25 18:00:00 lb1 haproxy[7]: {"ci":"10.0.0.1","ST":200,"B":9}'


class _HugeNumberParser(Parser):
    """A parser whose document JSON cannot carry (an integer beyond 64 bits)."""

    def parse(self, message: bytes, received_at: float) -> dict[str, Any]:
        document = super().parse(message, received_at)
        document["haproxy.bytes"] = 2**70
        return document


def _spooled(directory: Path) -> list[dict[str, Any]]:
    batch = SpoolReader(directory).read(100, 10**6)
    assert batch is not None
    return [decode_event(record.payload).document() for record in batch.records]


def test_documents_are_spooled_with_their_sender(tmp_path: Path) -> None:
    writer = SpoolWriter(SpoolSettings(dir=str(tmp_path)), Metrics())
    ingest = Ingest(Parser(ParseSettings()), writer, Metrics(), block=False)
    assert ingest.accept([LINE, LINE], ["192.0.2.1", "192.0.2.2"], "udp://x", "udp") == 2
    writer.close()
    documents = _spooled(tmp_path)
    assert [d["log.source.address"] for d in documents] == ["192.0.2.1", "192.0.2.2"]
    assert documents[0]["http.response.status_code"] == 200
    assert "event.original" not in documents[0]  # parse.keep_original is off by default


def test_an_unencodable_document_keeps_the_received_line(tmp_path: Path) -> None:
    metrics = Metrics()
    writer = SpoolWriter(SpoolSettings(dir=str(tmp_path)), metrics)
    ingest = Ingest(_HugeNumberParser(ParseSettings()), writer, metrics, block=False)
    assert ingest.accept([LINE], "192.0.2.1", "udp://x", "udp") == 1
    writer.close()
    [document] = _spooled(tmp_path)
    assert document["message"] == LINE.decode() and document["tags"] == [TAG_FAILURE]
    assert "could not be encoded as JSON" in document["error.message"]
    assert metrics.parse_failures.labels("unencodable")._value.get() == 1
