"""The index template and the parser agree: every corpus frame, parsed by the real parser,
is accepted by a server with our template installed (no mapping error, no dead letter)."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from receiver.config import ParseSettings
from receiver.parse import Parser
from receiver.ship.elasticsearch import ElasticsearchOutput
from receiver.ship.template import install
from tests.ship.harness import es_settings, running_shipper
from tests.ship.memory_spool import MemorySpool
from tests.support import CORPUS, wait_for


def corpus_documents() -> list[dict[str, Any]]:
    parser = Parser(ParseSettings())
    documents = []
    for path in sorted(CORPUS.glob("*.udp.jsonl")):
        for line in path.read_text().splitlines():
            frame = base64.b64decode(json.loads(line)["frame_b64"])
            documents.append(parser.parse(frame.rstrip(b"\n"), time.time()))
    return documents


def test_every_corpus_document_fits_the_template(es_url: str, tmp_path: Path) -> None:
    documents = corpus_documents()
    assert len(documents) > 500
    settings = es_settings([es_url], batch_events=500)
    output = ElasticsearchOutput(settings)
    install(output, settings)
    output.close()
    spool = MemorySpool(documents, batch_records=500)
    with running_shipper(settings, spool, tmp_path) as run:
        wait_for(lambda: spool.acknowledged_records() == len(documents), what="acknowledged")
        assert run.dead_letters() == []
        assert run.value("events_shipped_total") == len(documents)
    request = urllib.request.Request(es_url + "/haproxy-*/_refresh", method="POST")
    urllib.request.urlopen(request, timeout=10).read()
    with urllib.request.urlopen(es_url + "/haproxy-*/_count", timeout=10) as response:
        assert json.loads(response.read())["count"] == len(documents)
