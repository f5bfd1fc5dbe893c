"""Bulk body encoding: received messages parsed into documents, documents of earlier versions
copied, action lines, deterministic ids, index names, gzip, odd records."""

from __future__ import annotations

import dataclasses
import gzip
import json
import random
import time
from typing import Any

import msgpack
import pytest
from prometheus_client import CollectorRegistry

from receiver.config import ElasticsearchSettings, ParseSettings
from receiver.event import FrameEncoder, encode_document
from receiver.metrics import ParseMetrics
from receiver.parse import TAG_FAILURE, TAG_TRUNCATED, Parser
from receiver.ship import nesting
from receiver.ship.encode import (
    BulkEncoder,
    EncodedBatch,
    IndexNamer,
    action_line,
    gzip_body,
    sanitise_index_part,
)
from receiver.ship.nesting import NestedEncoder
from receiver.spool.records import Position, Record, event_id
from tests.ship.memory_spool import document
from tests.support import flatten

LINE = b'<134>Nov 25 18:21:08 haproxy[1]: {"ci":"10.0.0.1","ST":503,"ft":"web"}'


def records(docs: list[dict[str, Any]]) -> list[Record]:
    return [Record(Position(3, 100 * i), encode_document(d), 1764094868.0)
            for i, d in enumerate(docs)]


def encode_batch(records: list[Record], identity: str, namer: IndexNamer, event_id: Any,
                 with_id: bool = True, parser: Parser | None = None,
                 metrics: ParseMetrics | None = None) -> EncodedBatch:
    encoder = BulkEncoder(ElasticsearchSettings(), parser or Parser(ParseSettings()),
                          metrics or ParseMetrics(CollectorRegistry()), with_id)
    encoder._namer = namer  # the namer under test
    return encoder.encode(records, identity)


def settings(**changes: object) -> ElasticsearchSettings:
    return dataclasses.replace(ElasticsearchSettings(), **changes)  # type: ignore[arg-type]


def lines(body: bytes) -> list[dict[str, object]]:
    """Action lines as they are, documents (written nested) flattened to dotted names."""
    return [flatten(json.loads(line)) if i % 2 else json.loads(line)
            for i, line in enumerate(body.splitlines())]


def test_create_actions_with_deterministic_ids_and_dated_index() -> None:
    docs = [document(1), document(2)]
    encoded = encode_batch(records(docs), "spoolid", IndexNamer(settings()), event_id)
    parsed = lines(encoded.body)
    assert parsed[0] == {"create": {"_index": "haproxy-2026.11.25", "_id": "spoolid-3-0"}}
    assert parsed[1] == docs[0]
    assert parsed[2] == {"create": {"_index": "haproxy-2026.11.25", "_id": "spoolid-3-64"}}
    assert parsed[3] == docs[1]
    assert encoded.ids == ["spoolid-3-0", "spoolid-3-64"]
    assert encoded.subset([1]) == encoded.item(1)
    assert lines(encoded.subset([1])) == parsed[2:4]
    assert encoded.subset([0, 1]) == encoded.body


def test_index_time_zone_changes_the_date() -> None:
    stamp = "2026-11-25T23:30:00.000Z"
    namer = IndexNamer(settings(index_timezone="Asia/Tokyo"))
    assert namer.name(stamp, None, 0.0) == "haproxy-2026.11.26"
    assert IndexNamer(settings()).name(stamp, None, 0.0) == "haproxy-2026.11.25"


def test_hourly_pattern_and_cache_per_minute() -> None:
    namer = IndexNamer(settings(index="logs-%Y%m%d-%H"))
    assert namer.name("2026-11-25T18:21:08.761Z", None, 0.0) == "logs-20261125-18"
    assert namer.name("2026-11-25T19:00:00.000Z", None, 0.0) == "logs-20261125-19"


def test_field_references_are_sanitised() -> None:
    namer = IndexNamer(settings(index="haproxy-{haproxy.frontend_name}-%Y.%m"))
    stamp = "2026-11-25T18:21:08.761Z"
    doc = {"@timestamp": stamp, "haproxy.frontend_name": "Web Front/1:*"}
    assert namer.needs_document
    assert namer.name(stamp, doc, 0.0) == "haproxy-web_front_1__-2026.11"
    assert namer.name(stamp, {}, 0.0) == "haproxy-unknown-2026.11"
    encoded = encode_batch(records([doc]), "x", namer, event_id)
    assert encoded.indices == ["haproxy-web_front_1__-2026.11"]
    assert sanitise_index_part("_Hidden") == "hidden"


def test_missing_or_bad_timestamp_uses_the_spool_time() -> None:
    namer = IndexNamer(settings())
    when = time.mktime((2025, 1, 2, 12, 0, 0, 0, 0, 0)) - time.timezone
    assert namer.name("", None, when) == "haproxy-2025.01.02"
    assert namer.name("garbage-garbage-garbage", None, when) == "haproxy-2025.01.02"


def test_data_stream_and_static_index() -> None:
    assert IndexNamer(settings(data_stream="logs-haproxy-default")).static == "logs-haproxy-default"
    assert IndexNamer(settings(index="haproxy")).name("", None, 0.0) == "haproxy"


def test_without_ids_for_stdout() -> None:
    encoded = encode_batch(records([document(1)]), "x", IndexNamer(settings()), event_id,
                           with_id=False)
    assert lines(encoded.body)[0] == {"create": {"_index": "haproxy-2026.11.25"}}


def test_undecodable_records_are_set_aside() -> None:
    bad = [Record(Position(1, 0), b"\xc1\xc1garbage", 0.0),
           Record(Position(1, 8), msgpack.packb([1, 2]), 0.0),
           Record(Position(1, 12), msgpack.packb([3, "2026-11-25T18:21:08.761Z", b"{}"]), 0.0),
           Record(Position(1, 14), msgpack.packb({"@timestamp": "x"}), 0.0),
           Record(Position(1, 16), encode_document(document(5)), 0.0)]
    encoded = encode_batch(bad, "x", IndexNamer(settings()), event_id)
    assert len(encoded) == 1 and encoded.records == [4]
    assert [index for index, *_ in encoded.unencodable] == [0, 1, 2, 3]
    assert encoded.unencodable[0][1] == "undecodable_record"
    # each with the id it would have had: its dead letter is written once (issue 27, item 4)
    assert [doc_id for *_, doc_id in encoded.unencodable] == ["x-1-0", "x-1-8", "x-1-c", "x-1-e"]


def test_received_messages_are_parsed_stamped_and_counted() -> None:
    metrics = ParseMetrics(CollectorRegistry())
    payloads = FrameEncoder("udp://127.0.0.1:5140").encode(
        [LINE, b"<134>not haproxy", LINE[:40]], 1795631000.0, ("192.0.2.9", 514), frozenset({2}))
    batch = [Record(Position(2, 100 * i), p, 0.0) for i, p in enumerate(payloads)]
    encoded = encode_batch(batch, "ident", IndexNamer(settings()), event_id, metrics=metrics)
    docs = lines(encoded.body)[1::2]
    assert docs[0]["http.response.status_code"] == 503 and docs[0]["source.ip"] == "10.0.0.1"
    assert all(d["log.source.address"] == "192.0.2.9" for d in docs)
    assert docs[1]["tags"] == [TAG_FAILURE]
    assert TAG_TRUNCATED in str(docs[2]["tags"])  # the listener cut it
    assert encoded.document(0) == encoded.body.splitlines()[1]
    assert encoded.document(2) == encoded.body.splitlines()[5]
    assert encoded.ids == [event_id("ident", Position(2, 100 * i)) for i in range(3)]
    assert metrics.events_parsed.labels("json")._value.get() >= 1
    assert metrics.parse_failures.labels("unknown_format")._value.get() == 1


class _HugeNumberParser(Parser):
    """A parser whose document JSON cannot carry (an integer beyond 64 bits)."""

    def parse(self, message: bytes, received_at: float) -> dict[str, Any]:
        document = super().parse(message, received_at)
        document["haproxy.bytes"] = 2**70
        return document


def test_an_unencodable_document_keeps_the_received_line() -> None:
    metrics = ParseMetrics(CollectorRegistry())
    payload = FrameEncoder("udp://x").encode([LINE], 1795631000.0, ("192.0.2.1", 1))[0]
    encoded = encode_batch([Record(Position(1, 42), payload, 0.0)], "x", IndexNamer(settings()),
                           event_id, parser=_HugeNumberParser(ParseSettings()), metrics=metrics)
    [document_] = lines(encoded.body)[1::2]
    assert document_["message"] == LINE.decode() and document_["tags"] == [TAG_FAILURE]
    assert "event.original" not in document_  # the body is kept once
    assert "could not be encoded as JSON" in str(document_["error.message"])
    assert document_["log.source.address"] == "192.0.2.1"
    assert metrics.parse_failures.labels("unencodable")._value.get() == 1


def test_action_lines_have_one_definition() -> None:
    assert json.loads(action_line("i", "a-1-2")) == {"create": {"_index": "i", "_id": "a-1-2"}}
    assert json.loads(action_line("i", None)) == {"create": {"_index": "i"}}
    assert json.loads(action_line(None, "a-1-2")) == {"create": {"_id": "a-1-2"}}
    assert json.loads(action_line(None, None)) == {"create": {}}
    for pattern, named in (("haproxy-%Y.%m.%d", True), ("haproxy", False)):
        encoded = encode_batch(records([document(1)]), "x", IndexNamer(settings(index=pattern)),
                               event_id)
        assert encoded.body.splitlines(keepends=True)[0] == action_line(
            encoded.indices[0] if named else None, encoded.ids[0])


def test_one_index_for_every_document_is_named_by_the_request_not_each_line() -> None:
    """A data stream or a fixed index name: the request's path names it (`request_index`),
    its action lines leave `_index` out; dated or field-named indices: each line names its own,
    the request none. A retry's subset and a join keep it."""
    kept = records([document(day) for day in (1, 2, 3)])
    for changes, request_index in (({"data_stream": "logs-haproxy-default"},
                                    "logs-haproxy-default"),
                                   ({"index": "web"}, "web"),
                                   ({"index": "web-%Y.%m.%d"}, None),
                                   ({"index": "web-{host.name}"}, None)):
        chosen = settings(**changes)
        encoder = BulkEncoder(chosen, Parser(ParseSettings()), ParseMetrics(CollectorRegistry()))
        encoded = encoder.encode(kept, "x")
        assert encoded.request_index == request_index
        actions = [json.loads(line)["create"] for line in encoded.body.splitlines()[::2]]
        assert [action.get("_index") for action in actions] == (
            [None] * 3 if request_index else encoded.indices)
        assert [action["_id"] for action in actions] == encoded.ids
        joined = EncodedBatch.join([encoded, encoder.encode(kept, "y")], [3, 3])
        assert joined.request_index == request_index and len(joined) == 6
    fixed, dated = (BulkEncoder(settings(index=index), Parser(ParseSettings()),
                                ParseMetrics(CollectorRegistry())).encode(kept, "z")
                    for index in ("web", "web-%Y"))
    with pytest.raises(ValueError, match="different request paths"):
        EncodedBatch.join([fixed, dated], [3, 3])


def test_document_json_is_copied_verbatim() -> None:
    doc = document(3)
    encoded = encode_batch(records([doc]), "x", IndexNamer(settings()), event_id)
    assert encoded.body.splitlines()[1] == encode_event_json(doc)


def encode_event_json(doc: dict[str, Any]) -> bytes:
    return bytes(msgpack.unpackb(encode_document(doc))[2])


def test_gzip_round_trip() -> None:
    body = encode_batch(records([document(i) for i in range(200)]), "x",
                        IndexNamer(settings()), event_id).body
    packed = gzip_body(body)
    assert gzip.decompress(packed) == body
    assert len(packed) * 4 < len(body)


def _valid_index_name(name: str) -> bool:
    """Elasticsearch's rules for an index name (MetadataCreateIndexService.validateIndexOrAliasName
    and validateIndexName)."""
    return (0 < len(name.encode()) <= 255 and name == name.lower()
            and not any(c in name for c in '\\/*?"<>| ,#:') and name[0] not in "_-+"
            and name not in (".", ".."))


def test_index_names_from_fields_are_cut_by_bytes_and_keep_their_date() -> None:
    """Issue 27 item 10: multi-byte and long values never make an invalid name nor lose the
    date suffix."""
    namer = IndexNamer(settings(index="haproxy-{haproxy.frontend_name}-{haproxy.backend_name}-%Y.%m.%d"))
    stamp = "2026-11-25T18:21:08.761Z"
    rng = random.Random(27)
    alphabet = "aZé€😀_-.:/ \x00ÀßİΣ+#"
    names = []
    for n in range(3000):
        doc = {"haproxy.frontend_name": "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300))),
               "haproxy.backend_name": "€" * rng.randint(0, 200) if n % 2 else n}
        names.append(namer.name(stamp, doc, 0.0))
    assert [name for name in names if not _valid_index_name(name)] == []
    assert [name for name in names if not name.endswith("-2026.11.25")] == []
    assert sum(len(name.encode()) > 250 for name in names) > 1000  # long ones were cut...
    assert max(len(name.encode()) for name in names) == 255  # ...to exactly the limit
    # 235 bytes for the values (255 less the pattern's 20): "web" keeps its 3, the euro signs
    # (3 bytes each) get 232, cut between characters to 77 of them
    doc = {"haproxy.frontend_name": "web", "haproxy.backend_name": "€" * 200}
    name = namer.name(stamp, doc, 0.0)
    assert name == "haproxy-web-" + "€" * 77 + "-2026.11.25"
    assert len(name.encode()) == 254  # a 78th euro sign would not fit
    # two long values share: the shorter (300 bytes) gets half (117), the other the rest (118)
    both = namer.name(stamp, {"haproxy.frontend_name": "é" * 200, "haproxy.backend_name": "b" * 300}, 0.0)
    assert both == "haproxy-" + "é" * 59 + "-" + "b" * 117 + "-2026.11.25"
    assert namer.name(stamp, {"haproxy.frontend_name": "..", "haproxy.backend_name": "._x"}, 0.0) == (
        "haproxy-unknown-x-2026.11.25")


def test_ids_are_read_back_from_the_action_lines() -> None:
    """`EncodedBatch.id` reads what the encoder wrote: equal to `event_id` of each record, across
    segments and index names (an index name holding `,"_id":"` included: JSON escapes its
    quotes), with the index named by the request, "" without ids, and kept by `join`."""
    docs = [document(day) for day in (1, 1, 2, 2, 1)]
    kept = [Record(Position(3 + i // 2, 17 * i), encode_document(d), 1764094868.0)
            for i, d in enumerate(docs)]
    for name in ("haproxy-%Y.%m.%d", 'odd,"_id":"name-%Y', "by-request"):
        encoded = encode_batch(kept, "spool1d", IndexNamer(settings(index=name)), event_id)
        expected = [event_id("spool1d", record.position) for record in kept]
        assert [encoded.id(i) for i in range(len(encoded))] == expected == encoded.ids
        assert [json.loads(line)["create"]["_id"]
                for line in encoded.body.splitlines()[::2]] == expected
        assert [action_line(encoded.indices[i] if encoded.request_index is None else None,
                            expected[i]) for i in range(len(encoded))] == \
            encoded.body.splitlines(keepends=True)[::2]
        half = encode_batch(kept[2:], "spool1d", IndexNamer(settings(index=name)), event_id)
        joined = EncodedBatch.join([encode_batch(kept[:2], "spool1d",
                                                 IndexNamer(settings(index=name)), event_id),
                                    half], [2, 3])
        assert joined.ids == expected and joined.body == encoded.body
    without = encode_batch(kept, "x", IndexNamer(settings()), event_id, with_id=False)
    assert without.ids == [""] * len(kept)
    given = EncodedBatch(b"{}\n", [0, 3], ["i"], ["given"], [0])
    assert given.id(0) == "given" and EncodedBatch.join([given, given], [1, 1]).ids == ["given"] * 2


class _OneHugeNumber(Parser):
    """The `api` line's document holds an integer JSON cannot carry."""

    def parse(self, message: bytes, received_at: float) -> dict[str, Any]:
        document = super().parse(message, received_at)
        if b"api" in message:
            document["haproxy.bytes"] = 2**70
        return document


def test_the_bulk_body_is_the_same_whichever_way_documents_are_nested() -> None:
    """Received messages (one unencodable, with an index named from its fields), documents of
    earlier versions and an undecodable record, with and without ids: the body written with
    the compiled nesting writer (where it was built) is the Python way's, byte for byte."""
    if not nesting.COMPILED:
        pytest.skip("the compiled writer was not built here")
    payloads = FrameEncoder("udp://x").encode(
        [LINE, LINE.replace(b"web", b"api"), b"<134>Nov 25 18:21:08 haproxy[1]: not json"],
        1795631000.0, ("192.0.2.1", 1))
    kept = [Record(Position(1 + i // 3, 40 * i), payload, 0.0)
            for i, payload in enumerate([*payloads, encode_document(document(2)), b"\xc1",
                                         *payloads])]
    for name in ("haproxy-%Y.%m.%d", "haproxy-{haproxy.frontend_name}-%Y.%m.%d"):
        for with_id in (True, False):
            bodies = []
            for compiled in (True, False):
                encoder = BulkEncoder(settings(index=name), _OneHugeNumber(ParseSettings()),
                                      ParseMetrics(CollectorRegistry()), with_id)
                encoder._nested = NestedEncoder(compiled)
                encoded = encoder.encode(kept, "x")
                bodies.append((encoded.body, encoded.offsets, encoded.indices, encoded.records,
                               [row[:2] for row in encoded.unencodable]))
            assert bodies[0] == bodies[1]
            assert len(bodies[0][2]) == 7 and len(bodies[0][4]) == 1
            assert bodies[0][0].count(b"could not be encoded as JSON") == 2
            assert bodies[0][0].count(b'"frontend_name":"web"') == 2
