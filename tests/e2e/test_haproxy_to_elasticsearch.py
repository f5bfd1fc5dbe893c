"""End to end with real parts: HAProxy (the shipped haproxy/ configs) → receiver → OpenSearch-
compatible server. The index must hold exactly the requests sent, typed."""

from __future__ import annotations

import http.client
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO, Backend, Receiver, free_port, haproxy, http_json, search_all, wait_for


@dataclass(frozen=True)
class Sent:
    method: str
    path: str
    status: int
    client_port: int


REQUESTS = [
    ("GET", "/", 200),
    ("GET", "/status/404", 404),
    ("POST", "/submit?x=1&y=two", 200),
    ("GET", "/status/503?retry=no", 503),
    ("HEAD", "/head", 200),
    ("DELETE", "/items/42", 200),
    ("GET", "/q?path=C:\\dir\\file.txt", 200),  # a backslash: HAProxy writes invalid JSON
    ("PUT", "/status/201", 201),
]


def send_requests(port: int) -> list[Sent]:
    sent = []
    for method, path, status in REQUESTS:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.connect()
        assert connection.sock is not None
        client_port = connection.sock.getsockname()[1]
        connection.request(method, path, body=b"payload" if method in ("POST", "PUT") else None)
        response = connection.getresponse()
        response.read()
        assert response.status == status
        connection.close()
        sent.append(Sent(method, path, status, client_port))
    return sent


EXPECTED_TYPES = {
    "@timestamp": "date", "source.ip": "ip", "source.port": "integer",
    "http.response.status_code": "integer", "haproxy.bytes_read": "long",
    "haproxy.total_time_ms": "long", "event.duration": "long",
    "haproxy.frontend_name": "keyword", "url.path": "keyword",
}


def assert_mapped_types(es_url: str, index: str) -> None:
    """The index template `setup_on_start` installed typed the fields (not dynamic guesses)."""
    properties = http_json("GET", f"{es_url}/{index}/_mapping")[index]["mappings"]["properties"]
    for dotted, expected in EXPECTED_TYPES.items():
        node: dict[str, Any] = {"properties": properties}
        for part in dotted.split("."):
            node = node["properties"][part]
        assert node["type"] == expected, (dotted, node)


def requests_indexed(es_url: str) -> list[dict[str, Any]]:
    """Hits of HTTP requests (HAProxy's own start-up lines are not requests)."""
    return [hit for hit in search_all(es_url) if "http.request.method" in hit["_source"]]


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend()
    yield server
    server.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_every_request_is_indexed_once_and_typed(
    transport: str, tmp_path: Path, es_url: str, backend: Backend
) -> None:
    receiver = Receiver(tmp_path, es_url,
                        env={"HAPROXY_RECEIVER_ELASTICSEARCH__SETUP_ON_START": "true"}).start()
    frontend_port = free_port()
    port = receiver.udp_port if transport == "udp" else receiver.tcp_port
    env = {"RECEIVER_ADDR": f"127.0.0.1:{port}", "FRONTEND_BIND": f"127.0.0.1:{frontend_port}",
           "BACKEND_ADDR": f"127.0.0.1:{backend.port}"}
    try:
        with haproxy(REPO / "haproxy" / f"json-{transport}.cfg", env, tmp_path):
            sent = send_requests(frontend_port)
            wait_for(lambda: len(requests_indexed(es_url)) >= len(sent), 30, "every request indexed")
        hits = search_all(es_url)
    finally:
        assert receiver.stop() == 0
    traffic = [hit for hit in hits if "http.request.method" in hit["_source"]]
    assert_mapped_types(es_url, traffic[0]["_index"])
    assert len(traffic) == len(sent), [h["_source"].get("event.original") for h in hits]
    assert len({hit["_id"] for hit in hits}) == len(hits)
    by_port = {hit["_source"]["source.port"]: hit for hit in traffic}
    for request in sent:
        hit = by_port[request.client_port]
        doc = hit["_source"]
        assert re.fullmatch(r"haproxy-\d{4}\.\d{2}\.\d{2}", hit["_index"])
        assert doc["http.request.method"] == request.method
        assert doc["url.path"] == request.path.split("?")[0]
        assert doc["http.response.status_code"] == request.status
        assert isinstance(doc["haproxy.bytes_read"], int) and doc["haproxy.bytes_read"] > 0
        assert ipaddress.ip_address(doc["source.ip"]) == ipaddress.ip_address("127.0.0.1")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["@timestamp"])
        assert doc["haproxy.frontend_name"] == "fe_http"
        assert doc["haproxy.backend_name"] == "be_app"
        assert doc["haproxy.server_name"] == "app1"
        assert isinstance(doc["haproxy.total_time_ms"], int)
        assert doc["event.duration"] == doc["haproxy.total_time_ms"] * 1_000_000
        # parse.keep_original is off by default: the body stays only where something was repaired
        assert ("event.original" in doc) == bool(doc.get("tags")), doc
        if "?" in request.path:
            assert doc["url.query"] == request.path.split("?", 1)[1]
