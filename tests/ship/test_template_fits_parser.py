"""The index template and the parser agree: every corpus frame, parsed by the real parser,
is accepted by a server with our template installed (no mapping error, no dead letter). And
users of Elastic's HAProxy integration keep their searches: every field its `log` data stream
defines (tests/ship/data/elastic-haproxy-fields, copied with their origin) has a field of a
compatible type, or an alias to one, in our template."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from receiver.config import ParseSettings
from receiver.parse import Parser
from receiver.ship.elasticsearch import ElasticsearchOutput, ServerInfo
from receiver.ship.setup import setup
from receiver.ship.template import build_template, load_template_file
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
    setup(output, settings)
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


ELASTIC_FIELDS = Path(__file__).resolve().parent / "data" / "elastic-haproxy-fields"
# The integration's type -> the types of ours a search on it works against.
COMPATIBLE = {
    "keyword": {"keyword", "constant_keyword"},
    "constant_keyword": {"constant_keyword", "keyword"},
    "text": {"text", "match_only_text"},
    "long": {"long", "integer", "short"},
    "ip": {"ip"}, "geo_point": {"geo_point"}, "date": {"date"},
}
# Where ours differs on purpose: HAProxy logs `%[ssl_fc_err,hex]` (httpslog), e.g. `1408A0C1`,
# which no `long` holds; equality searches (`:0`) work on the keyword.
DIFFERENT_ON_PURPOSE = {"haproxy.connections.ssl_fc_err": "keyword"}


def integration_fields() -> dict[str, str]:
    """Every leaf field the integration's field files define -> its type."""
    found: dict[str, str] = {}

    def walk(entries: list[dict[str, Any]], prefix: str) -> None:
        for entry in entries:
            name = prefix + entry["name"]
            if entry.get("type") == "group":
                walk(entry.get("fields", []), name + ".")
            else:
                found[name] = entry["type"]

    for path in sorted(ELASTIC_FIELDS.glob("*.yml")):
        walk(yaml.safe_load(path.read_text()), "")
    return found


def template_fields(mappings: dict[str, Any]) -> dict[str, str]:
    """Every field of our template -> its type (an alias -> its target's type)."""
    found: dict[str, str] = {}
    aliases: dict[str, str] = {}

    def walk(properties: dict[str, Any], prefix: str) -> None:
        for name, field in properties.items():
            if "properties" in field:
                walk(field["properties"], prefix + name + ".")
            elif field.get("type") == "alias":
                aliases[prefix + name] = field["path"]
            else:
                found[prefix + name] = field["type"]

    walk(mappings["properties"], "")
    for name, target in aliases.items():
        assert target in found, f"alias {name} -> {target}, which is not a field"
        found[name] = found[target]
    return found


def test_every_field_of_elastics_integration_has_a_compatible_field_or_alias() -> None:
    theirs = integration_fields()
    assert len(theirs) > 60 and "haproxy.http.request.time_wait_ms" in theirs
    ours = template_fields(load_template_file()["template"]["mappings"])
    wrong = []
    for name, kind in theirs.items():
        have = ours.get(name)
        allowed = {DIFFERENT_ON_PURPOSE[name]} if name in DIFFERENT_ON_PURPOSE else (
            COMPATIBLE[kind])
        if have not in allowed:
            wrong.append(f"{name}: theirs {kind}, ours {have}")
    assert not wrong


def test_no_document_writes_a_name_the_template_makes_an_alias() -> None:
    """A value is stored once: a name mapped as an alias is never written (Elasticsearch
    refuses a document that does), so each alias is the only way a second name costs."""
    mappings = load_template_file()["template"]["mappings"]
    aliases: set[str] = set()

    def walk(properties: dict[str, Any], prefix: str) -> None:
        for name, field in properties.items():
            if "properties" in field:
                walk(field["properties"], prefix + name + ".")
            elif field.get("type") == "alias":
                aliases.add(prefix + name)

    walk(mappings["properties"], "")
    assert {"http.response.bytes", "log.syslog.hostname", "log.syslog.appname",
            "log.syslog.severity.name"} <= aliases
    written = {key for document in corpus_documents() for key in document}
    assert "haproxy.bytes_read" in written and "host.name" in written
    assert not written & aliases, sorted(written & aliases)


def test_constant_keywords_become_keywords_where_the_server_has_none() -> None:
    settings = es_settings(["http://127.0.0.1:9"])
    fields_on = {
        server: template_fields(build_template(settings, server)["template"]["mappings"])
        for server in (ServerInfo("opensearch", "2.13.0", 2, 13),
                       ServerInfo("elasticsearch", "7.6.2", 7, 6),
                       ServerInfo("elasticsearch", "8.15.0", 8, 15))
    }
    kinds = [fields["ecs.version"] for fields in fields_on.values()]
    assert kinds == ["keyword", "keyword", "constant_keyword"]


def test_the_integrations_names_find_our_documents(es_url: str, tmp_path: Path) -> None:
    """On a server with the template installed, a search by the integration's name (an
    alias) finds what the parser wrote under ours."""
    settings = es_settings([es_url], batch_events=10)
    output = ElasticsearchOutput(settings)
    setup(output, settings)
    output.close()
    parser = Parser(ParseSettings())
    line = (b"<134>Feb  6 12:14:14 localhost haproxy[14389]: 10.0.1.2:33317"
            b" [06/Feb/2009:12:14:14.655] https-in~ static/srv1 10/3/30/69/109 200 2750 - -"
            b' ---- 1/1/1/1/0 0/0 {1wt.eu} {} "GET /index.html HTTP/1.1" 0/1408A0C1/0/0/1'
            b" 1wt.eu/TLSv1.3/TLS_AES_256_GCM_SHA384")
    document = parser.parse(line, 1233922455.0)
    spool = MemorySpool([document], batch_records=10)
    with running_shipper(settings, spool, tmp_path):
        wait_for(lambda: spool.acknowledged_records() == 1, what="acknowledged")
    request = urllib.request.Request(es_url + "/haproxy-*/_refresh", method="POST")
    urllib.request.urlopen(request, timeout=10).read()
    for name, value in (("haproxy.http.request.time_wait_ms", 10),
                        ("haproxy.total_waiting_time_ms", 3),
                        ("haproxy.connection_wait_time_ms", 30),
                        ("haproxy.http.request.time_wait_without_data_ms", 69),
                        ("haproxy.bytes_read", 2750), ("haproxy.connections.fc_err", 0),
                        ("haproxy.connections.ssl_fc_err", "1408A0C1"),
                        ("haproxy.source", "localhost"), ("haproxy.frontend_name", "https-in~"),
                        # ECS names whose value is stored once under another name
                        ("http.response.bytes", 2750), ("log.syslog.hostname", "localhost"),
                        ("log.syslog.appname", "haproxy"), ("log.syslog.severity.name", "info")):
        query = json.dumps({"query": {"term": {name: value}}}).encode()
        search = urllib.request.Request(es_url + "/haproxy-*/_search", data=query,
                                        headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(search, timeout=10) as response:
            hits = json.loads(response.read())["hits"]["total"]["value"]
        assert hits == 1, name
