"""The TLS matrix, built with trustme: where trust comes from (OS store through SSL_CERT_FILE or
SSL_CERT_DIR, certifi, ca_file, ca_dir, a fingerprint), client certificates with an encrypted
key, and what must be refused (unknown CA, wrong host name, expired, TLS 1.1, below
tls_min_version). Each case against a real HTTPS server; the probe and bulk share the one
TlsConfig, so the headline cases go through the shipper too."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import logging
import re
import ssl
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

import receiver.ship.http as http
from receiver.config import ConfigError, Seconds, load_settings
from receiver.ship.elasticsearch import ElasticsearchOutput
from receiver.ship.errors import OutputError, OutputUnavailable
from tests.fakes.es_server import FakeElasticsearch
from tests.ship.harness import es_settings, running_shipper
from tests.ship.memory_spool import MemorySpool, document
from tests.support import wait_for


@dataclasses.dataclass
class Pki:
    ca: trustme.CA
    dir: Path

    def write(self, name: str, data: bytes) -> str:
        path = self.dir / name
        path.write_bytes(data)
        return str(path)

    @property
    def ca_file(self) -> str:
        return self.write("ca.pem", self.ca.cert_pem.bytes())

    def server(self, *names: str, chain: bool = False, **options: Any) -> ssl.SSLContext:
        """A server context for a certificate of `names` (`chain`: the CA sent along, as
        Elasticsearch 8's auto-configuration does)."""
        leaf = self.ca.issue_cert(*(names or ("127.0.0.1",)), **options)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        pems = leaf.private_key_and_cert_chain_pem.bytes()
        if chain:
            pems += self.ca.cert_pem.bytes()
        context.load_cert_chain(self.write(f"server-{id(leaf)}.pem", pems))
        self.leaf = leaf
        return context


@pytest.fixture
def pki(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pki]:
    """A fresh CA, and a machine that trusts nothing: no OS store, an empty certifi bundle."""
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-such-file.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "no-such-dir"))
    monkeypatch.setattr(http, "_CERTIFI", [b""])
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    yield Pki(trustme.CA(), tmp_path)


def probe(url: str, **settings: Any) -> str:
    """`GET /` through the output: the server's description, or the refusal's message."""
    output = ElasticsearchOutput(es_settings([url], **settings))
    try:
        return output.probe().describe()
    except OutputUnavailable as error:
        return f"refused: {error}"
    finally:
        output.close()


def fingerprint(pem: bytes) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.decode())).hexdigest()


# --- where trust comes from -------------------------------------------------------------------

def test_ca_file_and_the_api_key_header(pki: Pki, tmp_path: Path) -> None:
    with FakeElasticsearch.start("es9", tls=pki.server()) as server:
        spool = MemorySpool([document(i) for i in range(5)])
        settings = es_settings([server.url], ca_file=pki.ca_file, api_key="id1:secret1")
        with running_shipper(settings, spool, tmp_path):
            wait_for(lambda: spool.acknowledged_records() == 5, what="acknowledged")
        assert len(server.documents) == 5
        expected = "ApiKey " + base64.b64encode(b"id1:secret1").decode()
        assert server.bulk_requests()[0].headers["authorization"] == expected


def test_a_ca_only_in_the_os_store_serves_the_probe_and_bulk(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 18's case: trusted through SSL_CERT_FILE (a company CA in the OS store)."""
    monkeypatch.setenv("SSL_CERT_FILE", pki.ca_file)
    with FakeElasticsearch.start("es8", tls=pki.server()) as server:
        spool = MemorySpool([document(i) for i in range(20)])
        with running_shipper(es_settings([server.url]), spool, tmp_path) as run:
            wait_for(lambda: spool.acknowledged_records() == 20, what="acknowledged")
            assert run.value("bulk_requests_total", outcome="connection_error") == 0
        assert len(server.documents) == 20


def test_a_ca_only_in_the_os_certificate_directory(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    directory = tmp_path / "certs"
    directory.mkdir()
    (directory / "company-ca.pem").write_bytes(pki.ca.cert_pem.bytes())
    subprocess.run(["openssl", "rehash", str(directory)], check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_DIR", str(directory))
    with FakeElasticsearch.start("es8", tls=pki.server()) as server:
        assert probe(server.url) == "Elasticsearch 8.15.3"


def test_a_ca_only_in_certifi(pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "_CERTIFI", [pki.ca.cert_pem.bytes()])
    with FakeElasticsearch.start("es8", tls=pki.server()) as server:
        assert probe(server.url) == "Elasticsearch 8.15.3"


def test_ca_file_replaces_the_default_trust(
    pki: Pki, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", pki.ca_file)  # the OS would trust it...
    other = Pki(trustme.CA(), pki.dir / "other")
    other.dir.mkdir()
    with FakeElasticsearch.start("es8", tls=pki.server()) as server:
        answer = probe(server.url, ca_file=other.ca_file)  # ...but only this CA counts
    assert answer.startswith("refused:") and "certificate" in answer


def test_ca_dir_in_openssl_hashed_layout(pki: Pki, tmp_path: Path) -> None:
    directory = tmp_path / "cas"
    directory.mkdir()
    (directory / "ca.pem").write_bytes(pki.ca.cert_pem.bytes())
    subprocess.run(["openssl", "rehash", str(directory)], check=True, capture_output=True)
    with FakeElasticsearch.start("opensearch", tls=pki.server()) as server:
        assert probe(server.url, ca_dir=str(directory)) == "OpenSearch 2.18.0"


@pytest.mark.parametrize("which", ["ca", "leaf"])
def test_a_trusted_fingerprint_as_elasticsearch_8_prints_it(pki: Pki, which: str) -> None:
    context = pki.server(chain=True)
    pem = pki.ca.cert_pem.bytes() if which == "ca" else pki.leaf.cert_chain_pems[0].bytes()
    digits = fingerprint(pem).upper()
    printed = ":".join(digits[i : i + 2] for i in range(0, 64, 2)) if which == "leaf" else digits
    with FakeElasticsearch.start("es8", tls=context) as server:
        assert probe(server.url, ca_trusted_fingerprint=printed) == "Elasticsearch 8.15.3"


def test_a_fingerprint_nothing_matches_is_refused_naming_what_was_presented(pki: Pki) -> None:
    with FakeElasticsearch.start("es8", tls=pki.server(chain=True)) as server:
        answer = probe(server.url, ca_trusted_fingerprint="ab" * 32)
    assert answer.startswith("refused:")
    assert "matches elasticsearch.ca_trusted_fingerprint" in answer
    assert fingerprint(pki.ca.cert_pem.bytes()) in answer


def test_the_host_name_is_checked_even_with_a_fingerprint(pki: Pki) -> None:
    with FakeElasticsearch.start("es8", tls=pki.server("es.example.org", chain=True)) as server:
        answer = probe(server.url, ca_trusted_fingerprint=fingerprint(pki.ca.cert_pem.bytes()))
    assert answer.startswith("refused:") and "127.0.0.1" in answer


def test_a_client_certificate_with_an_encrypted_key(pki: Pki) -> None:
    context = pki.server()
    context.verify_mode = ssl.CERT_REQUIRED
    pki.ca.configure_trust(context)
    client = pki.ca.issue_cert("haproxy-receiver@example.org")
    cert = pki.write("client.pem", client.cert_chain_pems[0].bytes())
    key = serialization.load_pem_private_key(client.private_key_pem.bytes(), None)
    encrypted = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"key-pass-7"))
    key_file = pki.write("client.key", encrypted)
    with FakeElasticsearch.start("es8", tls=context) as server:
        without = probe(server.url, ca_file=pki.ca_file)
        wrong = probe(server.url, ca_file=pki.ca_file, client_cert=cert, client_key=key_file,
                      client_key_passphrase="not-it")
        right = probe(server.url, ca_file=pki.ca_file, client_cert=cert, client_key=key_file,
                      client_key_passphrase="key-pass-7")
    assert without.startswith("refused:")
    assert wrong.startswith("refused:") and "not-it" not in wrong
    assert right == "Elasticsearch 8.15.3"


# --- what must be refused ---------------------------------------------------------------------

def test_an_unknown_ca_is_refused_for_probe_and_bulk(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    with FakeElasticsearch.start("es8", tls=pki.server()) as server:
        spool = MemorySpool([document(1)])
        with running_shipper(es_settings([server.url]), spool, tmp_path,
                             drain_seconds=0.1) as run:
            wait_for(lambda: run.value("bulk_requests_total", outcome="connection_error") >= 2,
                     what="refused TLS handshakes")
        assert spool.acknowledged_records() == 0
        assert server.documents == {} and server.requests == []
    assert "certificate" in caplog.text.lower()


def test_a_wrong_host_name_is_refused(pki: Pki) -> None:
    with FakeElasticsearch.start("es8", tls=pki.server("es.example.org")) as server:
        answer = probe(server.url, ca_file=pki.ca_file)
    assert answer.startswith("refused:") and "127.0.0.1" in answer


def test_an_expired_certificate_is_refused(pki: Pki) -> None:
    now = datetime.datetime.now(datetime.UTC)
    context = pki.server(not_before=now - datetime.timedelta(days=30),
                         not_after=now - datetime.timedelta(days=1))
    with FakeElasticsearch.start("es8", tls=context) as server:
        answer = probe(server.url, ca_file=pki.ca_file)
    assert answer.startswith("refused:") and "expired" in answer


def test_a_tls_1_1_server_is_refused(pki: Pki) -> None:
    context = pki.server()
    with warnings.catch_warnings():  # deprecated: the point of the test
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 would refuse TLS 1.1 itself
    with FakeElasticsearch.start("es8", tls=context) as server:
        answer = probe(server.url, ca_file=pki.ca_file)
    assert answer.startswith("refused:")
    assert "version" in answer.lower() or "protocol" in answer.lower()


def test_tls_min_version_1_3_refuses_a_tls_1_2_server(pki: Pki) -> None:
    context = pki.server()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with FakeElasticsearch.start("es8", tls=context) as server:
        refused = probe(server.url, ca_file=pki.ca_file, tls_min_version="1.3")
        accepted = probe(server.url, ca_file=pki.ca_file)
    assert refused.startswith("refused:") and accepted == "Elasticsearch 8.15.3"


def test_without_verification_a_warning_and_no_secret_in_the_log(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    with FakeElasticsearch.start("es8", tls=pki.server("es.example.org")) as server:
        spool = MemorySpool([document(1)])
        settings = es_settings([server.url], verify_certs=False, bearer_token="tok-123456789")
        with running_shipper(settings, spool, tmp_path):
            wait_for(lambda: spool.acknowledged_records() == 1, what="acknowledged")
        assert server.bulk_requests()[0].headers["authorization"] == "Bearer tok-123456789"
    assert "NOT verified" in caplog.text
    assert "tok-123456789" not in caplog.text


# --- settings -------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "value", "message"), [
    ("ca_file", "/no/such/ca.pem", "elasticsearch.ca_file = '/no/such/ca.pem': no readable file"),
    ("ca_dir", "/no/such/dir", "elasticsearch.ca_dir = '/no/such/dir' is not a directory"),
    ("client_cert", "/no/such/cert.pem", "elasticsearch.client_cert = '/no/such/cert.pem'"),
])
def test_tls_files_that_cannot_be_read_stop_the_output_naming_the_setting(
    key: str, value: str, message: str,
) -> None:
    """Checked where they are used, not in the configuration: `check-config` and CI validate
    configurations on machines without those files."""
    settings = load_settings(env={"HAPROXY_RECEIVER_ELASTICSEARCH__HOSTS": "https://es:9200",
                                  f"HAPROXY_RECEIVER_ELASTICSEARCH__{key.upper()}": value})
    with pytest.raises(OutputError, match=re.escape(message)):
        ElasticsearchOutput(settings.elasticsearch)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("ca_trusted_fingerprint", "abc", "64 hex digits"),
    ("tls_min_version", "1.1", "allowed: 1.2, 1.3"),
    ("proxy", "ftp://proxy:21", "not a proxy URL"),
    ("client_key_passphrase", "x", "no client_key"),
])
def test_wrong_tls_settings_are_refused_at_start(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env={f"HAPROXY_RECEIVER_ELASTICSEARCH__{key.upper()}": value})


# --- Elastic Cloud ----------------------------------------------------------------------------

def cloud_id(name: str, host: str, es_uuid: str, kibana_uuid: str = "kb") -> str:
    return name + ":" + base64.b64encode(f"{host}${es_uuid}${kibana_uuid}".encode()).decode()


@pytest.mark.parametrize(("value", "url"), [
    # elasticsearch-py's own example: no port means 443.
    ("cluster:dXMtZWFzdC0xLmF3cy5mb3VuZC5pbyRjZWM2ZjI2MWE3NGJmMjRjZTMzYmI4ODExYjg0Mjk0ZiRjNmMy"
     "Y2E2ZDA0MjI0OWFmMGNjN2Q3YTllOTYyNTc0Mw==",
     "https://cec6f261a74bf24ce33bb8811b84294f.us-east-1.aws.found.io:443"),
    (cloud_id("prod", "eu-west-1.aws.found.io:9243", "abc123"),
     "https://abc123.eu-west-1.aws.found.io:9243"),
])
def test_cloud_id_is_decoded_as_the_official_clients_do(value: str, url: str) -> None:
    settings = load_settings(env={"HAPROXY_RECEIVER_ELASTICSEARCH__CLOUD_ID": value})
    assert settings.elasticsearch.hosts == [url]


@pytest.mark.parametrize(("env", "message"), [
    ({"CLOUD_ID": "prod:bm90IGEgY2xvdWQgaWQ="}, "not an Elastic Cloud ID"),
    ({"CLOUD_ID": cloud_id("p", "h.io", "e"), "HOSTS": "https://es:9200"}, "set one of them"),
])
def test_a_wrong_cloud_id_is_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env={f"HAPROXY_RECEIVER_ELASTICSEARCH__{k}": v for k, v in env.items()})


def test_shipping_to_a_cloud_id_with_an_api_key(pki: Pki, tmp_path: Path) -> None:
    """`<uuid>.localhost` is loopback for libcurl (RFC 6761): a cloud deployment on this host."""
    with FakeElasticsearch.start("es8", tls=pki.server("es-1234.localhost")) as server:
        port = server.url.rsplit(":", 1)[1]
        settings = load_settings(env={
            "HAPROXY_RECEIVER_ELASTICSEARCH__CLOUD_ID": cloud_id("c", f"localhost:{port}", "es-1234"),
            "HAPROXY_RECEIVER_ELASTICSEARCH__API_KEY": "cloud-key-id:cloud-key-secret",
            "HAPROXY_RECEIVER_ELASTICSEARCH__CA_FILE": pki.ca_file,
        }).elasticsearch
        spool = MemorySpool([document(i) for i in range(3)])
        with running_shipper(dataclasses.replace(settings, batch_age=Seconds(0.05)), spool, tmp_path):
            wait_for(lambda: spool.acknowledged_records() == 3, what="acknowledged")
        assert len(server.documents) == 3
        assert server.bulk_requests()[0].headers["authorization"] == "ApiKey " + base64.b64encode(
            b"cloud-key-id:cloud-key-secret").decode()
        assert server.bulk_requests()[0].headers["host"] == f"es-1234.localhost:{port}"
