"""ImportSource and the import's document hook, without a server: the batches the shipper reads
and the documents the encoder makes of them."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry

from receiver.config import Settings
from receiver.event import Received, decode
from receiver.files import fingerprint
from receiver.importer.run import ImportHook, import_parse_settings
from receiver.importer.source import FileTally, ImportSource, Unit
from receiver.metrics import ParseMetrics
from receiver.parse import Parser
from receiver.ship.encode import BulkEncoder
from receiver.ship.nesting import nest
from receiver.spool.records import Batch
from tests.importer.logs import mixed_lines
from tests.support import flatten


def batches(units: list[Unit], tallies: dict[int, FileTally], stdin: bytes = b"") -> list[Batch]:
    queue = iter(units)
    source = ImportSource(lambda: next(queue, None), tallies, stdin=io.BytesIO(stdin))
    found = []
    while (batch := source.read(50, 1 << 20)) is not None:
        found.append(batch)
    return found


def test_the_same_lines_get_the_same_ids_plain_gzip_or_stdin(tmp_path: Path) -> None:
    lines = mixed_lines()
    text = b"".join(line + b"\n" for line in lines)
    (tmp_path / "a.log").write_bytes(text)
    (tmp_path / "b.log.2.gz").write_bytes(gzip.compress(text))
    tallies = {n: FileTally(name) for n, name in enumerate(
        [str(tmp_path / "a.log"), str(tmp_path / "b.log.2.gz"), "-"])}
    found = batches([Unit(n, tally.path) for n, tally in tallies.items()], tallies, text)
    ids: dict[int, list[tuple[str, int, int]]] = {0: [], 1: [], 2: []}
    for batch in found:
        assert batch.identity == fingerprint(lines[0])
        ids[batch.segment] += [(batch.identity, *record.position) for record in batch.records]
    assert ids[0] == ids[1] == ids[2] and len(ids[0]) == len(lines)
    assert [tally.lines for tally in tallies.values()] == [len(lines)] * 3
    record = decode(found[0].records[0].payload)
    assert isinstance(record, Received)
    assert record.listener == f"file://{tmp_path / 'a.log'}" and record.frame == lines[0]
    assert record.received_at == (tmp_path / "a.log").stat().st_mtime


def test_encoded_documents_are_what_document_makes(tmp_path: Path) -> None:
    lines = mixed_lines()
    (tmp_path / "a.log").write_bytes(b"".join(line + b"\n" for line in lines))
    tallies = {0: FileTally(str(tmp_path / "a.log"))}
    found = batches([Unit(0, str(tmp_path / "a.log"))], tallies)
    settings = Settings()
    hook = ImportHook({})
    encoder = BulkEncoder(settings.elasticsearch, Parser(import_parse_settings(settings)),
                          ParseMetrics(CollectorRegistry()), True, hook)
    for batch in found:
        encoded = encoder.encode(batch.records, batch.identity)
        for item, record in enumerate(batch.records):
            received = decode(record.payload)
            assert isinstance(received, Received)
            document = orjson.loads(encoded.document(item))
            assert document == orjson.loads(orjson.dumps(nest(encoder.document(received))))
            document = flatten(document)
            assert document["log.file.path"] == str(tmp_path / "a.log")
            assert document["tags"][-1] == "import"
