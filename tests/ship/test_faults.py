"""The shipper against a fault-injecting Elasticsearch: exact delivered/retried/dead-lettered."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.es_server import FakeElasticsearch
from tests.ship.harness import Running, es_settings, running_shipper
from tests.ship.memory_spool import MemorySpool, document
from tests.support import wait_for


@pytest.fixture
def fake() -> Iterator[FakeElasticsearch]:
    server = FakeElasticsearch.start("es8")
    yield server
    server.close()


def docs(n: int) -> list[dict[str, object]]:
    return [document(i) for i in range(n)]


def settle(run: Running, expected_acked: int) -> None:
    wait_for(lambda: run.spool.acknowledged_records() == expected_acked, timeout=20,
             what=f"{expected_acked} records acknowledged")


def counts(run: Running) -> tuple[float, float, float]:
    return (run.value("events_shipped_total"), run.value("events_retried_total"),
            sum(s.value for m in run.metrics.events_dead_lettered.collect()
                for s in m.samples if s.name.endswith("_total")))


def test_delivers_everything_with_es8_media_types(fake: FakeElasticsearch, tmp_path: Path) -> None:
    spool = MemorySpool(docs(120))
    with running_shipper(es_settings([fake.url], compression="on"), spool, tmp_path) as run:
        settle(run, 120)
        assert counts(run) == (120, 0, 0)
        assert run.value("bulk_requests_total", outcome="ok") == len(fake.bulk_requests())
        assert run.value("output_up") == 1
        assert run.value("bulk_sent_bytes_total") > 0
    assert len(fake.documents) == 120
    assert {doc["seq"] for _, doc in fake.documents.values()} == set(range(120))
    bulk = fake.bulk_requests()[0]
    assert bulk.headers["content-type"] == "application/vnd.elasticsearch+x-ndjson; compatible-with=8"
    assert bulk.headers["accept"] == "application/vnd.elasticsearch+json; compatible-with=8"
    assert bulk.headers["content-encoding"] == "gzip"
    assert all(len(r.body.splitlines()) <= 100 for r in fake.bulk_requests())  # 50 per batch
    assert spool.outstanding == {}


@pytest.mark.parametrize(("flavor", "content_type"), [
    ("es9", "application/vnd.elasticsearch+x-ndjson; compatible-with=9"),
    ("es7", "application/x-ndjson"),
    ("opensearch", "application/x-ndjson"),
])
def test_media_types_per_server(flavor: str, content_type: str, tmp_path: Path) -> None:
    with FakeElasticsearch.start(flavor, strict_compat=flavor == "es9") as server:
        spool = MemorySpool(docs(10))
        # compression "auto" (the default) on a loopback host: plain NDJSON.
        with running_shipper(es_settings([server.url]), spool, tmp_path) as run:
            settle(run, 10)
        assert len(server.documents) == 10
        bulk = server.bulk_requests()[0]
        assert bulk.headers["content-type"] == content_type
        assert "content-encoding" not in bulk.headers


@pytest.mark.parametrize(("options", "message"), [
    ({"flavor": "not-es"}, "is not Elasticsearch or OpenSearch"),
    ({"flavor": "es8", "product_header": False}, "X-Elastic-Product"),
])
def test_a_server_that_is_not_elasticsearch_is_refused(
    options: dict[str, object], message: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    with FakeElasticsearch.start(**options) as server:  # type: ignore[arg-type]
        spool = MemorySpool(docs(5))
        with running_shipper(es_settings([server.url]), spool, tmp_path,
                             drain_seconds=0.1) as run:
            wait_for(lambda: run.value("bulk_requests_total", outcome="rejected") >= 2,
                     what="two rejected attempts")
            assert spool.acknowledged_records() == 0
            assert run.value("events_shipped_total") == 0
        assert server.bulk_requests() == []
        assert message in caplog.text


@pytest.mark.parametrize("failure", ["429", "500", "503", "cut"])
def test_whole_request_failures_are_retried(
    fake: FakeElasticsearch, failure: str, tmp_path: Path,
) -> None:
    fake.script([failure, failure])
    spool = MemorySpool(docs(50), batch_records=50)
    with running_shipper(es_settings([fake.url]), spool, tmp_path) as run:
        settle(run, 50)
        assert counts(run) == (50, 100, 0)
        label = {"429": "throttled", "cut": "connection_error"}.get(failure, "server_error")
        assert run.value("bulk_requests_total", outcome=label) == 2
        assert run.value("bulk_requests_total", outcome="ok") == 1
    assert len(fake.documents) == 50


def test_mixed_item_results(fake: FakeElasticsearch, tmp_path: Path) -> None:
    fake.script(["items:201,409,400,429"])
    spool = MemorySpool(docs(8), batch_records=8)
    with running_shipper(es_settings([fake.url]), spool, tmp_path) as run:
        settle(run, 8)
        # 0,4 created; 1,5 already there (409); 2,6 refused; 3,7 throttled then created.
        assert counts(run) == (6, 2, 2)
        assert run.value("events_dead_lettered_total", reason="mapper_parsing_exception") == 2
        letters = [json.loads(line) for line in run.dead_letters()]
    assert len(fake.documents) == 6
    assert sorted(letter["document"]["seq"] for letter in letters) == [2, 6]
    first = letters[0]
    assert first["error_type"] == "mapper_parsing_exception"
    assert first["status"] == 400
    assert first["index"] == "haproxy-2026.11.25"
    assert first["_id"].startswith("testspool-1-")
    assert "source.ip" in first["reason"]
    assert first["time"].endswith("Z")
    # The retry carried only the two throttled items.
    retry = fake.bulk_requests()[1]
    assert len(retry.body.splitlines()) == 4


def test_per_item_429_retried_alone(fake: FakeElasticsearch, tmp_path: Path) -> None:
    fake.script(["items:201,429,429,429,429"])
    spool = MemorySpool(docs(10), batch_records=10)
    with running_shipper(es_settings([fake.url]), spool, tmp_path) as run:
        settle(run, 10)
        assert counts(run) == (10, 8, 0)
        assert run.value("bulk_requests_total", outcome="partial") == 1
    assert len(fake.documents) == 10


def test_slow_response_times_out_and_the_replay_is_not_duplicated(
    fake: FakeElasticsearch, tmp_path: Path,
) -> None:
    fake.script(["slow:1.5"])
    spool = MemorySpool(docs(20), batch_records=20)
    with running_shipper(es_settings([fake.url], request_timeout=0.3), spool, tmp_path) as run:
        settle(run, 20)
        # The slow server indexed them; the retry gets 409 for each: delivered, no duplicates.
        assert counts(run) == (20, 20, 0)
        assert run.value("bulk_requests_total", outcome="timeout") == 1
    assert len(fake.documents) == 20


def test_unauthorised_keeps_events_and_hides_the_password(
    fake: FakeElasticsearch, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    fake.script(["401", "401", "401"])
    spool = MemorySpool(docs(10), batch_records=10)
    settings = es_settings([fake.url], username="writer", password="s3cret-pw")
    with running_shipper(settings, spool, tmp_path) as run:
        wait_for(lambda: run.value("bulk_requests_total", outcome="auth_error") >= 1,
                 what="an auth error")
        settle(run, 10)
        assert counts(run) == (10, 30, 0)
        assert run.value("bulk_requests_total", outcome="auth_error") == 3
    assert "refused our credentials" in caplog.text
    assert "s3cret-pw" not in caplog.text
    assert fake.bulk_requests()[0].headers["authorization"].startswith("Basic ")


def test_too_large_is_split(fake: FakeElasticsearch, tmp_path: Path) -> None:
    fake.script(["413"])
    spool = MemorySpool(docs(8), batch_records=8)
    with running_shipper(es_settings([fake.url]), spool, tmp_path) as run:
        settle(run, 8)
        assert counts(run) == (8, 0, 0)
    assert [len(r.body.splitlines()) // 2 for r in fake.bulk_requests()] == [8, 4, 4]


def test_failover_to_the_next_host(fake: FakeElasticsearch, tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    spool = MemorySpool(docs(30))
    with running_shipper(es_settings([dead, fake.url]), spool, tmp_path) as run:
        settle(run, 30)
        assert run.value("events_shipped_total") == 30
    assert len(fake.documents) == 30


def test_drain_leaves_undelivered_events_in_the_spool(
    fake: FakeElasticsearch, tmp_path: Path,
) -> None:
    fake.script(["503"] * 1000)
    spool = MemorySpool(docs(10), batch_records=10)
    with running_shipper(es_settings([fake.url]), spool, tmp_path, drain_seconds=0.2) as run:
        wait_for(lambda: run.value("bulk_requests_total", outcome="server_error") >= 3,
                 what="some failed attempts")
    assert spool.acknowledged_records() == 0
    assert len(spool.outstanding) == 1
    assert fake.documents == {}


def test_undecodable_record_goes_to_the_dead_letter_file(
    fake: FakeElasticsearch, tmp_path: Path,
) -> None:
    spool = MemorySpool(docs(3))
    spool.add_payload(b"\xc1not msgpack")
    with running_shipper(es_settings([fake.url]), spool, tmp_path) as run:
        settle(run, 4)
        assert counts(run) == (3, 0, 1)
        (letter,) = [json.loads(line) for line in run.dead_letters()]
    assert letter["error_type"] == "undecodable_record"
    assert "payload_base64" in letter


def test_data_stream_actions_keep_ids(fake: FakeElasticsearch, tmp_path: Path) -> None:
    """The request names the data stream (`/<name>/_bulk`), each action line its `_id`."""
    spool = MemorySpool(docs(5))
    settings = es_settings([fake.url], data_stream="logs-haproxy-default")
    with running_shipper(settings, spool, tmp_path) as run:
        settle(run, 5)
    requests = fake.bulk_requests()
    assert requests and all(request.path.startswith("/logs-haproxy-default/_bulk?")
                            for request in requests)
    action = json.loads(requests[0].body.splitlines()[0])
    assert action == {"create": {"_id": "testspool-1-0"}}
    assert {index for index, _ in fake.documents.values()} == {"logs-haproxy-default"}


def test_setup_on_elasticsearch_installs_ilm_once(fake: FakeElasticsearch) -> None:
    from receiver.ship.elasticsearch import ElasticsearchOutput
    from receiver.ship.setup import setup

    settings = es_settings([fake.url], ilm_delete_after_days=7)
    output = ElasticsearchOutput(settings)
    try:
        first = setup(output, settings)
        second = setup(output, settings)
    finally:
        output.close()
    assert [(s.what, s.changed) for s in first] == [
        ("ILM policy haproxy-receiver", True), ("index template haproxy-receiver", True)]
    assert [s.changed for s in second] == [False, False]
    policy = fake.stored[("_ilm/policy", "haproxy-receiver")]["policy"]
    assert policy["phases"]["delete"]["min_age"] == "7d"
    template = fake.stored[("_index_template", "haproxy-receiver")]
    assert template["template"]["settings"]["index"]["lifecycle"] == {"name": "haproxy-receiver"}
    puts = [r for r in fake.requests if r.method == "PUT"]
    assert len(puts) == 2
    assert puts[0].headers["content-type"] == "application/vnd.elasticsearch+json; compatible-with=8"


def test_version_hidden_by_privileges_falls_back_to_plain_json(tmp_path: Path) -> None:
    with FakeElasticsearch.start("es8", root_forbidden=True) as server:
        spool = MemorySpool(docs(5))
        with running_shipper(es_settings([server.url]), spool, tmp_path) as run:
            settle(run, 5)
            assert counts(run) == (5, 0, 0)
        assert server.bulk_requests()[0].headers["content-type"] == "application/x-ndjson"


def test_refused_documents_also_go_to_the_dead_letter_index(tmp_path: Path) -> None:
    with FakeElasticsearch.start("es8", reject_fields=("bad",)) as server:
        spool = MemorySpool([document(0), document(1, bad="x"), document(2)])
        settings = es_settings([server.url], dead_letter_index="haproxy-dead-letters")
        with running_shipper(settings, spool, tmp_path) as run:
            settle(run, 3)
            assert counts(run) == (2, 0, 1)
            assert len(run.dead_letters()) == 1
        # The dead-letter index copy has no `bad` field of its own, so it is accepted.
        letters = [doc for index, doc in server.documents.values()
                   if index == "haproxy-dead-letters"]
    assert len(letters) == 1
    assert letters[0]["error.type"] == "mapper_parsing_exception"
    assert json.loads(letters[0]["event.original"])["document"]["seq"] == 1


def test_unwritable_dead_letter_file_keeps_events_until_it_works(tmp_path: Path) -> None:
    blocker = tmp_path / "letters"
    blocker.write_text("a file where the directory should be")
    with FakeElasticsearch.start("es8", reject_fields=("bad",)) as server:
        spool = MemorySpool([document(0), document(1, bad="x")], batch_records=2)
        with running_shipper(es_settings([server.url]), spool, tmp_path,
                             dead_letter=blocker / "dead-letter.jsonl") as run:
            wait_for(lambda: len(server.bulk_requests()) >= 3, what="the refusal sent again")
            assert spool.acknowledged_records() == 0
            assert run.value("events_dead_lettered_total", reason="mapper_parsing_exception") == 0
            blocker.unlink()  # the writer makes the directory itself at its next try
            settle(run, 2)
            assert run.value("events_dead_lettered_total", reason="mapper_parsing_exception") == 1
        assert len((blocker / "dead-letter.jsonl").read_text().splitlines()) == 1
        assert len(server.documents) == 1


@pytest.mark.parametrize("credentials", [
    {"username": "writer", "password": "s3cret-pw-77"},
    {"api_key": "key-id:key-secret-77"},
    {"bearer_token": "eyJhbGciOi.bearer-77"},
])
def test_an_echoed_authorization_header_reaches_neither_log_nor_dead_letter_file(
    fake: FakeElasticsearch, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    credentials: dict[str, str],
) -> None:
    """Issue 17: a server or proxy that quotes our Authorization header in an item's reason."""
    caplog.set_level(logging.INFO)
    fake.script(["echo-auth"])
    spool = MemorySpool(docs(3), batch_records=3)
    with running_shipper(es_settings([fake.url], **credentials), spool, tmp_path) as run:
        settle(run, 3)
        assert counts(run) == (0, 0, 3)
        letters = run.dead_letters()
    sent = fake.bulk_requests()[0].headers["authorization"]
    token = sent.split(" ", 1)[1]
    assert "Authorization: " in caplog.text  # the reason was logged...
    assert len(letters) == 3 and all("[Authorization: " in line for line in letters)
    for text in [caplog.text, *letters]:  # ...without the credentials
        assert token not in text
        for secret in credentials.values():
            assert secret.rsplit(":", 1)[-1] not in text
    assert json.loads(letters[0])["reason"] == (
        f"header [Authorization: {sent.split(' ', 1)[0]} ***] is not allowed on this endpoint")


def test_an_early_413_halves_the_batch_until_it_fits(tmp_path: Path) -> None:
    """Issue 18: a 413 sent from the headers alone, the body unread and the connection reset."""
    spool = MemorySpool(docs(8), batch_records=8)
    one = len(encode_for_size(document(0)))
    with FakeElasticsearch.start("es8", max_content_length=int(2.5 * one)) as server:
        with running_shipper(es_settings([server.url]), spool, tmp_path) as run:
            settle(run, 8)
            assert counts(run) == (8, 0, 0)
            assert run.value("bulk_requests_total", outcome="too_large") == 2  # of 8, then of 4
            assert run.value("bulk_requests_total", outcome="connection_error") == 0
        sizes = [len(r.body.splitlines()) // 2 for r in server.bulk_requests()]
    assert sizes == [0, 0, 2, 2, 2, 2]  # two 413s (bodies unread), then four requests of 2
    assert len(server.documents) == 8


def encode_for_size(doc: dict[str, object]) -> bytes:
    """An action line and a document, as the shipper sends them (near enough for a size)."""
    return json.dumps({"create": {"_index": "haproxy-2026.11.25", "_id": "x" * 30}}).encode() \
        + b"\n" + json.dumps(doc).encode() + b"\n"
