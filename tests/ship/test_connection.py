"""Connection settings: TLS verification, CA file, API key and bearer token headers."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import logging
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.fakes.es_server import FakeElasticsearch
from tests.ship.harness import es_settings, running_shipper
from tests.ship.memory_spool import MemorySpool, document
from tests.support import wait_for


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key) files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return paths


def test_tls_with_a_ca_file(tmp_path: Path) -> None:
    ca, cert, key = make_certificates(tmp_path)
    with FakeElasticsearch.start("es9", tls=(str(cert), str(key))) as server:
        spool = MemorySpool([document(i) for i in range(5)])
        settings = es_settings([server.url], ca_file=str(ca), api_key="id1:secret1")
        with running_shipper(settings, spool, tmp_path):
            wait_for(lambda: spool.acknowledged_records() == 5, what="acknowledged")
        assert len(server.documents) == 5
        expected = "ApiKey " + base64.b64encode(b"id1:secret1").decode()
        assert server.bulk_requests()[0].headers["authorization"] == expected


def test_tls_unknown_ca_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _ca, cert, key = make_certificates(tmp_path)
    with FakeElasticsearch.start("es8", tls=(str(cert), str(key))) as server:
        spool = MemorySpool([document(1)])
        with running_shipper(es_settings([server.url]), spool, tmp_path,
                             drain_seconds=0.1) as run:
            wait_for(lambda: run.value("bulk_requests_total", outcome="connection_error") >= 2,
                     what="refused TLS handshakes")
        assert spool.acknowledged_records() == 0
        assert server.documents == {}
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text or "certificate" in caplog.text.lower()


def test_tls_without_verification_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    _ca, cert, key = make_certificates(tmp_path)
    with FakeElasticsearch.start("es8", tls=(str(cert), str(key))) as server:
        spool = MemorySpool([document(1)])
        settings = es_settings([server.url], verify_certs=False, bearer_token="tok-123")
        with running_shipper(settings, spool, tmp_path):
            wait_for(lambda: spool.acknowledged_records() == 1, what="acknowledged")
        assert server.bulk_requests()[0].headers["authorization"] == "Bearer tok-123"
    assert "NOT verified" in caplog.text
    assert "tok-123" not in caplog.text
