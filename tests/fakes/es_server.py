"""A fault-injecting Elasticsearch HTTP server for tests: real sockets, scripted answers.

`FakeElasticsearch.start(flavor=...)` serves on 127.0.0.1:<free port> from a thread. `GET /`
answers like the chosen server (`es7`, `es8`, `es9`, `opensearch`, or `not-es`), including the
`X-Elastic-Product: Elasticsearch` header of Elasticsearch 7.14+; `tls=(cert, key)` serves
HTTPS. `_bulk` requests are answered by a script: each bulk request takes the next step of
`script([...])`, then `"ok"` forever:

  "ok"                    every item created (201), or 409 when its `_id` already exists
  "429" "500" "503" "401" "403" "413"   the whole request fails with that status (ES error body)
  "items:201,409,400,429,503"   per-item statuses, cycled over the items (201 stores the doc)
  "cut"                   headers and half a body, then the connection is closed
  "slow:SECONDS"          index the documents, then answer only after SECONDS (a timeout)
  "echo-auth"             every item refused (400) with a reason quoting our Authorization
                          header, as a misbehaving proxy or plugin might

`max_content_length=N` answers a bulk request whose Content-Length exceeds N with 413 from the
headers alone, without reading the body, and closes (Elasticsearch's http.max_content_length,
nginx's client_max_body_size). `users={"name": ("password", ["create_doc", ...])}` turns on
security: every request needs Basic credentials of a user (else 401), `GET
/_security/_authenticate` and `POST /_security/user/_has_privileges` answer as Elasticsearch
does, with the listed index privileges granted on every index (and `manage_index_templates`
among them granting that cluster privilege). `tls` is a (certificate, key) pair or a ready
server `ssl.SSLContext` (client certificates, TLS versions).

`FakeCluster.start(3)` serves three such nodes over one store of documents (a document created
through one node exists for all); `kill(i)` makes node i die (its listener closed, every
request on a kept connection closed unanswered and unprocessed) and `revive(i)` brings it back
on the same port.

Data streams (`data_streams=True`, the default): `PUT /_data_stream/<name>` creates one when a
stored index template with `data_stream` matches the name (else 400, as Elasticsearch), `GET`
lists it, and a bulk `create` into a name such a template matches creates it too; all in
`streams`. `data_streams=False` refuses them as a server without data streams does (400
`unsupported_operation_exception`, as osmem). `DELETE /_index_template/<name>` removes one.

Documents with a field listed in `reject_fields` always get a per-item 400
`mapper_parsing_exception`, like a mapping conflict. Every request is recorded (method, path,
headers, decompressed body) in `requests`; stored documents are in `documents` (`_id` ->
(index, document), the document by dotted names whether it came nested or flat, as
Elasticsearch indexes it). Elasticsearch 8/9 accept both plain JSON and `compatible-with=7|8` (8) or
`8|9` (9) media types; `strict_compat=True` refuses plain ones (406) to prove we send them.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import threading
import time
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from tests.support import flatten

_VERSIONS = {"es7": "7.17.25", "es8": "8.15.3", "es9": "9.1.0", "opensearch": "2.18.0",
             "es7.8": "7.8.1"}  # the last Elasticsearch without data streams


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def es_error(status: int, error_type: str, reason: str) -> dict[str, Any]:
    return {
        "error": {"root_cause": [{"type": error_type, "reason": reason}],
                  "type": error_type, "reason": reason},
        "status": status,
    }


_WHOLE_ERRORS = {
    429: ("es_rejected_execution_exception",
          "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, "
          "replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1, "
          "max_coordinating_and_primary_bytes=0]"),
    500: ("null_pointer_exception", "something broke inside"),
    503: ("cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/2/no master];"),
    401: ("security_exception",
          "unable to authenticate user [writer] for REST request [/_bulk]"),
    403: ("security_exception",
          "action [indices:data/write/bulk] is unauthorized for user [reader]"),
    413: ("http_content_too_long", "request body is too large"),
}
_ITEM_ERRORS = {
    400: ("mapper_parsing_exception", "failed to parse field [source.ip] of type [ip]"),
    429: ("es_rejected_execution_exception",
          "rejected execution of primary operation [coordinating_and_primary_bytes=1]"),
    500: ("internal_server_error", "shard failure"),
    503: ("unavailable_shards_exception", "primary shard is not active"),
    404: ("index_not_found_exception", "no such index"),
}


class FakeElasticsearch:
    def __init__(self, flavor: str = "es8", strict_compat: bool = False,
                 reject_fields: tuple[str, ...] = (), product_header: bool = True,
                 tls: tuple[str, str] | ssl.SSLContext | None = None,
                 root_forbidden: bool = False, max_content_length: int = 0,
                 users: dict[str, tuple[str, list[str]]] | None = None,
                 data_streams: bool = True) -> None:
        self.flavor = flavor
        self.data_streams = data_streams
        self.streams: set[str] = set()
        self.strict_compat = strict_compat
        self.reject_fields = reject_fields
        self.product_header = product_header
        self.tls = tls  # (certificate file, key file) or a server context: serve HTTPS
        self.root_forbidden = root_forbidden  # `GET /` needs a privilege the writer lacks
        self.max_content_length = max_content_length
        self.users = users
        self.requests: list[RecordedRequest] = []
        self.documents: dict[str, tuple[str, dict[str, Any]]] = {}
        self.stored: dict[tuple[str, str], Any] = {}
        self._script: list[str] = []
        self._echo = ""
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""
        self.dead = False  # FakeCluster.kill: requests are closed unanswered and unprocessed

    @classmethod
    def start(cls, flavor: str = "es8", **options: Any) -> FakeElasticsearch:
        fake = cls(flavor, **options)
        fake._serve()
        return fake

    def script(self, steps: list[str]) -> None:
        with self._lock:
            self._script.extend(steps)

    def clear_script(self) -> None:
        """Drop the steps not taken yet: `"ok"` from now on."""
        with self._lock:
            self._script.clear()

    def bulk_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if "_bulk" in r.path]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeElasticsearch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- behaviour -----------------------------------------------------------------------

    def _next_step(self) -> str:
        with self._lock:
            return self._script.pop(0) if self._script else "ok"

    def _root(self) -> tuple[int, dict[str, str], dict[str, Any]]:
        if self.root_forbidden:
            return 403, {}, es_error(403, "security_exception",
                                     "action [cluster:monitor/main] is unauthorized")
        if self.flavor == "not-es":
            return 200, {}, {"name": "some other service", "status": "fine"}
        version: dict[str, Any] = {"number": _VERSIONS[self.flavor], "build_flavor": "default",
                                   "lucene_version": "9.11.1"}
        headers: dict[str, str] = {}
        body: dict[str, Any] = {"name": "node-1", "cluster_name": "fake",
                                "cluster_uuid": "abc", "version": version}
        if self.flavor == "opensearch":
            version["distribution"] = "opensearch"
            body["tagline"] = "The OpenSearch Project: https://opensearch.org/"
        else:
            body["tagline"] = "You Know, for Search"
            if self.product_header:
                headers["X-Elastic-Product"] = "Elasticsearch"
        return 200, headers, body

    def _media_type_error(self, headers: dict[str, str]) -> tuple[int, dict[str, Any]] | None:
        """Check Content-Type/Accept the way the server would."""
        major = int(_VERSIONS.get(self.flavor, "0").split(".")[0])
        for name in ("content-type", "accept"):
            value = headers.get(name, "")
            match = re.search(r"compatible-with=(\d+)", value)
            if match:
                wanted = int(match.group(1))
                if self.flavor in ("es7", "opensearch") or wanted not in (major - 1, major):
                    return 400 if self.flavor != "opensearch" else 406, es_error(
                        400, "media_type_header_exception",
                        f"Invalid media-type value on headers [{name}]: {value}")
            elif self.strict_compat and name == "content-type" and value:
                return 406, es_error(406, "media_type_header_exception",
                                     f"plain media type refused by this test: {value}")
        return None

    def _user(self, headers: dict[str, str]) -> str | None:
        """The authenticated user's name, or None when the credentials are wrong."""
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme != "Basic":
            return None
        name, _, password = base64.b64decode(token).decode().partition(":")
        known = (self.users or {}).get(name)
        return name if known is not None and known[0] == password else None

    def _security(self, method: str, path: str, user: str,
                  body: bytes) -> tuple[int, dict[str, Any]] | None:
        granted = (self.users or {})[user][1]
        if path == "/_security/_authenticate" and method == "GET":
            return 200, {"username": user, "roles": ["test"], "enabled": True,
                         "authentication_realm": {"name": "native1", "type": "native"}}
        if path == "/_security/user/_has_privileges" and method in ("GET", "POST"):
            wanted = json.loads(body)
            cluster = {p: p in granted for p in wanted.get("cluster", [])}
            index = {entry_name: {p: p in granted for p in entry["privileges"]}
                     for entry in wanted.get("index", []) for entry_name in entry["names"]}
            every = all(cluster.values()) and all(all(v.values()) for v in index.values())
            return 200, {"username": user, "has_all_requested": every, "cluster": cluster,
                         "index": index, "application": {}}
        return None

    def _bulk(self, body: bytes, headers: dict[str, str] | None = None, path_index: str = "",
              ) -> tuple[str, int, dict[str, Any] | None, float]:
        """Returns (mode, status, answer, delay). `path_index`: the index `/<index>/_bulk`
        names, where an action line naming none goes (as Elasticsearch does)."""
        step = self._next_step()
        if step == "echo-auth":
            echoed = (headers or {}).get("authorization", "")
            step = "items:400"
            self._echo = f"header [Authorization: {echoed}] is not allowed on this endpoint"
        else:
            self._echo = ""
        if step in ("cut",):
            return "cut", 200, None, 0.0
        if step.isdigit():
            status = int(step)
            error_type, reason = _WHOLE_ERRORS[status]
            return "answer", status, es_error(status, error_type, reason), 0.0
        delay = float(step.split(":", 1)[1]) if step.startswith("slow:") else 0.0
        pattern = [int(s) for s in step.split(":", 1)[1].split(",")] if step.startswith(
            "items:") else []
        lines = body.split(b"\n")
        items: list[dict[str, Any]] = []
        errors = False
        for n, i in enumerate(range(0, len(lines) - 1, 2)):
            action_line = json.loads(lines[i])
            ((action, meta),) = action_line.items()
            document = flatten(json.loads(lines[i + 1]))  # by dotted name, nested or not
            doc_id = meta.get("_id") or f"auto-{len(self.documents)}-{n}"
            index = meta.get("_index", path_index)
            if self._stream_template(index) is not None:
                with self._lock:
                    self.streams.add(index)
            status = pattern[n % len(pattern)] if pattern else 201
            if any(field in document for field in self.reject_fields):
                status = 400
            with self._lock:
                exists = doc_id in self.documents
                if status == 201 and exists and action == "create":
                    status = 409
                if status in (201, 409) and not exists:  # a scripted 409: written earlier
                    self.documents[doc_id] = (index, document)
            result: dict[str, Any] = {"_index": index, "_id": doc_id, "status": status}
            if status == 409:
                result["error"] = {
                    "type": "version_conflict_engine_exception",
                    "reason": f"[{doc_id}]: version conflict, document already exists "
                              "(current version [1])",
                    "index": index, "shard": "0", "index_uuid": "x"}
            elif status >= 300:
                error_type, reason = _ITEM_ERRORS[status]
                result["error"] = {"type": error_type, "reason": self._echo or reason}
            else:
                result.update({"_version": 1, "result": "created", "_seq_no": n,
                               "_primary_term": 1,
                               "_shards": {"total": 2, "successful": 1, "failed": 0}})
            errors = errors or status >= 300
            items.append({action: result})
        return "answer", 200, {"took": 3, "errors": errors, "items": items}, delay

    def _stream_template(self, name: str) -> str | None:
        """The stored index template making `name` a data stream, if any (and supported)."""
        if not self.data_streams:
            return None
        with self._lock:
            for (kind, template), value in self.stored.items():
                if kind == "_index_template" and "data_stream" in value and any(
                        re.fullmatch(p.replace("*", ".*"), name) for p in value["index_patterns"]):
                    return template
        return None

    def _data_stream_api(self, method: str, path: str) -> tuple[int, Any] | None:
        match = re.fullmatch(r"/_data_stream/([^/_][^/]*)", path)
        if match is None:
            return None
        name = match.group(1)
        if not self.data_streams:
            return 400, es_error(400, "unsupported_operation_exception",
                                 "data streams are not supported by this server")
        if method == "GET":
            if name not in self.streams:
                return 404, es_error(404, "index_not_found_exception", f"no such index [{name}]")
            return 200, {"data_streams": [{"name": name, "template": self._stream_template(name)}]}
        if method == "PUT":
            if name in self.streams:
                return 400, es_error(400, "resource_already_exists_exception",
                                     f"data_stream [{name}] already exists")
            if self._stream_template(name) is None:
                return 400, es_error(400, "illegal_argument_exception",
                                     f"no matching index template found for data stream [{name}]")
            with self._lock:
                self.streams.add(name)
            return 200, {"acknowledged": True}
        return None

    def _settings_api(self, method: str, path: str, body: bytes) -> tuple[int, Any] | None:
        """`_ilm/policy/<name>` and `_index_template/<name>`: stored, answered like ES."""
        match = re.fullmatch(r"/(_ilm/policy|_index_template)/([^/]+)", path)
        if match is None or (match.group(1) == "_ilm/policy" and self.flavor == "opensearch"):
            return None
        kind, name = match.groups()
        with self._lock:
            if method == "DELETE":
                found = self.stored.pop((kind, name), None)
                return (200, {"acknowledged": True}) if found is not None else (
                    404, es_error(404, "resource_not_found_exception", f"{name} not found"))
            if method == "PUT":
                self.stored[(kind, name)] = json.loads(body)
                return 200, {"acknowledged": True}
            if method != "GET":
                return None
            value = self.stored.get((kind, name))
        if value is None:
            return 404, es_error(404, "resource_not_found_exception", f"{name} not found")
        if kind == "_ilm/policy":
            return 200, {name: {"version": 1, "modified_date": "2026-11-25T18:00:00.000Z",
                                "policy": value["policy"], "in_use_by": {"indices": []}}}
        return 200, {"index_templates": [{"name": name, "index_template": value}]}

    # --- HTTP ----------------------------------------------------------------------------

    def _serve(self, port: int = 0) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else b""
                if self.headers.get("Content-Encoding") == "gzip":
                    # Strict like Elasticsearch: one gzip member, nothing after it.
                    decompressor = zlib.decompressobj(31)
                    data = decompressor.decompress(data) + decompressor.flush()
                    if decompressor.unused_data or not decompressor.eof:
                        raise ValueError("the gzip body has trailing or missing bytes")
                return data

            def _handle(self) -> None:
                if fake.dead:  # a node that died: the connection goes, nothing is processed
                    self.close_connection = True
                    return
                path = self.path.split("?", 1)[0]
                length = int(self.headers.get("Content-Length") or 0)
                if fake.max_content_length and path.endswith("/_bulk") and (
                        length > fake.max_content_length):
                    with fake._lock:
                        fake.requests.append(RecordedRequest(
                            self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                            b""))
                    self.close_connection = True  # the body stays unread: closed with a reset
                    self._send(413, es_error(413, "http_content_too_long",
                                             f"body larger than {fake.max_content_length} bytes"),
                               {"Connection": "close"})
                    return
                try:
                    body = self._body()
                except (ValueError, zlib.error) as error:
                    self._send(400, es_error(400, "parse_exception", str(error)))
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                with fake._lock:
                    fake.requests.append(RecordedRequest(self.command, self.path, headers, body))
                user = None
                if fake.users is not None:
                    user = fake._user(headers)
                    if user is None:
                        self._send(401, es_error(
                            401, "security_exception",
                            "unable to authenticate user [?] for REST request [" + path + "]"),
                            {"WWW-Authenticate": 'Basic realm="security" charset="UTF-8"'})
                        return
                if path == "/" and self.command in ("GET", "HEAD"):
                    status, extra, answer = fake._root()
                    self._send(status, answer, extra)
                    return
                if user is not None:
                    answered = fake._security(self.command, path, user, body)
                    if answered is not None:
                        self._send(*answered)
                        return
                refused = fake._media_type_error(headers)
                if refused is not None:
                    self._send(refused[0], refused[1])
                    return
                if path.endswith("/_bulk"):
                    mode, status, bulk_answer, delay = fake._bulk(
                        body, headers, unquote(path[1 : -len("/_bulk")]))
                    if mode == "cut":
                        self._cut()
                        return
                    if delay:
                        time.sleep(delay)
                    self._send(status, bulk_answer)
                    return
                streamed = fake._data_stream_api(self.command, path)
                if streamed is not None:
                    self._send(*streamed)
                    return
                stored = fake._settings_api(self.command, path, body)
                if stored is not None:
                    self._send(*stored)
                    return
                self._send(404, es_error(404, "resource_not_found_exception", f"no {path}"))

            def _extra_headers(self) -> dict[str, str]:
                if fake.flavor in ("es7", "es8", "es9") and fake.product_header:
                    return {"X-Elastic-Product": "Elasticsearch"}
                return {}

            def _send(self, status: int, answer: Any, extra: dict[str, str] | None = None) -> None:
                data = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    content_type = "application/json"
                    accept = self.headers.get("Accept", "")
                    if "compatible-with" in accept:
                        content_type = accept
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in {**self._extra_headers(), **(extra or {})}.items():
                        self.send_header(key, value)
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def _cut(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "5000")
                self.end_headers()
                self.wfile.write(b'{"took":3,"errors":false,"items":[{"create":')
                self.wfile.flush()
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _handle

            def log_message(self, format: str, *args: object) -> None:
                return

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self._server = Server(("127.0.0.1", port), Handler)
        scheme = "http"
        if self.tls is not None:
            if isinstance(self.tls, ssl.SSLContext):
                context = self.tls
            else:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(*self.tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         name="fake-es", daemon=True).start()


class FakeCluster:
    """`size` Elasticsearch nodes sharing one store; nodes die and come back on their port."""

    def __init__(self, nodes: list[FakeElasticsearch]) -> None:
        self.nodes = nodes

    @classmethod
    def start(cls, size: int = 3, flavor: str = "es8") -> FakeCluster:
        first = FakeElasticsearch(flavor)
        nodes = [first] + [FakeElasticsearch(flavor) for _ in range(size - 1)]
        for node in nodes[1:]:  # one store, one lock: a document exists once for all nodes
            node.documents, node.requests, node._lock = first.documents, [], first._lock
        for node in nodes:
            node._serve()
        return cls(nodes)

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def documents(self) -> dict[str, tuple[str, dict[str, Any]]]:
        return self.nodes[0].documents

    def kill(self, index: int) -> None:
        node = self.nodes[index]
        node.dead = True
        assert node._server is not None
        node._server.shutdown()
        node._server.server_close()

    def revive(self, index: int) -> None:
        node = self.nodes[index]
        port = int(node.url.rsplit(":", 1)[1])
        node.dead = False
        node._serve(port)

    def close(self) -> None:
        for node in self.nodes:
            if not node.dead:
                node.close()

    def __enter__(self) -> FakeCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
