"""`import_dashboards()` against a fake Kibana that checks the request as Kibana's saved objects
import API documents it: multipart `file` field, `kbn-xsrf` header, credentials."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from receiver.kibana import KibanaError, default_ndjson, import_dashboards
from tests.fakes.kibana_server import running_kibana
from tests.support import tls_files

NDJSON = Path(__file__).resolve().parents[2] / "dashboards" / "kibana" / "haproxy-receiver.ndjson"


def object_count() -> int:
    return len(NDJSON.read_text().splitlines())


def test_import_sends_the_file_as_multipart_with_xsrf_and_basic_auth() -> None:
    with running_kibana(username="elastic", password="s3cret") as kibana:
        result = import_dashboards(kibana.url, username="elastic", password="s3cret",
                                   api_key=None, ca_file=None, verify=True, ndjson_path=NDJSON)
    assert result.success and result.errors == []
    assert result.success_count == object_count()
    (request,) = kibana.imports
    assert request.overwrite and request.filename == "haproxy-receiver.ndjson"
    assert request.headers["kbn-xsrf"]
    assert [o["id"] for o in request.objects] == [json.loads(line)["id"]
                                                   for line in NDJSON.read_text().splitlines()]
    assert str(result) == f"imported {object_count()} saved objects"


def test_repeated_import_overwrites_instead_of_conflicting() -> None:
    with running_kibana() as kibana:
        first = import_dashboards(kibana.url, ndjson_path=NDJSON)
        second = import_dashboards(kibana.url, ndjson_path=NDJSON)
    assert first.success and second.success and len(kibana.imports) == 2


def test_api_key_id_and_key_pair_is_encoded() -> None:
    encoded = base64.b64encode(b"key-id:key-secret").decode()
    with running_kibana(api_key=encoded) as kibana:
        assert import_dashboards(kibana.url, api_key="key-id:key-secret", ndjson_path=NDJSON).success
        assert import_dashboards(kibana.url, api_key=encoded, ndjson_path=NDJSON).success
    assert kibana.imports[0].headers["authorization"] == f"ApiKey {encoded}"


def test_wrong_credentials_raise_with_kibanas_answer_and_no_secret() -> None:
    with running_kibana(username="elastic", password="right") as kibana, \
            pytest.raises(KibanaError, match="HTTP 401") as raised:
        import_dashboards(kibana.url, username="elastic", password="wrong-secret", ndjson_path=NDJSON)
    assert "wrong-secret" not in str(raised.value)
    assert kibana.imports == []


def test_space_and_index_pattern_are_applied() -> None:
    with running_kibana() as kibana:
        result = import_dashboards(kibana.url + "/", space="ops", index_pattern="logs-haproxy-*",
                                   ndjson_path=NDJSON)
    assert result.success
    (request,) = kibana.imports
    assert request.space == "ops"
    (view,) = [o for o in request.objects if o["type"] == "index-pattern"]
    assert view["attributes"]["title"] == "logs-haproxy-*"


def test_per_object_failures_are_reported(tmp_path: Path) -> None:
    broken = tmp_path / "broken.ndjson"
    dangling = [{"name": "x", "type": "index-pattern", "id": "gone"}]
    broken.write_text(json.dumps({"id": "v", "type": "visualization", "attributes": {"title": "T"},
                                  "references": dangling}) + "\n")
    with running_kibana() as kibana:
        result = import_dashboards(kibana.url, ndjson_path=broken)
    assert not result.success and result.success_count == 0
    assert result.errors == ["visualization v (T): missing_references"]


def test_unreachable_kibana_and_missing_file_raise_clear_errors(tmp_path: Path) -> None:
    with running_kibana() as kibana:
        url = kibana.url
    with pytest.raises(KibanaError, match="cannot reach Kibana"):
        import_dashboards(url, ndjson_path=NDJSON, timeout=5)
    with pytest.raises(KibanaError, match="cannot read dashboards file"):
        import_dashboards(url, ndjson_path=tmp_path / "absent.ndjson")


def test_default_file_is_the_shipped_dashboards() -> None:
    assert default_ndjson() == NDJSON.read_bytes()


def test_https_with_a_private_ca(tmp_path: Path) -> None:
    cert, key, ca = tls_files(tmp_path)
    with running_kibana(certfile=cert, keyfile=key) as kibana:
        assert kibana.url.startswith("https://")
        with pytest.raises(KibanaError, match="certificate"):
            import_dashboards(kibana.url, ndjson_path=NDJSON, timeout=10)
        assert import_dashboards(kibana.url, ca_file=str(ca), ndjson_path=NDJSON).success
        assert import_dashboards(kibana.url, verify=False, ndjson_path=NDJSON).success
