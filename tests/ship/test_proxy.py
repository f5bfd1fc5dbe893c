"""Proxies: `elasticsearch.proxy` and HTTPS_PROXY/HTTP_PROXY/NO_PROXY from the environment, for
bulk, the probe and the Kibana import, through a real CONNECT proxy (tests/fakes), with the
proxy's credentials used and never logged."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from receiver.ship.elasticsearch import ElasticsearchOutput
from receiver.ship.errors import OutputUnavailable
from receiver.ship.http import proxy_for
from tests.fakes.connect_proxy import ConnectProxy
from tests.fakes.es_server import FakeElasticsearch
from tests.ship.harness import es_settings, running_shipper
from tests.ship.memory_spool import MemorySpool, document
from tests.support import tls_files, wait_for

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                   "all_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[FakeElasticsearch, str]]:
    cert, key, ca = tls_files(tmp_path)
    with FakeElasticsearch.start("es8", tls=(str(cert), str(key))) as server:
        yield server, str(ca)


def test_bulk_through_a_connect_proxy_with_credentials(
    https_server: tuple[FakeElasticsearch, str], tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    server, ca = https_server
    port = server.url.rsplit(":", 1)[1]
    with ConnectProxy.start(credentials=("squid", "pr0xy-pw")) as proxy:
        proxy_url = proxy.url.replace("http://", "http://squid:pr0xy-pw@")
        spool = MemorySpool([document(i) for i in range(30)])
        settings = es_settings([server.url], ca_file=ca, proxy=proxy_url)
        with running_shipper(settings, spool, tmp_path):
            wait_for(lambda: spool.acknowledged_records() == 30, what="acknowledged")
        assert len(server.documents) == 30
        assert proxy.lines()[0] == f"CONNECT 127.0.0.1:{port} HTTP/1.1"
        assert all(seen.authorised for seen in proxy.seen)
    assert "pr0xy-pw" not in caplog.text
    assert "through the proxy http://***@127.0.0.1" in caplog.text


def test_https_proxy_from_the_environment_and_no_proxy(
    https_server: tuple[FakeElasticsearch, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, ca = https_server
    with ConnectProxy.start() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        output = ElasticsearchOutput(es_settings([server.url], ca_file=ca))
        try:
            assert output.probe().describe() == "Elasticsearch 8.15.3"
        finally:
            output.close()
        assert len(proxy.seen) == 1
        monkeypatch.setenv("no_proxy", "localhost,127.0.0.0/8")
        output = ElasticsearchOutput(es_settings([server.url], ca_file=ca))
        try:
            assert output.probe().describe() == "Elasticsearch 8.15.3"
        finally:
            output.close()
        assert len(proxy.seen) == 1  # direct this time


def test_http_proxy_forwards_plain_http(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with FakeElasticsearch.start("es8") as server, ConnectProxy.start() as proxy:
        monkeypatch.setenv("http_proxy", proxy.url)
        spool = MemorySpool([document(i) for i in range(5)])
        with running_shipper(es_settings([server.url]), spool, tmp_path):
            wait_for(lambda: spool.acknowledged_records() == 5, what="acknowledged")
        assert len(server.documents) == 5
        assert any(line.startswith(f"POST {server.url}/_bulk") for line in proxy.lines())


def test_a_proxy_refusing_our_credentials_is_reported_without_them(
    https_server: tuple[FakeElasticsearch, str],
) -> None:
    server, ca = https_server
    with ConnectProxy.start(credentials=("squid", "right")) as proxy:
        proxy_url = proxy.url.replace("http://", "http://squid:wrong-pw-1@")
        output = ElasticsearchOutput(es_settings([server.url], ca_file=ca, proxy=proxy_url))
        try:
            with pytest.raises(OutputUnavailable) as refused:
                output.probe()
        finally:
            output.close()
    message = str(refused.value)
    assert "407" in message and "wrong-pw-1" not in message
    assert server.requests == []


def test_the_kibana_import_uses_the_same_proxy(tmp_path: Path) -> None:
    from receiver.kibana import import_dashboards
    from tests.fakes.kibana_server import running_kibana

    with running_kibana() as kibana, ConnectProxy.start(credentials=("k", "kpw-123")) as proxy:
        settings = es_settings(["http://127.0.0.1:9"], proxy=proxy.url.replace("//", "//k:kpw-123@"))
        result = import_dashboards(kibana.url, settings=settings)
        assert result.success
        assert any("/api/saved_objects/_import" in line for line in proxy.lines())


@pytest.mark.parametrize(("environ", "url", "expected"), [
    ({}, "https://es:9200", ""),
    ({"HTTPS_PROXY": "http://p:3128"}, "https://es:9200", "http://p:3128"),
    ({"HTTPS_PROXY": "http://up:1", "https_proxy": "http://low:2"}, "https://es", "http://low:2"),
    ({"HTTP_PROXY": "http://p:3128"}, "https://es:9200", ""),
    ({"ALL_PROXY": "socks5h://p:1080"}, "https://es:9200", "socks5h://p:1080"),
    ({"https_proxy": "http://p", "NO_PROXY": "*"}, "https://es", ""),
    ({"https_proxy": "http://p", "no_proxy": "example.org"}, "https://es.example.org", ""),
    ({"https_proxy": "http://p", "no_proxy": ".example.org"}, "https://es.example.org", ""),
    ({"https_proxy": "http://p", "no_proxy": "example.org"}, "https://badexample.org", "http://p"),
    ({"https_proxy": "http://p", "no_proxy": "es:9200"}, "https://es:9200", ""),
    ({"https_proxy": "http://p", "no_proxy": "es:9300"}, "https://es:9200", "http://p"),
    ({"https_proxy": "http://p", "no_proxy": "10.0.0.0/8"}, "https://10.1.2.3:9200", ""),
    ({"https_proxy": "http://p", "no_proxy": "::1"}, "https://[::1]:9200", ""),
])
def test_which_proxy_the_environment_chooses(environ: dict[str, str], url: str, expected: str) -> None:
    assert proxy_for(url, "", environ) == expected
    assert proxy_for(url, "http://configured:1", environ) == "http://configured:1"
