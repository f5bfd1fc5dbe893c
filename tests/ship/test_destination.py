"""The default output (issue 26, item 2): a data stream with a lifecycle policy where the server
has data streams (a fake Elasticsearch 8 that has them), daily indices where it has not (osmem,
and a fake OpenSearch that refuses them); the template installed at start once, a different one
left alone without `template_overwrite`; the receive-time window only where index names carry
the date."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from receiver.config import ElasticsearchSettings, ParseSettings
from receiver.ship.destination import (
    DEFAULT_DATA_STREAM,
    parse_settings_for,
    resolve,
    window_applies,
)
from receiver.ship.elasticsearch import ElasticsearchOutput
from receiver.ship.setup import setup_at_start
from receiver.ship.template import build_template
from tests.fakes.es_server import FakeElasticsearch
from tests.ship.harness import FAST, running_shipper
from tests.ship.memory_spool import MemorySpool, document
from tests.support import http_json, wait_for

STREAM_TEMPLATE = ("_index_template", "haproxy-receiver-logs-haproxy-default")


def defaults(url: str, **changes: Any) -> ElasticsearchSettings:
    """The default settings (destination `auto`, `setup_on_start`), fast batches."""
    fast = {k: v for k, v in FAST.items() if k != "setup_on_start"}
    return dataclasses.replace(ElasticsearchSettings(), hosts=[url], **{**fast, **changes})


@pytest.fixture
def fake() -> Iterator[FakeElasticsearch]:
    server = FakeElasticsearch.start("es8")
    yield server
    server.close()


def ship(settings: ElasticsearchSettings, count: int, tmp_path: Path) -> None:
    spool = MemorySpool([document(i) for i in range(count)])
    with running_shipper(settings, spool, tmp_path):
        wait_for(lambda: spool.acknowledged_records() == count, 30, f"{count} acknowledged")


def template_puts(fake: FakeElasticsearch) -> int:
    return sum(1 for r in fake.requests if r.method == "PUT" and "_index_template" in r.path)


def test_the_default_output_is_a_data_stream_with_a_lifecycle_and_its_template_installed_once(
        fake: FakeElasticsearch, tmp_path: Path) -> None:
    ship(defaults(fake.url), 5, tmp_path)
    assert {index for index, _ in fake.documents.values()} == {DEFAULT_DATA_STREAM}
    assert DEFAULT_DATA_STREAM in fake.streams
    template = fake.stored[STREAM_TEMPLATE]
    assert template["data_stream"] == {} and template["index_patterns"] == [DEFAULT_DATA_STREAM]
    assert template["template"]["settings"]["index"]["lifecycle"] == {"name": "haproxy-receiver"}
    policy = fake.stored[("_ilm/policy", "haproxy-receiver")]["policy"]
    assert "rollover" in policy["phases"]["hot"]["actions"]
    assert template_puts(fake) == 1
    ship(defaults(fake.url), 3, tmp_path)  # a restart: the template is there, nothing is put
    assert template_puts(fake) == 1
    assert not any("haproxy-20" in index for index, _ in fake.documents.values())


def test_a_different_template_is_left_as_it_is_unless_overwrite_is_set(
        fake: FakeElasticsearch, caplog: pytest.LogCaptureFixture) -> None:
    theirs = {"index_patterns": [DEFAULT_DATA_STREAM], "data_stream": {}, "priority": 500,
              "template": {"settings": {"number_of_shards": 3}}}
    fake.stored[STREAM_TEMPLATE] = theirs
    for overwrite in (False, True):
        settings = defaults(fake.url, template_overwrite=overwrite)
        output = ElasticsearchOutput(settings)
        try:
            with caplog.at_level(logging.WARNING):
                steps = setup_at_start(output, settings)
        finally:
            output.close()
        (step,) = [s for s in steps if "index template" in s.what]
        if not overwrite:
            assert not step.changed and "left as it is" in step.note
            assert fake.stored[STREAM_TEMPLATE] == theirs
            assert "template_overwrite" in caplog.text
        else:
            assert step.changed and fake.stored[STREAM_TEMPLATE] != theirs


def test_a_server_that_refuses_data_streams_gets_daily_indices(tmp_path: Path) -> None:
    with FakeElasticsearch.start("opensearch", data_streams=False) as fake:
        ship(defaults(fake.url), 4, tmp_path)
        indices = {index for index, _ in fake.documents.values()}
        assert indices == {time.strftime("haproxy-%Y.%m.%d", time.gmtime())} or all(
            index.startswith("haproxy-20") for index in indices)
        assert STREAM_TEMPLATE not in fake.stored  # made for the data stream, removed again
        assert fake.stored[("_index_template", "haproxy-receiver")]["index_patterns"] == ["haproxy-*"]


def test_elasticsearch_before_7_9_gets_daily_indices_without_being_asked(tmp_path: Path) -> None:
    with FakeElasticsearch.start("es7.8") as fake:
        ship(defaults(fake.url), 3, tmp_path)
        assert all(index.startswith("haproxy-20") for index, _ in fake.documents.values())
        assert not any("_data_stream" in r.path for r in fake.requests)
        assert STREAM_TEMPLATE not in fake.stored


def test_osmem_keeps_working_with_daily_indices(es_url: str, tmp_path: Path) -> None:
    """osmem-server (the test server) has no data streams: the default falls back."""
    ship(defaults(es_url), 6, tmp_path)
    http_json("POST", f"{es_url}/haproxy-*/_refresh")
    assert http_json("POST", f"{es_url}/haproxy-*/_count")["count"] == 6
    templates = json.dumps(http_json("GET", f"{es_url}/_index_template"))
    assert '"haproxy-receiver"' in templates and "logs-haproxy-default" not in templates


class _AnotherWorkerRemovesItsTemplate(ElasticsearchOutput):
    """Our output, but just before its first `PUT /_data_stream` another worker of the same
    receiver (refused by the server) removes the data stream's template it had installed."""

    def __init__(self, settings: ElasticsearchSettings, server_url: str) -> None:
        super().__init__(settings)
        self.server_url = server_url
        self.removed = False

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        if method == "PUT" and path.startswith("/_data_stream/") and not self.removed:
            self.removed = True
            http_json("DELETE", f"{self.server_url}/_index_template/{STREAM_TEMPLATE[1]}")
        return super().request(method, path, body)


@pytest.mark.parametrize("found", [True, False], ids=["found_theirs", "installed_too"])
def test_two_workers_asking_at_once_both_get_daily_indices_from_a_server_without_streams(
        es_url: str, found: bool) -> None:
    """Seen in tests/e2e/test_workers.py, tests/importer and tests/kafka: worker B found worker
    A's template (or installed it too, both looking before either put it), A was refused and
    removed it, B's PUT was answered 'no matching index template' (not a refusal of data
    streams) and B wrote to the data stream: every event it shipped was dead-lettered."""
    settings = defaults(es_url)
    if found:  # A's install, before B looks
        theirs = build_template(dataclasses.replace(settings, data_stream=DEFAULT_DATA_STREAM),
                                None)
        http_json("PUT", f"{es_url}/_index_template/{STREAM_TEMPLATE[1]}", theirs)
    output = _AnotherWorkerRemovesItsTemplate(settings, es_url)
    try:
        chosen = resolve(output, settings)
    finally:
        output.close()
    assert output.removed
    assert chosen.data_stream == ""  # daily indices, as for worker A
    templates = json.dumps(http_json("GET", f"{es_url}/_index_template"))
    assert "logs-haproxy-default" not in templates


def test_the_receive_time_window_applies_where_index_names_carry_the_date() -> None:
    parse = ParseSettings()
    dated = ElasticsearchSettings()  # daily indices
    stream = dataclasses.replace(dated, data_stream=DEFAULT_DATA_STREAM)
    static = dataclasses.replace(dated, index="haproxy")
    assert window_applies(dated) and parse_settings_for(dated, parse) == parse
    for settings in (stream, static):
        assert not window_applies(settings)
        lifted = parse_settings_for(settings, parse)
        assert (lifted.max_future, lifted.max_past) == (0.0, 0.0)
