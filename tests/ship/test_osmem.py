"""The output against a real OpenSearch-compatible server (osmem-server): delivery, setup,
replays without duplicates, mapping errors into the dead-letter file."""

from __future__ import annotations

import io
import json
import urllib.request
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

from receiver.event import FrameEncoder
from receiver.ship.classify import Classification, RequestOutcome, classify, delivered_all_raw
from receiver.ship.elasticsearch import BULK_PATH, ElasticsearchOutput
from receiver.ship.setup import run_setup, setup
from receiver.ship.template import template_name
from tests.ship.harness import es_settings, running_shipper
from tests.ship.memory_spool import MemorySpool, document
from tests.support import wait_for

INDEX = "haproxy-2026.11.25"


def call(url: str, method: str, path: str) -> Any:
    request = urllib.request.Request(url + path, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def count(url: str, index: str = INDEX) -> int:
    call(url, "POST", f"/{index}/_refresh")
    return int(call(url, "GET", f"/{index}/_count")["count"])


def test_delivers_exactly_n_documents(es_url: str, tmp_path: Path) -> None:
    spool = MemorySpool([document(i) for i in range(500)])
    with running_shipper(es_settings([es_url]), spool, tmp_path) as run:
        wait_for(lambda: spool.acknowledged_records() == 500, what="all acknowledged")
        assert run.value("events_shipped_total") == 500
    assert count(es_url) == 500
    hit = call(es_url, "GET", f"/{INDEX}/_search?q=seq:7")["hits"]["hits"][0]
    assert hit["_id"] == "testspool-1-1c0"
    assert hit["_source"]["url.original"] == "/item/7?q=1"


def test_replay_is_not_duplicated(es_url: str, tmp_path: Path) -> None:
    documents = [document(i) for i in range(100)]
    for attempt in range(2):
        spool = MemorySpool(documents)  # same identity and positions: a replay
        with running_shipper(es_settings([es_url]), spool, tmp_path / str(attempt)) as run:
            wait_for(lambda s=spool: s.acknowledged_records() == 100, what="acknowledged")  # type: ignore[misc]
            assert run.value("events_shipped_total") == 100
            assert run.dead_letters() == []
    assert count(es_url) == 100


def test_one_index_named_by_the_request_takes_a_replay_once(es_url: str, tmp_path: Path) -> None:
    """A fixed index: requests go to `/<index>/_bulk` with action lines naming no `_index`,
    and the server puts every document there; a replay's `create`s are refused as already
    there (409), by `_id`, as with the index in each line."""
    settings = es_settings([es_url], index="haproxy-all")
    documents = [document(i) for i in range(100)]
    for attempt in range(2):
        spool = MemorySpool(documents)
        with running_shipper(settings, spool, tmp_path / str(attempt)) as run:
            wait_for(lambda s=spool: s.acknowledged_records() == 100, what="acknowledged")  # type: ignore[misc]
            assert run.value("events_shipped_total") == 100
            assert run.dead_letters() == []
    assert count(es_url, "haproxy-all") == 100
    hit = call(es_url, "GET", "/haproxy-all/_search?q=seq:7")["hits"]["hits"][0]
    assert hit["_id"] == "testspool-1-1c0"


def test_setup_installs_the_template_once(es_url: str) -> None:
    settings = es_settings([es_url])
    output = ElasticsearchOutput(settings)
    try:
        first = setup(output, settings)
        second = setup(output, settings)
    finally:
        output.close()
    assert [(s.what, s.changed) for s in first] == [
        ("ILM policy", False), ("index template haproxy-receiver", True)]
    assert "OpenSearch" in first[0].note and "no ILM" in first[0].note
    assert [s.changed for s in second] == [False, False]
    stored = call(es_url, "GET", f"/_index_template/{template_name(settings)}")
    template = stored["index_templates"][0]["index_template"]
    assert template["index_patterns"] == ["haproxy-*"]
    properties = template["template"]["mappings"]["properties"]
    assert properties["source"]["properties"]["ip"]["type"] == "ip"
    assert properties["url"]["properties"]["original"]["fields"]["text"]["type"] == "text"


def test_run_setup_twice(es_url: str) -> None:
    printed = io.StringIO()
    with redirect_stdout(printed):
        assert run_setup(es_settings([es_url])) == 0
        assert run_setup(es_settings([es_url])) == 0
    lines = printed.getvalue().splitlines()
    assert lines[1].startswith("  ILM policy: skipped: OpenSearch")
    assert lines[2] == "  index template haproxy-receiver: installed"
    assert lines[-1] == "  index template haproxy-receiver: already up to date"


def test_mapping_error_goes_to_the_dead_letter_file(es_url: str, tmp_path: Path) -> None:
    settings = es_settings([es_url])
    output = ElasticsearchOutput(settings)
    setup(output, settings)
    output.close()
    documents = [document(i) for i in range(10)]
    documents[4]["source.ip"] = "not-an-ip"
    documents[4]["http.response.status_code"] = 200
    spool = MemorySpool(documents)
    with running_shipper(settings, spool, tmp_path) as run:
        wait_for(lambda: spool.acknowledged_records() == 10, what="acknowledged")
        assert run.value("events_shipped_total") == 9
        assert run.value("events_dead_lettered_total", reason="mapper_parsing_exception") == 1
        (line,) = run.dead_letters()
    letter = json.loads(line)
    assert letter["document"]["source.ip"] == "not-an-ip"
    assert letter["index"] == INDEX
    assert "source.ip" in letter["reason"]
    assert count(es_url) == 9
    mapping = call(es_url, "GET", f"/{INDEX}/_mapping")[INDEX]["mappings"]["properties"]
    assert mapping["http"]["properties"]["response"]["properties"]["status_code"]["type"] == "integer"


def test_documents_spooled_before_an_upgrade_ship_under_the_stored_names(
        es_url: str, tmp_path: Path) -> None:
    """A spool written by an earlier version holds documents with values under names that are
    aliases in today's template (`http.response.bytes`, `log.syslog.hostname`); a write to an
    alias is refused, so they are moved to the fields the aliases name, and every one is
    indexed and found under either name."""
    settings = es_settings([es_url])
    output = ElasticsearchOutput(settings)
    setup(output, settings)
    output.close()
    old = [{**document(i), "http.response.bytes": 500 + i, "log.syslog.hostname": "lb1"}
           for i in range(10)]
    for entry in old:
        del entry["haproxy.bytes_read"]
    spool = MemorySpool(old)
    with running_shipper(settings, spool, tmp_path) as run:
        wait_for(lambda: spool.acknowledged_records() == 10, what="acknowledged")
        assert run.value("events_shipped_total") == 10
        assert run.value("events_dead_lettered_total") == 0
    assert count(es_url) == 10
    hit = call(es_url, "GET", f"/{INDEX}/_search?q=seq:3")["hits"]["hits"][0]["_source"]
    assert (hit["haproxy.bytes_read"], hit["host.name"]) == (503, "lb1")
    assert "http.response.bytes" not in hit
    assert call(es_url, "GET", f"/{INDEX}/_search?q=http.response.bytes:503")["hits"]["hits"]


def test_data_stream_template(es_url: str) -> None:
    # osmem has no data streams; shipping into one is tested against the fake server.
    settings = es_settings([es_url], data_stream="logs-haproxy-default")
    output = ElasticsearchOutput(settings)
    steps = setup(output, settings)
    output.close()
    assert steps[-1].what == "index template haproxy-receiver-logs-haproxy-default"
    stored = call(es_url, "GET", "/_index_template/haproxy-receiver-logs-haproxy-default")
    template = stored["index_templates"][0]["index_template"]
    assert template["index_patterns"] == ["logs-haproxy-default"]
    assert template["priority"] == 200


def test_setup_on_start_installs_the_template(es_url: str, tmp_path: Path) -> None:
    settings = es_settings([es_url], setup_on_start=True)
    spool = MemorySpool([document(1)])
    with running_shipper(settings, spool, tmp_path):
        wait_for(lambda: spool.acknowledged_records() == 1, what="acknowledged")
    stored = call(es_url, "GET", "/_index_template/haproxy-receiver")
    assert stored["index_templates"][0]["index_template"]["index_patterns"] == ["haproxy-*"]


def test_raw_fast_path_matches_the_careful_classification(es_url: str) -> None:
    """A real answer: all created -> the fast path says so, exactly as the parsed one; a replay
    (409s, `errors: true`) and a mapping error are left to the careful path."""
    settings = es_settings([es_url])
    output = ElasticsearchOutput(settings)
    setup(output, settings)  # `source.ip` mapped as an IP: "not-an-ip" is refused
    output.close()

    def bulk(lines: bytes) -> tuple[int, bytes]:
        request = urllib.request.Request(
            es_url + BULK_PATH, data=lines, method="POST",
            headers={"content-type": "application/x-ndjson"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()

    body = b"".join(b'{"create":{"_index":"%s","_id":"f%d"}}\n' % (INDEX.encode(), i)
                    + json.dumps(document(i)).encode() + b"\n" for i in range(20))
    status, raw = bulk(body)
    assert delivered_all_raw(status, raw, 20)
    assert classify(status, json.loads(raw), 20) == Classification(RequestOutcome.OK, "ok", status)
    assert not delivered_all_raw(status, raw, 21)

    status, raw = bulk(body)  # the same ids again: 409 on create
    assert not delivered_all_raw(status, raw, 20)
    assert classify(status, json.loads(raw), 20).delivered_all

    status, raw = bulk(b'{"create":{"_index":"%s"}}\n{"source.ip":"not-an-ip"}\n' % INDEX.encode())
    assert not delivered_all_raw(status, raw, 1)
    assert not classify(status, json.loads(raw), 1).delivered_all


def search(url: str, query: dict[str, Any]) -> list[dict[str, Any]]:
    request = urllib.request.Request(
        url + "/haproxy-*/_search", json.dumps({"query": query}).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return list(json.loads(response.read())["hits"]["hits"])


def test_received_lines_are_stored_nested_and_found_by_their_dotted_names(
        es_url: str, tmp_path: Path) -> None:
    # A real tcplog line (tests/parse/data/real_lines.jsonl); its procid is the pid's text.
    line = (b"<134>Feb  6 12:12:56 localhost haproxy[14387]: 10.0.1.2:33313 "
            b"[06/Feb/2009:12:12:51.443] fnt bck/srv1 0/0/5007 212 -- 0/0/0/0/3 0/0")
    settings = es_settings([es_url])
    output = ElasticsearchOutput(settings)
    try:
        setup(output, settings)
    finally:
        output.close()
    spool = MemorySpool()
    for payload in FrameEncoder("udp://127.0.0.1:5140").encode([line], 1234567976.0,
                                                                 ("10.0.1.2", 514)):
        spool.add_payload(payload)
    with running_shipper(settings, spool, tmp_path) as run:
        wait_for(lambda: spool.acknowledged_records() == 1, what="acknowledged")
        assert run.dead_letters() == []
    call(es_url, "POST", "/haproxy-*/_refresh")
    (hit,) = search(es_url, {"term": {"haproxy.frontend_name": "fnt"}})
    source = hit["_source"]
    assert source["haproxy"]["connections"]["retries"] == 3 and source["process"]["pid"] == 14387
    assert "haproxy.frontend_name" not in source and "procid" not in source["log"]["syslog"]
    # The procid, stored once as process.pid, is found under its own name too (copy_to).
    assert len(search(es_url, {"term": {"log.syslog.procid": "14387"}})) == 1
    assert len(search(es_url, {"term": {"log.syslog.procid": "14388"}})) == 0
    assert len(search(es_url, {"range": {"haproxy.connections.retries": {"gte": 3}}})) == 1
    # The template's aliases resolve to fields written nested as they did to flat ones.
    assert len(search(es_url, {"term": {"http.response.bytes": 212}})) == 1
    assert len(search(es_url, {"term": {"log.syslog.hostname": "localhost"}})) == 1
    assert len(search(es_url, {"term": {"haproxy.total_waiting_time_ms": 0}})) == 1
