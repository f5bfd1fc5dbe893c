"""Importing the Kibana dashboards (saved objects NDJSON) through Kibana's saved objects API.

`import_dashboards()` POSTs the NDJSON file as a multipart upload to
`/api/saved_objects/_import?overwrite=true` with the `kbn-xsrf` header, as Kibana documents it,
and returns what Kibana reported object by object. It is what `haproxy-receiver setup --kibana
URL` runs; re-running it replaces the objects (stable ids), so it is safe to repeat. The
dashboards' data view is pointed at the indices the configuration writes to
(`ship.template.index_pattern()`: the data stream, or `elasticsearch.index` up to its first variable),
so a custom `index` or a `data_stream` gets dashboards that show its documents. The request
goes through receiver.ship.http with the Elasticsearch output's TLS configuration, proxy rule
and credentials, and every message is redacted. It is Kibana's API, not Elasticsearch's, so the
`elasticsearch` client (which speaks only to Elasticsearch) has no part in it: the import
touches Elasticsearch only through Kibana; what `setup --kibana` does in Elasticsearch itself
(templates, ILM) goes through the client (receiver/ship/setup.py, ElasticsearchOutput).
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from receiver import assets
from receiver.config import ElasticsearchSettings
from receiver.redaction import redact
from receiver.ship.http import ConnectionOptions, HttpClient, HttpError, connection_options

DASHBOARDS_FILE = "haproxy-receiver.ndjson"
DEFAULT_INDEX_PATTERN = "haproxy-*"


class KibanaError(RuntimeError):
    """The import could not be done at all (unreachable, refused, unreadable file)."""


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What Kibana answered: objects imported and, per failed object, why."""

    success: bool
    success_count: int
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.success:
            return f"imported {self.success_count} saved objects"
        return (f"imported {self.success_count} saved objects, {len(self.errors)} failed: "
                + "; ".join(self.errors))


def default_ndjson() -> bytes:
    """The dashboards the package carries (`haproxy-receiver export kibana-dashboards`)."""
    return assets.read("kibana-dashboards")


def import_dashboards(
    kibana_url: str,
    *,
    settings: ElasticsearchSettings | None = None,
    username: str | None = None,
    password: str | None = None,
    api_key: str | None = None,
    ca_file: str | None = None,
    verify: bool = True,
    ndjson_path: Path | str | None = None,
    space: str | None = None,
    index_pattern: str = DEFAULT_INDEX_PATTERN,
    timeout: float = 30.0,
) -> ImportResult:
    """Import the saved objects into Kibana (optionally into `space`), replacing older copies.

    `settings`: the Elasticsearch output's settings, whose TLS configuration, proxy and
    credentials then apply (as `setup --kibana` does); without them, `username`/`password` or
    `api_key` (Kibana's encoded key or `id:key`), `ca_file` and `verify` do. `index_pattern`
    becomes the data view's pattern (set it when `elasticsearch.index` does not write to
    `haproxy-*`). Raises `KibanaError` when Kibana cannot be reached or refuses the request.
    """
    if ndjson_path is None:
        filename, ndjson = DASHBOARDS_FILE, default_ndjson()
    else:
        path = Path(ndjson_path)
        try:
            filename, ndjson = path.name, path.read_bytes()
        except OSError as error:
            raise KibanaError(f"cannot read dashboards file {path}: {error.strerror}") from None
    body_ndjson = _with_index_pattern(ndjson, index_pattern)
    boundary = "haproxy-receiver-" + secrets.token_hex(16)
    body = _multipart(boundary, "file", filename, body_ndjson)
    headers = {
        "kbn-xsrf": "true",  # Kibana refuses API writes without it (CSRF protection)
        "content-type": f"multipart/form-data; boundary={boundary}",
        "accept": "application/json",
    }
    try:
        client = HttpClient(kibana_url, _options(settings, username, password, api_key,
                                                 ca_file, verify, timeout))
    except HttpError as error:
        raise KibanaError(str(error)) from None
    try:
        response = client.request("POST", _import_path(space), body, headers)
    except HttpError as error:
        raise KibanaError(f"cannot reach Kibana: {error}") from None
    finally:
        client.close()
    if response.status != 200:
        detail = client.redact(_error_message(response.body))
        raise KibanaError(
            f"Kibana at {redact(kibana_url)} refused the import: HTTP {response.status} {detail}")
    return _result(response.body, client.redact)


def _options(settings: ElasticsearchSettings | None, username: str | None, password: str | None,
             api_key: str | None, ca_file: str | None, verify: bool,
             timeout: float) -> ConnectionOptions:
    if settings is None:  # the credentials and TLS choices given, as output settings
        settings = ElasticsearchSettings(username=username or "", password=password or "",
                                         api_key=api_key or "", ca_file=ca_file or "",
                                         verify_certs=verify)
    return dataclasses.replace(connection_options(settings), timeout=timeout)


def _import_path(space: str | None) -> str:
    """The import API's path (the client puts the Kibana URL, with any path prefix, before it)."""
    path = ""
    if space and space != "default":
        path += "/s/" + urllib.parse.quote(space, safe="")
    return path + "/api/saved_objects/_import?overwrite=true"


def _multipart(boundary: str, field_name: str, filename: str, content: bytes) -> bytes:
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{field_name}"; filename="{filename}"\r\n'
        "Content-Type: application/ndjson\r\n\r\n"
    ).encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode()


def _with_index_pattern(ndjson: bytes, pattern: str) -> bytes:
    """The NDJSON with every data view's pattern set to `pattern`."""
    if pattern == DEFAULT_INDEX_PATTERN:
        return ndjson
    lines = []
    for line in ndjson.splitlines():
        if not line.strip():
            continue
        obj = json.loads(line)
        if obj.get("type") == "index-pattern":
            obj["attributes"]["title"] = pattern
        lines.append(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode())
    return b"\n".join(lines) + b"\n"


def _result(answer: bytes, redact: Callable[[str], str]) -> ImportResult:
    """Kibana's answer object by object; every text from it redacted."""
    try:
        data: Any = json.loads(answer)
        success = bool(data["success"])
        success_count = int(data.get("successCount", 0))
    except (ValueError, KeyError, TypeError):
        raise KibanaError(
            redact(f"Kibana answered something that is not an import result: {answer[:200]!r}")
        ) from None
    errors = [
        redact(f"{item.get('type')} {item.get('id')} ({item.get('title', '')}): "
               f"{(item.get('error') or {}).get('type', 'unknown')}")
        for item in data.get("errors") or []
    ]
    return ImportResult(success=success, success_count=success_count, errors=errors)


def _error_message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200].decode(errors="replace")
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error") or data)[:300]
    return str(data)[:300]
