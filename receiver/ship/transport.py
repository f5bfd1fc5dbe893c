"""The official `elasticsearch` client on our one HTTP stack: a node class and a serializer.

`Cluster` holds an `elasticsearch.Elasticsearch` client whose nodes are `CurlNode`s
(`node_class=`): each sends through its own `receiver.ship.http.HttpClient` (libcurl), so TLS,
proxies, the trusted fingerprint, timeouts and redaction stay exactly as they are for Kibana and
`setup`. The client's node pool picks the host (round robin over the live ones; a node that
failed is put aside for 1 s, doubling per failure in a row up to 30 s, then tried again) and
retries a request that got no answer on the next node.

How each server kind is reached (ElasticsearchOutput chooses after `GET /`):

- Elasticsearch 8 and 9: `Elasticsearch.perform_request`, the client's own request method, with
  its product check (`X-Elastic-Product`), warnings and error types. We give the media types
  `compatible-with=<the server's major>` ourselves: the client leaves a type it did not write
  alone, so one client major serves both server majors.
- Elasticsearch 7 and OpenSearch 1-3: the same client's `transport.perform_request` (same node
  pool, nodes and serializers) with plain JSON media types. The client's own request method
  cannot reach them: it rewrites every plain type to `compatible-with=<client major>`, which
  they refuse (406/400), and its product check refuses any server without the header.

Bodies pass through: `PassThroughSerializer` hands our bytes (NDJSON, gzipped or not) to the
node untouched and gives the answer back as bytes, which the caller parses only when it must
(receiver.ship.classify.delivered_all_raw recognises the common bulk answer without parsing).

This module imports the client, so only a worker imports it, when it makes its output: the
receiving process never does (tests/ship/test_imports.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import orjson
import pycurl
from elastic_transport import (
    ApiResponseMeta,
    BaseNode,
    ConnectionError,
    ConnectionTimeout,
    HttpHeaders,
    NodeConfig,
    Serializer,
)
from elastic_transport._node import NodeApiResponse
from elastic_transport.client_utils import DEFAULT, DefaultType
from elasticsearch import ApiError, Elasticsearch, UnsupportedProductError

from receiver.redaction import redact
from receiver.ship.http import (
    ConnectionOptions,
    HttpClient,
    HttpTimeout,
    HttpUnavailable,
    url_secrets,
)

# One line per request at INFO (and a traceback per failover at WARNING) would flood our log:
# our own messages report failures, rate-limited. The node pool's warnings (a node put aside,
# a node back) are kept.
logging.getLogger("elastic_transport.transport").setLevel(logging.ERROR)

# The media types the client knows, all passed through (their compatible-with variants too).
_MEDIA_TYPES = (
    "application/json", "application/x-ndjson", "application/vnd.elasticsearch+json",
    "application/vnd.elasticsearch+x-ndjson", "application/*", "text/*",
)
# What the node pool does with a failed node: aside for 1 s, doubling per failure, at most 30 s.
DEAD_NODE_BACKOFF = 1.0
MAX_DEAD_NODE_BACKOFF = 30.0


class PassThroughSerializer(Serializer):
    """Bytes out as they are (a bulk body is never copied or re-serialized), objects as JSON;
    answers in as bytes: the caller parses what it reads."""

    mimetype: ClassVar[str] = "application/json"

    def dumps(self, data: Any) -> bytes:
        if isinstance(data, bytes):
            return data
        return orjson.dumps(data)

    def loads(self, data: bytes) -> Any:
        return data


SERIALIZERS: Mapping[str, Serializer] = {name: PassThroughSerializer() for name in _MEDIA_TYPES}


class CurlNode(BaseNode):
    """An `elastic_transport` node that sends through receiver.ship.http (libcurl).

    Its NodeConfig carries, in `_extras`, the URL as configured (credentials in it included,
    which only libcurl sees) and the ConnectionOptions. Our Authorization and User-Agent
    replace the client's; everything else the client sends (media types, its meta header) goes
    as given. The timeout is `elasticsearch.request_timeout`, set on the libcurl handles (the
    client's per-request `request_timeout` goes unused: there is one). Thread-safe: the
    HttpClient pools its handles. Failures become the client's ConnectionTimeout (sent, no answer in time: not
    retried on another node) and ConnectionError (no connection or a broken answer: the next
    node is tried and this one put aside), with our redacted message.
    """

    _CLIENT_META_HTTP_CLIENT: ClassVar[tuple[str, str]] = ("cu", pycurl.version_info()[1])

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        options: ConnectionOptions = config._extras["options"]
        self._http = HttpClient(config._extras["url"], options)
        self._ours = frozenset(name.lower() for name in options.headers)
        self.url = self._http.url  # redacted

    def perform_request(self, method: str, target: str, body: bytes | None = None,
                        headers: HttpHeaders | None = None,
                        request_timeout: DefaultType | float | None = DEFAULT,
                        ) -> NodeApiResponse:
        wanted = {name: value for name, value in (headers or {}).items()
                  if name.lower() not in self._ours}
        started = time.perf_counter()
        try:
            response = self._http.request(method, target, body, wanted)
        except HttpTimeout as error:
            raise ConnectionTimeout(str(error)) from None
        except HttpUnavailable as error:
            raise ConnectionError(str(error)) from None
        meta = ApiResponseMeta(status=response.status, http_version="1.1",
                               headers=HttpHeaders(response.headers),
                               duration=time.perf_counter() - started, node=self.config)
        return NodeApiResponse(meta, response.body)

    def redact(self, text: str) -> str:
        return self._http.redact(text)

    def close(self) -> None:
        self._http.close()


def node_config(url: str, options: ConnectionOptions) -> NodeConfig:
    """The client's description of one host of `elasticsearch.hosts`."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    return NodeConfig(scheme="https" if https else "http", host=parts.hostname or "localhost",
                      port=parts.port or (443 if https else 80),
                      path_prefix=parts.path.rstrip("/"),
                      _extras={"url": url, "options": options})


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole answer of any status; `body` as received."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    node: str  # the host that answered, as configured, redacted


class Cluster:
    """The client over `urls`; `request` sends through it (see the module's docstring)."""

    def __init__(self, urls: Sequence[str], options: ConnectionOptions) -> None:
        configs = [node_config(url, options) for url in urls]
        secrets = url_secrets(urls, options)
        self._names = {config: redact(url, secrets) for config, url in zip(configs, urls, strict=True)}
        # A request that got no answer is tried once on each other host (as the node pool
        # chooses); anything with an answer, and a timeout, comes back to our classification.
        self._retries = len(urls) - 1
        self.client = Elasticsearch(
            configs, node_class=CurlNode,
            serializers=SERIALIZERS,
            max_retries=self._retries, retry_on_status=(), retry_on_timeout=False,
            request_timeout=options.timeout, randomize_nodes_in_pool=False,
            dead_node_backoff_factor=DEAD_NODE_BACKOFF,
            max_dead_node_backoff=MAX_DEAD_NODE_BACKOFF,
        )
        self.transport = self.client.transport

    def request(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str],
                checked: bool) -> Answer:
        """One request; `checked`: through the client's own request method (Elasticsearch 8
        and 9: product check, its errors), else through its transport (7.x, OpenSearch).

        Raises the client's errors: ApiError (an answer outside 2xx, `checked` only),
        UnsupportedProductError, ConnectionError, ConnectionTimeout; receiver.ship.classify
        says what each means."""
        if checked:
            response = self.client.perform_request(method, path, headers=headers, body=body)
            meta, data = response.meta, response.body
        else:
            meta, data = self.transport.perform_request(
                method, path, headers=headers, body=body, max_retries=self._retries,
                retry_on_status=(), retry_on_timeout=False)
        return Answer(meta.status, meta.headers, data, self._names.get(meta.node, ""))

    def answer(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str],
               checked: bool) -> Answer:
        """As `request`, with an answer outside 2xx returned instead of raised (setup reads
        404 as "not installed yet")."""
        try:
            return self.request(method, path, body, headers, checked)
        except UnsupportedProductError:
            raise
        except ApiError as error:
            body_bytes = error.body if isinstance(error.body, bytes) else b""
            return Answer(error.meta.status, error.meta.headers, body_bytes,
                          self._names.get(error.meta.node, ""))

    def close(self) -> None:
        self.client.close()
