"""Importing the Kibana dashboards (saved objects NDJSON) through Kibana's saved objects API.

`import_dashboards()` POSTs the NDJSON file as a multipart upload to
`/api/saved_objects/_import?overwrite=true` with the `kbn-xsrf` header, as Kibana documents it,
and returns what Kibana reported object by object. It is what `haproxy-receiver setup --kibana
URL` runs; re-running it replaces the objects (stable ids), so it is safe to repeat. The
dashboards' data view is pointed at the indices the configuration writes to
(`data_view_pattern()`: the data stream, or `elasticsearch.index` up to its first variable),
so a custom `index` or a `data_stream` gets dashboards that show its documents.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from receiver import assets
from receiver.config import ElasticsearchSettings, _redact_url

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


def data_view_pattern(settings: ElasticsearchSettings) -> str:
    """The data view pattern for what `run` writes: the pattern the index template covers."""
    from receiver.ship.template import index_pattern  # late: keeps the Elasticsearch client out

    return index_pattern(settings)


def default_ndjson() -> bytes:
    """The dashboards the package carries (`haproxy-receiver export kibana-dashboards`)."""
    return assets.read("kibana-dashboards")


def import_dashboards(
    kibana_url: str,
    *,
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

    `index_pattern` becomes the data view's pattern (set it when `elasticsearch.index` does not
    write to `haproxy-*`). `api_key` is Kibana's encoded key or `id:key`. Raises `KibanaError`
    when Kibana cannot be reached or refuses the request as a whole.
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
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Accept": "application/json",
    }
    auth = _authorization(username, password, api_key)
    if auth:
        headers["Authorization"] = auth
    url = _import_url(kibana_url, space)
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout,
                                    context=_tls_context(url, ca_file, verify)) as response:
            answer = response.read()
    except urllib.error.HTTPError as error:
        detail = _error_message(error.read())
        raise KibanaError(
            f"Kibana at {_redact_url(kibana_url)} refused the import: HTTP {error.code} {detail}"
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise KibanaError(f"cannot reach Kibana at {_redact_url(kibana_url)}: {reason}") from None
    return _result(answer)


def _import_url(kibana_url: str, space: str | None) -> str:
    base = kibana_url.rstrip("/")
    if space and space != "default":
        base += "/s/" + urllib.parse.quote(space, safe="")
    return base + "/api/saved_objects/_import?overwrite=true"


def _authorization(username: str | None, password: str | None, api_key: str | None) -> str | None:
    if api_key:
        # Kibana takes the base64 of `id:key`; an `id:key` pair is encoded here.
        encoded = base64.b64encode(api_key.encode()).decode() if ":" in api_key else api_key
        return f"ApiKey {encoded}"
    if username:
        token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
        return f"Basic {token}"
    return None


def _tls_context(url: str, ca_file: str | None, verify: bool) -> ssl.SSLContext | None:
    if not url.startswith("https://"):
        return None
    context = ssl.create_default_context(cafile=ca_file or None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


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


def _result(answer: bytes) -> ImportResult:
    try:
        data: Any = json.loads(answer)
        success = bool(data["success"])
        success_count = int(data.get("successCount", 0))
    except (ValueError, KeyError, TypeError):
        raise KibanaError(
            f"Kibana answered something that is not an import result: {answer[:200]!r}"
        ) from None
    errors = [
        f"{item.get('type')} {item.get('id')} ({item.get('title', '')}): "
        f"{(item.get('error') or {}).get('type', 'unknown')}"
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
