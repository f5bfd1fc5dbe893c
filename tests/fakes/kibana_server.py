"""A stand-in for Kibana's saved objects import API, strict the way Kibana documents it.

`POST [/s/<space>]/api/saved_objects/_import?overwrite=true` must carry the `kbn-xsrf` header,
valid credentials when the server has any, and a `multipart/form-data` body whose `file` field
is an `.ndjson` file of saved objects. Objects whose references point at nothing (neither in the
file nor already stored) fail with `missing_references`, as in Kibana. Every request is recorded
for the tests to inspect.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import json
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class RecordedImport:
    path: str
    space: str
    overwrite: bool
    headers: dict[str, str]
    filename: str
    objects: list[dict[str, Any]]


@dataclass
class FakeKibana:
    url: str
    imports: list[RecordedImport] = field(default_factory=list)
    stored: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


def _unauthorized(headers: Any, username: str | None, password: str | None, api_key: str | None) -> bool:
    if username is None and api_key is None:
        return False
    given = headers.get("Authorization", "")
    accepted = set()
    if username is not None:
        accepted.add("Basic " + base64.b64encode(f"{username}:{password}".encode()).decode())
    if api_key is not None:
        accepted.add("ApiKey " + api_key)
    return given not in accepted


def _parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Fields of a multipart/form-data body: name → (filename, content)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    if not message.is_multipart():
        return {}
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = (part.get_filename(), payload)
    return fields


@contextmanager
def running_kibana(
    *,
    username: str | None = None,
    password: str | None = None,
    api_key: str | None = None,
    certfile: Path | None = None,
    keyfile: Path | None = None,
) -> Iterator[FakeKibana]:
    """Serve the fake on 127.0.0.1 (HTTPS when a certificate is given) for the block's duration."""
    state: FakeKibana

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            parts = url.path.split("/")
            space = "default"
            if len(parts) > 3 and parts[1] == "s":
                space = parts[2]
                parts = ["", *parts[3:]]
            if "/".join(parts) != "/api/saved_objects/_import":
                return self._json(404, {"statusCode": 404, "error": "Not Found", "message": "Not Found"})
            if "kbn-xsrf" not in {key.lower() for key in self.headers}:
                return self._json(400, {"statusCode": 400, "error": "Bad Request",
                                        "message": "Request must contain a kbn-xsrf header."})
            if _unauthorized(self.headers, username, password, api_key):
                return self._json(401, {"statusCode": 401, "error": "Unauthorized",
                                        "message": "[security_exception] unable to authenticate user"})
            content_type = self.headers.get("Content-Type", "")
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if not content_type.startswith("multipart/form-data"):
                return self._json(415, {"statusCode": 415, "error": "Unsupported Media Type",
                                        "message": "Unsupported Media Type"})
            fields = _parse_multipart(content_type, body)
            if "file" not in fields:
                return self._json(400, {"statusCode": 400, "error": "Bad Request",
                                        "message": "[request body.file]: expected value of type [Stream]"})
            filename, content = fields["file"]
            if not (filename or "").endswith(".ndjson"):
                return self._json(400, {"statusCode": 400, "error": "Bad Request",
                                        "message": f"Invalid file extension {Path(filename or '').suffix}"})
            try:
                objects = [json.loads(line) for line in content.splitlines() if line.strip()]
            except ValueError as error:
                return self._json(400, {"statusCode": 400, "error": "Bad Request", "message": str(error)})
            query = urllib.parse.parse_qs(url.query)
            overwrite = query.get("overwrite") == ["true"]
            state.imports.append(RecordedImport(
                path=url.path, space=space, overwrite=overwrite,
                headers={k.lower(): v for k, v in self.headers.items()},
                filename=filename or "", objects=objects))
            self._json(200, self._import(objects, overwrite))

        def _import(self, objects: list[dict[str, Any]], overwrite: bool) -> dict[str, Any]:
            incoming = {(o["type"], o["id"]) for o in objects}
            errors: list[dict[str, Any]] = []
            results: list[dict[str, Any]] = []
            for obj in objects:
                key = (obj["type"], obj["id"])
                title = obj.get("attributes", {}).get("title", "")
                missing = [{"type": r["type"], "id": r["id"]} for r in obj.get("references", [])
                           if (r["type"], r["id"]) not in incoming | state.stored.keys()]
                if missing:
                    errors.append({"id": obj["id"], "type": obj["type"], "title": title,
                                   "error": {"type": "missing_references", "references": missing}})
                elif key in state.stored and not overwrite:
                    errors.append({"id": obj["id"], "type": obj["type"], "title": title,
                                   "error": {"type": "conflict"}})
                else:
                    state.stored[key] = obj
                    results.append({"type": obj["type"], "id": obj["id"], "meta": {"title": title}})
            return {"success": not errors, "successCount": len(results),
                    "successResults": results, **({"errors": errors} if errors else {})}

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    scheme = "http"
    if certfile is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile, keyfile)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    state = FakeKibana(url=f"{scheme}://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, name="fake-kibana", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
