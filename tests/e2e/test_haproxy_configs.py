"""The shipped HAProxy configurations (haproxy/*.cfg), each run with the real HAProxy 2.6 binary
against the real receiver and an OpenSearch-compatible server: the index must hold exactly the
requests sent through it, with their method, path, status and client port (and the captured
headers for httplog). The HAProxy 3.x file cannot run here: its lines, as HAProxy 3.x writes
them, go through the receiver's parser instead."""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.parse.helpers import parse
from tests.support import REPO, Backend, Receiver, free_port, haproxy, haproxy_binary, search_all, wait_for

CONFIGS = REPO / "haproxy"
# Run end to end by tests/e2e/test_haproxy_to_elasticsearch.py; not repeated here.
COVERED_ELSEWHERE = {"json-udp.cfg", "json-tcp.cfg"}
USER_AGENT = 'probe/1.0 "quoted" {brace} |pipe| back\\slash'
BACKSLASH_PATH = "/q?path=C:\\dir\\file.txt"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    status: int


REQUESTS = [
    Request("GET", "/", 200),
    Request("GET", "/status/404", 404),
    Request("POST", "/submit?x=1&y=two", 200),
    Request("GET", "/status/503?retry=no", 503),
    Request("HEAD", "/head", 200),
    Request("DELETE", "/items/42", 200),
    Request("GET", BACKSLASH_PATH, 200),  # HAProxy 2.6 writes invalid JSON for `\`
    Request("GET", '/say?text="hi"', 200),  # `"` is logged as #22 (or \" by json())
    Request("PUT", "/status/201", 201),
]


@dataclass(frozen=True)
class Sent:
    request: Request
    client_port: int


@dataclass(frozen=True)
class Case:
    """One shipped configuration and how the receiver must listen to pair with it."""

    config: str
    listener: str  # udp | tcp | unix | tls
    syslog_format: str = "local"
    json_valid: bool = False  # valid JSON by construction: never repaired
    capture_names: tuple[str, ...] = ()
    hostname_in_header: bool = False
    client_ca: bool = False  # the TLS receiver requires client certificates (tls_client_ca)


HTTP_CASES = [
    Case("json-unix.cfg", "unix"),
    Case("json-converter-udp.cfg", "udp", json_valid=True),
    Case("httplog-udp.cfg", "udp", syslog_format="rfc5424", capture_names=("Host", "User-Agent")),
    Case("aggregator-tcp.cfg", "tcp", syslog_format="rfc5424", hostname_in_header=True),
    Case("aggregator-tls.cfg", "tls", syslog_format="rfc5424", hostname_in_header=True),
    Case("aggregator-tls.cfg", "tls", syslog_format="rfc5424", hostname_in_header=True,
         client_ca=True),
]


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend()
    yield server
    server.close()


def _tls_files(workdir: Path) -> dict[str, Path]:
    """A CA, a server certificate for `localhost` and 127.0.0.1 and a client certificate
    (certificate and key in one PEM, as HAProxy's `crt` wants it), made for this test."""
    authority = trustme.CA()
    server = authority.issue_cert("localhost", "127.0.0.1")
    files = {"ca": workdir / "ca.pem", "ca_key": workdir / "ca.key",
             "cert": workdir / "server.pem", "key": workdir / "server.key",
             "client": workdir / "client.pem"}
    authority.cert_pem.write_to_path(str(files["ca"]))
    authority.private_key_pem.write_to_path(str(files["ca_key"]))
    client = authority.issue_cert("haproxy-1.example")
    client.private_key_and_cert_chain_pem.write_to_path(str(files["client"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    for blob in server.cert_chain_pems[1:]:
        blob.write_to_path(str(files["cert"]), append=True)
    return files


def start_receiver(case: Case, workdir: Path, es_url: str) -> tuple[Receiver, dict[str, str]]:
    """The receiver listening the way `case` needs, and the environment for HAProxy's file.
    Its UDP and TCP listeners stay on (free ports, idle) whatever the case: `Receiver(udp=False)`
    passes `--udp ""`, which the CLI refuses."""
    env = {"HAPROXY_RECEIVER_PARSE__CAPTURE_REQUEST_HEADERS": ",".join(case.capture_names),
           "HAPROXY_RECEIVER_PARSE__KEEP_ORIGINAL": "true"}  # the checks match bodies
    if case.listener == "udp":
        receiver = Receiver(workdir, es_url, env=env)
        target = {"RECEIVER_ADDR": f"127.0.0.1:{receiver.udp_port}"}
    elif case.listener == "tcp":
        receiver = Receiver(workdir, es_url, env=env)
        target = {"RECEIVER_ADDR": f"127.0.0.1:{receiver.tcp_port}"}
    elif case.listener == "unix":
        socket_path = workdir / "log.sock"
        assert len(str(socket_path)) < 100, "AF_UNIX paths are limited to 108 bytes"
        receiver = Receiver(workdir, es_url, env=env, extra=["--unix", str(socket_path)])
        target = {"RECEIVER_SOCKET": str(socket_path)}
    else:
        files = _tls_files(workdir)
        port = free_port()
        env |= {"HAPROXY_RECEIVER_LISTEN__TLS": f"127.0.0.1:{port}",
                "HAPROXY_RECEIVER_LISTEN__TLS_CERT": str(files["cert"]),
                "HAPROXY_RECEIVER_LISTEN__TLS_KEY": str(files["key"])}
        if case.client_ca:
            env["HAPROXY_RECEIVER_LISTEN__TLS_CLIENT_CA"] = str(files["ca"])
        receiver = Receiver(workdir, es_url, env=env)
        target = {"RECEIVER_ADDR": f"127.0.0.1:{port}", "RECEIVER_CA": str(files["ca"]),
                  "RECEIVER_NAME": "localhost", "CLIENT_PEM": str(files["client"])}
    return receiver.start(), target


def send(port: int, requests: list[Request]) -> list[Sent]:
    sent = []
    for request in requests:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.connect()
        assert connection.sock is not None
        client_port = connection.sock.getsockname()[1]
        body = b"payload" if request.method in ("POST", "PUT") else None
        connection.request(request.method, request.path, body=body,
                           headers={"User-Agent": USER_AGENT})
        response = connection.getresponse()
        response.read()
        assert response.status == request.status, request
        connection.close()
        sent.append(Sent(request, client_port))
    return sent


def client_ports(es_url: str) -> set[int]:
    return {hit["_source"].get("source.port") for hit in search_all(es_url)} - {None}


def with_client_certificate(workdir: Path, pem: str) -> Path:
    """aggregator-tls.cfg with `crt` added to the ring's server line, as its comments say."""
    text = (CONFIGS / "aggregator-tls.cfg").read_text()
    server_line = next(line for line in text.splitlines() if line.startswith("    server receiver"))
    assert " crt " not in server_line
    config = workdir / "aggregator-tls-client-cert.cfg"
    config.write_text(text.replace(server_line, f"{server_line} crt {pem}"))
    return config


def run_through_haproxy(case: Case, workdir: Path, es_url: str, backend: Backend,
                        requests: list[Request]) -> tuple[list[Sent], list[dict[str, Any]], int]:
    """Start the receiver and HAProxy with `case.config`, send `requests`, wait until each is
    indexed, stop both; return what was sent, every indexed hit and the frontend port."""
    receiver, target = start_receiver(case, workdir, es_url)
    config = CONFIGS / case.config
    if case.client_ca:
        config = with_client_certificate(workdir, target["CLIENT_PEM"])
    frontend_port = free_port()
    env = {**target, "FRONTEND_BIND": f"127.0.0.1:{frontend_port}",
           "BACKEND_ADDR": f"127.0.0.1:{backend.port}"}
    try:
        with haproxy(config, env, workdir):
            sent = send(frontend_port, requests)
            wanted = {s.client_port for s in sent}
            wait_for(lambda: wanted <= client_ports(es_url), 20,
                     f"{len(sent)} requests indexed through {case.config} "
                     f"(receiver stderr: {receiver.stderr_path})")
    finally:
        assert receiver.stop() == 0, receiver.stderr()
    return sent, search_all(es_url), frontend_port


def account_for_every_hit(hits: list[dict[str, Any]], sent: list[Sent]) -> dict[int, dict[str, Any]]:
    """Every indexed document is one of: exactly one per request sent (returned, keyed by
    client port); HAProxy's own messages (`Proxy fe_http stopped ...`), each once; the line of
    the connection that only checked HAProxy was listening (tests.support.haproxy), which
    carried no request and no byte. `option dontlognull` would hide that last kind."""
    docs = [hit["_source"] for hit in hits]
    originals = [doc["event.original"] for doc in docs]
    assert len({hit["_id"] for hit in hits}) == len(hits)
    assert len(set(originals)) == len(originals), originals  # nothing arrives twice
    wanted = {s.client_port for s in sent}
    traffic = [doc for doc in docs if doc.get("source.port") in wanted]
    assert len(traffic) == len(sent), originals
    others = [doc for doc in docs if doc.get("source.port") not in wanted]
    probes = [doc for doc in others if doc["haproxy.log_format"] != "text"]
    assert len(probes) <= 1, originals
    for probe in probes:
        assert "http.request.method" not in probe, probe["event.original"]
        assert probe.get("http.response.bytes", probe.get("haproxy.bytes_read")) == 0, probe
    return {doc["source.port"]: doc for doc in traffic}


@pytest.mark.parametrize("case", HTTP_CASES,
                         ids=[c.config + (" + client certificate" if c.client_ca else "")
                              for c in HTTP_CASES])
def test_every_request_through_the_config_is_indexed_once(
    case: Case, tmp_path: Path, es_url: str, backend: Backend
) -> None:
    sent, hits, frontend_port = run_through_haproxy(case, tmp_path, es_url, backend, REQUESTS)
    docs = account_for_every_hit(hits, sent)
    for item in sent:
        doc = docs[item.client_port]
        request = item.request
        path, _, query = request.path.partition("?")
        context = doc["event.original"]
        assert doc["http.request.method"] == request.method, context
        assert doc["url.path"] == path, context
        assert doc.get("url.query", "") == query, context
        assert doc["http.response.status_code"] == request.status, context
        assert ipaddress.ip_address(doc["source.ip"]) == ipaddress.ip_address("127.0.0.1")
        assert doc["haproxy.frontend_name"] == "fe_http"
        assert doc["haproxy.backend_name"] == "be_app"
        assert doc["haproxy.server_name"] == "app1"
        assert doc["haproxy.syslog_format"] == case.syslog_format
        assert "_haproxy_parse_failure" not in doc.get("tags", []), context
        assert "_truncated" not in doc.get("tags", []), context
        repaired = "_json_repaired" in doc.get("tags", [])
        if case.json_valid or doc["haproxy.log_format"] != "json":
            assert not repaired, context
        else:  # HAProxy 2.6 leaves `\` unescaped in hand-built JSON: only that line is repaired
            assert repaired == ("\\" in request.path), context
        if case.capture_names:
            assert doc["user_agent.original"] == USER_AGENT, context
            assert doc["haproxy.http.request.headers.host"] == f"127.0.0.1:{frontend_port}"
        if case.hostname_in_header:  # `log-send-hostname`: which proxy of the group sent it
            assert doc["host.name"] == socket.gethostname(), context


def test_tcplog_config_logs_each_connection_once(
    tmp_path: Path, es_url: str, backend: Backend
) -> None:
    case = Case("tcplog-udp.cfg", "udp")
    requests = [Request("GET", "/", 200), Request("GET", "/status/404", 404),
                Request("POST", "/upload", 200)]
    sent, hits, _ = run_through_haproxy(case, tmp_path, es_url, backend, requests)
    docs = account_for_every_hit(hits, sent)
    for doc in docs.values():
        assert doc["haproxy.log_format"] == "tcplog", doc["event.original"]
        assert doc["haproxy.frontend_name"] == "fe_tcp"
        assert doc["haproxy.backend_name"] == "be_tcp"
        assert doc["haproxy.server_name"] == "srv1"
        assert ipaddress.ip_address(doc["source.ip"]) == ipaddress.ip_address("127.0.0.1")
        assert isinstance(doc["haproxy.bytes_read"], int) and doc["haproxy.bytes_read"] > 0
        assert isinstance(doc["haproxy.total_time_ms"], int)
        assert "http.request.method" not in doc


def test_aggregator_ring_holds_lines_until_the_receiver_is_up(
    tmp_path: Path, es_url: str, backend: Backend
) -> None:
    """aggregator-tcp.cfg: traffic logged while no receiver listens waits in HAProxy's ring
    and arrives once the receiver is up."""
    receiver = Receiver(tmp_path, es_url,  # its ports are chosen; nothing listens yet
                        env={"HAPROXY_RECEIVER_PARSE__KEEP_ORIGINAL": "true"})
    frontend_port = free_port()
    env = {"RECEIVER_ADDR": f"127.0.0.1:{receiver.tcp_port}",
           "FRONTEND_BIND": f"127.0.0.1:{frontend_port}", "BACKEND_ADDR": f"127.0.0.1:{backend.port}"}
    with haproxy(CONFIGS / "aggregator-tcp.cfg", env, tmp_path):
        sent = send(frontend_port, REQUESTS[:4])
        receiver.start()
        try:
            wanted = {s.client_port for s in sent}
            wait_for(lambda: wanted <= client_ports(es_url), 30, "the ring's lines after the start")
        finally:
            assert receiver.stop() == 0, receiver.stderr()
    docs = account_for_every_hit(search_all(es_url), sent)
    assert [docs[s.client_port]["url.original"] for s in sent] == [s.request.path for s in sent]


def test_tls_receiver_requiring_client_certificates_refuses_and_counts_haproxy_without_one(
    tmp_path: Path, es_url: str, backend: Backend
) -> None:
    receiver, target = start_receiver(
        Case("aggregator-tls.cfg", "tls", client_ca=True), tmp_path, es_url)
    frontend_port = free_port()
    env = {**target, "FRONTEND_BIND": f"127.0.0.1:{frontend_port}",
           "BACKEND_ADDR": f"127.0.0.1:{backend.port}"}
    try:
        with haproxy(CONFIGS / "aggregator-tls.cfg", env, tmp_path):  # no `crt`
            send(frontend_port, REQUESTS[:2])
            wait_for(lambda: receiver.metric("haproxy_receiver_connections_refused_total"), 5,
                     "the refused handshake to be counted")
    finally:
        assert receiver.stop() == 0, receiver.stderr()
    assert client_ports(es_url) == set()


class TlsServer:
    """A TLS listener standing in for the receiver, presenting `cert`: it records why each
    handshake failed and every byte a client managed to send after one succeeded."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(cert), str(key))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = int(self.listener.getsockname()[1])
        self.failures: list[str] = []
        self.received = b""
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                raw, _ = self.listener.accept()
            except TimeoutError:
                continue
            raw.settimeout(5)
            try:
                with self.context.wrap_socket(raw, server_side=True) as tls:
                    while chunk := tls.recv(65536):
                        self.received += chunk
            except (ssl.SSLError, OSError) as error:
                self.failures.append(str(getattr(error, "reason", None) or error))

    def close(self) -> None:
        self.running = False
        self.thread.join(5)
        self.listener.close()


@pytest.mark.parametrize("impostor", ["signed by another CA", "named for another host"])
def test_tls_aggregator_config_sends_nothing_to_an_unverified_receiver(
    impostor: str, tmp_path: Path, backend: Backend
) -> None:
    trusted = _tls_files(tmp_path)  # HAProxy trusts this CA, for the name `localhost`
    if impostor == "signed by another CA":
        certificate = trustme.CA().issue_cert("localhost", "127.0.0.1")
    else:
        certificate = trustme.CA.from_pem(trusted["ca"].read_bytes(), trusted["ca_key"].read_bytes()
                                          ).issue_cert("elsewhere.example")
    cert, key = tmp_path / "impostor.pem", tmp_path / "impostor.key"
    certificate.cert_chain_pems[0].write_to_path(str(cert))
    certificate.private_key_pem.write_to_path(str(key))
    server = TlsServer(cert, key)
    frontend_port = free_port()
    env = {"RECEIVER_ADDR": f"127.0.0.1:{server.port}", "RECEIVER_CA": str(trusted["ca"]),
           "RECEIVER_NAME": "localhost", "FRONTEND_BIND": f"127.0.0.1:{frontend_port}",
           "BACKEND_ADDR": f"127.0.0.1:{backend.port}"}
    try:
        with haproxy(CONFIGS / "aggregator-tls.cfg", env, tmp_path):
            send(frontend_port, REQUESTS[:2])  # traffic flows while the logs wait in the ring
            wait_for(lambda: server.failures, 20, "HAProxy to try the impostor and refuse it")
    finally:
        server.close()
    assert server.received == b"", server.received[:200]


def test_every_shipped_config_is_checked_and_tested(tmp_path: Path) -> None:
    """A new file in haproxy/ must pass `haproxy -c` without warnings and be run by a test.
    (json-3x.cfg is for 3.0+: 2.6's `haproxy -c` accepts it, which proves nothing.)"""
    tested = {case.config for case in HTTP_CASES} | COVERED_ELSEWHERE | {"tcplog-udp.cfg"}
    shipped = {path.name for path in CONFIGS.glob("*.cfg")}
    assert shipped - {"json-3x.cfg"} == tested
    binary = haproxy_binary()
    env = {"RECEIVER_SOCKET": str(tmp_path / "log.sock"),
           "RECEIVER_CA": str(_tls_files(tmp_path)["ca"])}
    for name in sorted(tested):
        check = subprocess.run([binary, "-c", "-f", str(CONFIGS / name)],
                               env=env, capture_output=True, text=True)
        assert check.returncode == 0, (name, check.stdout, check.stderr)
        assert "WARNING" not in check.stdout + check.stderr, (name, check.stderr)


# --- HAProxy 3.x: json-3x.cfg --------------------------------------------------------------
#
# Lines as HAProxy 3.x writes them for json-3x.cfg's log-format: with `%{+json}o` every named
# item becomes `"name": value`, items are joined by ", ", strings are quoted with `"` and `\`
# escaped by `\` (`"` in URIs is first encoded as `#22`, as in every HAProxy version), numbers
# stay numbers, an item that produced nothing is `null` (configuration.txt section 8.2.6 and
# src/log.c of HAProxy 3.0+). The first two are shaped after the documentation's example
# `log-format "%{+json}o %(request)r %(custom_expr)[str(custom)]"`.

HAPROXY3_DOC_EXAMPLE = '{"request": "GET /index.html HTTP/1.1", "custom_expr": "custom"}'
HAPROXY3_DOC_EXAMPLE_EMPTY = '{"request": "GET / HTTP/1.1", "custom_expr": null}'


def haproxy3_line(**overrides: Any) -> str:
    """One json-3x.cfg body for a normal request, with `overrides` (None -> null)."""
    fields: dict[str, Any] = {
        "ci": "127.0.0.1", "cp": 40634, "t": "25/Nov/2026:18:21:08.123", "ft": "fe_http",
        "b": "be_app", "s": "app1", "TR": 0, "Tw": 0, "Tc": 0, "Tr": 2, "Ta": 3, "Tt": 3,
        "ST": 200, "B": 161, "U": 78, "tsc": "----", "ac": 1, "fc": 1, "bc": 1, "sc": 1,
        "rc": 0, "sq": 0, "bq": 0, "hr": "{corpus.example|curl/8.5.0}",
        "r": "GET /q?a=1 HTTP/1.1", "HM": "GET", "HP": "/q", "HQ": "?a=1", "HV": "HTTP/1.1",
        "ID": "7F000001:9EBA_7F000001:1F90_6925F3A4_0001:2F1C",
    }
    fields.update(overrides)
    # json.dumps writes what HAProxy's encoder writes for these values: ", " and ": "
    # separators, `\"`/`\\` escapes, null for None, ASCII kept as is.
    return json.dumps(fields)


def syslog(body: str) -> str:
    return f"<134>Nov 25 18:21:08 haproxy[4242]: {body}\n"


def test_haproxy3_config_names_the_same_keys_as_the_26_json_config() -> None:
    """json-3x.cfg names each item after its alias: the keys of json-udp.cfg, so an upgrade
    to 3.x keeps every field name in Elasticsearch."""
    text = (CONFIGS / "json-3x.cfg").read_text()
    log_format = next(line for line in text.splitlines() if line.strip().startswith("log-format"))
    assert "%{+json}o" in log_format
    items = log_format.split('"')[1].split()[1:]
    for item in items:
        name, _, alias = item[2:].partition(")")
        assert item.startswith("%(") and name == alias, item


def test_haproxy3_json_line_is_typed_without_repair() -> None:
    doc = parse(syslog(haproxy3_line()), capture_request_headers=["Host", "User-Agent"])
    assert "tags" not in doc
    assert doc["haproxy.log_format"] == "json"
    assert doc["source.ip"] == "127.0.0.1"
    assert doc["source.port"] == 40634
    assert doc["@timestamp"] == "2026-11-25T18:21:08.123Z"
    assert doc["http.request.method"] == "GET"
    assert doc["url.path"] == "/q"
    assert doc["url.query"] == "a=1"
    assert doc["http.version"] == "1.1"
    assert doc["http.response.status_code"] == 200
    assert doc["haproxy.bytes_read"] == 161
    assert doc["http.request.bytes"] == 78
    assert doc["haproxy.frontend_name"] == "fe_http"
    assert doc["haproxy.server_name"] == "app1"
    assert doc["haproxy.termination_state"] == "----"
    assert doc["haproxy.connections.active"] == 1
    assert doc["haproxy.backend_queue"] == 0
    assert doc["event.duration"] == 3_000_000
    assert doc["haproxy.http.request.headers.host"] == "corpus.example"
    assert doc["user_agent.original"] == "curl/8.5.0"
    assert doc["http.request.id"] == "7F000001:9EBA_7F000001:1F90_6925F3A4_0001:2F1C"


def test_haproxy3_json_escapes_decode_to_the_request() -> None:
    # URI `/q?path=C:\dir&s="hi"`: `"` -> #22 (URL encoding), then `\` -> `\\` (JSON).
    uri = "/q?path=C:\\dir&s=#22hi#22"
    line = haproxy3_line(r=f"GET {uri} HTTP/1.1", HP="/q", HQ="?path=C:\\dir&s=#22hi#22",
                         hr='{corpus.example|probe #22quoted#22 #7Bbrace#7D back\\slash}')
    assert '\\\\dir' in line  # what HAProxy 3.x writes: an escaped backslash
    doc = parse(syslog(line), capture_request_headers=["Host", "User-Agent"])
    assert "tags" not in doc, doc.get("haproxy.repairs")
    assert doc["url.path"] == "/q"
    assert doc["url.query"] == 'path=C:\\dir&s="hi"'
    assert doc["user_agent.original"] == 'probe "quoted" {brace} back\\slash'


def test_haproxy3_json_failed_request_keeps_its_numbers() -> None:
    line = haproxy3_line(s="<NOSRV>", TR=-1, Tw=-1, Tc=-1, Tr=-1, Ta=1001, Tt=1001, ST=400,
                         B=0, U=0, tsc="CR--", hr="{|}", r="<BADREQ>", HM="<BADREQ>",
                         HP="<BADREQ>", HQ="<BADREQ>", HV="<BADREQ>")
    doc = parse(syslog(line))
    assert "_haproxy_parse_failure" not in doc.get("tags", [])
    assert doc["http.response.status_code"] == 400
    assert doc["haproxy.time_connect_ms"] == -1
    assert doc["haproxy.termination_state"] == "CR--"
    assert doc["event.outcome"] == "failure"
    assert doc["source.port"] == 40634


def test_haproxy3_config_on_26_passes_the_check_but_logs_no_fields(
    tmp_path: Path, es_url: str, backend: Backend
) -> None:
    """Why haproxy/README.md says "3.0+ only": HAProxy 2.6 accepts json-3x.cfg and then logs
    the item names as literal text."""
    receiver, target = start_receiver(Case("json-3x.cfg", "udp"), tmp_path, es_url)
    frontend_port = free_port()
    env = {**target, "FRONTEND_BIND": f"127.0.0.1:{frontend_port}",
           "BACKEND_ADDR": f"127.0.0.1:{backend.port}"}
    try:
        with haproxy(CONFIGS / "json-3x.cfg", env, tmp_path):
            send(frontend_port, REQUESTS[:1])
            hits = wait_for(lambda: search_all(es_url), 20, "the request's line")
    finally:
        assert receiver.stop() == 0, receiver.stderr()
    for hit in hits:  # the request's line, and the readiness probe's (tests.support.haproxy)
        doc = hit["_source"]
        body = doc.get("event.original") or doc["message"]  # a failure keeps it once: message
        assert body.startswith("(ci)ci (cp)cp (t)t"), body
        assert "source.port" not in doc and "http.request.method" not in doc


@pytest.mark.parametrize("body", [HAPROXY3_DOC_EXAMPLE, HAPROXY3_DOC_EXAMPLE_EMPTY])
def test_haproxy3_documentation_example_keeps_its_fields(body: str) -> None:
    doc = parse(syslog(body))
    assert doc["haproxy.log_format"] == "json"
    assert "tags" not in doc
    assert doc["event.original"] == body
    expected = json.loads(body)
    assert doc["haproxy.request"] == expected["request"]
    if expected["custom_expr"] is None:
        assert "haproxy.custom_expr" not in doc
    else:
        assert doc["haproxy.custom_expr"] == "custom"
