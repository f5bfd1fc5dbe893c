"""The Elasticsearch/OpenSearch output: connection, server probe, headers, bulk requests.

Built on `elastic_transport` (the `elasticsearch` package's transport: urllib3 nodes,
keep-alive pools, failover between hosts). At the first request it probes `GET /` and picks
the media types each server accepts: Elasticsearch 8/9 get `compatible-with=<major>` types,
Elasticsearch 7 and OpenSearch 1-3 plain JSON/NDJSON. A server that is neither is refused with
a clear error. Credentials travel only in the Authorization header and never appear in logs,
metrics or error messages (`redact`).
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import re
import ssl
import sys
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from receiver.config import ElasticsearchSettings
from receiver.metrics import ShipMetrics
from receiver.ship.bulk_http import BulkClient, BulkConnectionError, BulkTimeout, endpoint, header_lines
from receiver.ship.classify import (
    Classification,
    RequestOutcome,
    classify,
    delivered_all_raw,
    transport_failure,
)
from receiver.ship.encode import gzip_body
from receiver.ship.errors import OutputError, OutputUnavailable

# elastic_transport imports `requests` when it is installed, only for a node class we never use
# (ours is urllib3's): ~5 MiB of the ship process's memory (issue 8: 100 MiB for both
# processes). Hidden while elastic_transport loads (a None entry makes that import fail, which
# it expects), visible again afterwards for anyone else.
_HIDE_REQUESTS = "requests" not in sys.modules
if _HIDE_REQUESTS:
    sys.modules["requests"] = None  # type: ignore[assignment]
try:
    from elastic_transport import (
        NodeConfig,
        Serializer,
        Transport,
        TransportError,
    )
    from elastic_transport.client_utils import url_to_node_config
finally:
    if _HIDE_REQUESTS:
        del sys.modules["requests"]

log = logging.getLogger(__name__)

USER_AGENT = "haproxy-receiver"
# Only what the shipper reads: smaller answers to parse (ES and OpenSearch both support it).
BULK_PATH = "/_bulk?filter_path=errors,items.*.status,items.*.error"


@dataclass(frozen=True, slots=True)
class ServerInfo:
    flavor: str  # "elasticsearch", "opensearch", or "unknown" (`GET /` forbidden)
    version: str
    major: int
    minor: int

    @property
    def has_ilm(self) -> bool:
        return self.flavor == "elasticsearch"

    @property
    def has_composable_templates(self) -> bool:
        return self.flavor != "elasticsearch" or (self.major, self.minor) >= (7, 8)

    def describe(self) -> str:
        names = {"elasticsearch": "Elasticsearch", "opensearch": "OpenSearch"}
        return f"{names.get(self.flavor, 'a server of unknown version')} {self.version}".strip()


_RAW_MIMETYPES = (
    "application/json", "application/x-ndjson", "application/vnd.elasticsearch+json",
    "application/vnd.elasticsearch+x-ndjson", "text/plain", "application/*", "text/*",
)


class _RawBytes(Serializer):
    """Leave bodies as bytes both ways: we encode bulk bodies and parse answers with orjson."""

    mimetype = "application/json"

    def loads(self, data: bytes) -> Any:
        return data

    def dumps(self, data: Any) -> bytes:
        if isinstance(data, bytes):
            return data
        return orjson.dumps(data)


def parse_server_info(url: str, status: int, headers: dict[str, str], body: Any) -> ServerInfo:
    """Recognise Elasticsearch 7-9 or OpenSearch 1-3 from `GET /`, else raise OutputError."""
    version = body.get("version") if isinstance(body, dict) else None
    number = version.get("number") if isinstance(version, dict) else None
    if status != 200 or not isinstance(number, str):
        raise OutputError(
            f"the server at {url} is not Elasticsearch or OpenSearch: `GET /` answered "
            f"HTTP {status} without a version number"
        )
    match = re.match(r"(\d+)\.(\d+)", number)
    if match is None:
        raise OutputError(f"the server at {url} reports an unreadable version {number!r}")
    major, minor = int(match.group(1)), int(match.group(2))
    assert isinstance(version, dict)
    if version.get("distribution") == "opensearch":
        if not 1 <= major <= 3:
            log.warning("OpenSearch %s at %s is untested; treating it as OpenSearch 3",
                        number, url)
        return ServerInfo("opensearch", number, major, minor)
    product = {k.lower(): v for k, v in headers.items()}.get("x-elastic-product")
    if (major, minor) >= (7, 14) and product != "Elasticsearch":
        raise OutputError(
            f"the server at {url} is not Elasticsearch or OpenSearch: it reports version "
            f"{number} but not the `X-Elastic-Product: Elasticsearch` header that "
            "Elasticsearch 7.14 and later always send"
        )
    if isinstance(body, dict) and body.get("tagline") != "You Know, for Search" and product is None:
        raise OutputError(
            f"the server at {url} is not Elasticsearch or OpenSearch: unknown `GET /` answer"
        )
    if major < 7:
        raise OutputError(
            f"Elasticsearch {number} at {url} is too old; supported: 7.x, 8.x, 9.x, OpenSearch 1-3"
        )
    return ServerInfo("elasticsearch", number, major, minor)


def is_loopback_url(url: str) -> bool:
    """Whether `url` names this machine (`localhost`, 127.0.0.0/8, ::1), without DNS."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):  # RFC 6761: always loopback
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: it may resolve anywhere
        return False


def compresses(settings: ElasticsearchSettings) -> bool:
    """Whether bulk bodies are gzipped: `on`, `off`, or `auto` = unless every host is loopback
    (gzip costs ~0.3 µs of CPU per event here and more to inflate at the server; over loopback
    bytes are free, over a network 6x fewer of them is worth it)."""
    if settings.compression == "auto":
        return not (settings.hosts and all(is_loopback_url(url) for url in settings.hosts))
    return settings.compression == "on"


def redact_url(url: str) -> str:
    """A URL without user information (`https://user:secret@host` -> `https://***@host`)."""
    return re.sub(r"//[^/@\s]*@", "//***@", url)


class ElasticsearchOutput:
    """Bulk requests to Elasticsearch or OpenSearch through elastic_transport."""

    wants_ids = True

    def __init__(self, settings: ElasticsearchSettings, metrics: ShipMetrics | None = None) -> None:
        if not settings.hosts:
            raise OutputError("elasticsearch.hosts is empty")
        self._settings = settings
        self._metrics = metrics
        self.compress = compresses(settings)
        self._secrets = [
            s for s in (settings.password, settings.api_key, settings.bearer_token) if s
        ]
        self.urls = [redact_url(url) for url in settings.hosts]
        configs = [self._node_config(url) for url in settings.hosts]
        for config in configs:
            self._secrets += [
                value.split(" ", 1)[-1] for key, value in config.headers.items()
                if key.lower() == "authorization"
            ]
        self._transport = Transport(
            configs,
            node_class="urllib3",
            # Bytes in, bytes out for every type (the defaults would append a newline to our
            # gzip body as "NDJSON" and parse answers with the slower stdlib json).
            serializers={mimetype: _RawBytes() for mimetype in _RAW_MIMETYPES},
            # Failover only: a refused connection moves on to the next host; every other
            # retry is the shipper's (with backoff, metrics and the spool behind it).
            max_retries=len(configs) - 1,
            retry_on_status=(),
            retry_on_timeout=False,
            meta_header=False,
        )
        tls = _tls_context(settings) if any(u.startswith("https:") for u in settings.hosts) else None
        self._bulk = BulkClient(
            [endpoint(url, redacted, tls, config.headers)
             for url, redacted, config in zip(settings.hosts, self.urls, configs, strict=True)],
            float(settings.request_timeout),
        )
        self._lock = threading.Lock()
        self.server: ServerInfo | None = None
        self._bulk_lines = ""  # the bulk request's own header lines, chosen by the probe
        self._json_headers: dict[str, str] = {}
        if any(url.startswith("https:") for url in settings.hosts) and not settings.verify_certs:
            log.warning(
                "elasticsearch.verify_certs is off: TLS certificates of %s are NOT verified; "
                "anyone on the path can read the credentials and the data",
                ", ".join(self.urls),
            )

    def _node_config(self, url: str) -> NodeConfig:
        settings = self._settings
        base = url_to_node_config(url, use_default_ports_for_scheme=True)
        headers: dict[str, str] = {"user-agent": USER_AGENT}
        headers.update(base.headers)
        if settings.username:
            raw = f"{settings.username}:{settings.password}".encode()
            headers["authorization"] = "Basic " + base64.b64encode(raw).decode()
        elif settings.api_key:
            key = settings.api_key
            if ":" in key:
                key = base64.b64encode(key.encode()).decode()
            headers["authorization"] = "ApiKey " + key
        elif settings.bearer_token:
            headers["authorization"] = "Bearer " + settings.bearer_token
        tls: dict[str, Any] = {}
        if urlsplit(url).scheme == "https":
            tls = {
                "verify_certs": settings.verify_certs,
                "ca_certs": settings.ca_file or None,
                "client_cert": settings.client_cert or None,
                "client_key": settings.client_key or None,
                "ssl_show_warn": False,
            }
        return NodeConfig(
            scheme=base.scheme, host=base.host, port=base.port, path_prefix=base.path_prefix,
            headers=headers, request_timeout=float(settings.request_timeout),
            connections_per_node=max(4, settings.max_in_flight + 2), http_compress=False, **tls,
        )

    def describe(self) -> str:
        server = f" ({self.server.describe()})" if self.server else ""
        return ", ".join(self.urls) + server

    def redact(self, text: str) -> str:
        """`text` with every credential we know replaced by ***."""
        text = redact_url(text)
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    def _describe(self, error: TransportError) -> str:
        """The transport error with its cause (e.g. the TLS verification failure), redacted."""
        text = str(error)
        detail = str(getattr(error, "message", "") or "")
        if detail and detail not in text:
            text = f"{text}: {detail}"
        causes = [str(e) for e in getattr(error, "errors", ()) if str(e) and str(e) not in text]
        if causes:
            text = f"{text}: {causes[-1]}"
        return self.redact(text)[:500]

    # --- probing -------------------------------------------------------------------------

    def probe(self) -> ServerInfo:
        """`GET /` once; choose media types. Raises OutputUnavailable or OutputError."""
        with self._lock:
            if self.server is not None:
                return self.server
            try:
                response = self._transport.perform_request(
                    "GET", "/", headers={"accept": "application/json"}
                )
            except TransportError as error:
                raise OutputUnavailable(
                    f"cannot reach {', '.join(self.urls)}: {self._describe(error)}"
                ) from None
            status = response.meta.status
            node = response.meta.node
            url = f"{node.scheme}://{node.host}:{node.port}{node.path_prefix}"

            body = _loads(response.body)
            if status == 403:
                # A writer without the `monitor` privilege may not read `GET /`; plain JSON
                # media types work on every supported server, so go on with those.
                log.warning(
                    "%s does not let us read its version (`GET /` answered HTTP 403); "
                    "assuming Elasticsearch/OpenSearch and using plain JSON media types",
                    redact_url(url))
                info = ServerInfo("unknown", "", 0, 0)
                self._choose_headers(info)
                self.server = info
                return info
            if status == 401:
                raise OutputError(
                    f"{redact_url(url)} refused our credentials for `GET /` (HTTP {status}): "
                    f"{self.redact(_short(body))}; check elasticsearch.username/password, "
                    "api_key or bearer_token"
                )
            info = parse_server_info(redact_url(url), status, dict(response.meta.headers), body)
            self._choose_headers(info)
            self.server = info
            log.info("output: %s at %s (bulk bodies %s)", info.describe(), redact_url(url),
                     "gzipped" if self.compress else "not compressed")
            return info

    def _choose_headers(self, info: ServerInfo) -> None:
        if info.flavor == "elasticsearch" and info.major >= 8:
            compat = f"; compatible-with={info.major}"
            bulk = {
                "content-type": "application/vnd.elasticsearch+x-ndjson" + compat,
                "accept": "application/vnd.elasticsearch+json" + compat,
            }
            self._json_headers = {
                "content-type": "application/vnd.elasticsearch+json" + compat,
                "accept": "application/vnd.elasticsearch+json" + compat,
            }
        else:
            bulk = {
                "content-type": "application/x-ndjson", "accept": "application/json",
            }
            self._json_headers = {
                "content-type": "application/json", "accept": "application/json",
            }
        if self.compress:
            bulk["content-encoding"] = "gzip"
        self._bulk_lines = header_lines(bulk)

    # --- requests ------------------------------------------------------------------------

    def send(self, body: bytes, items: int) -> Classification:
        try:
            self.probe()
        except OutputUnavailable as error:
            return transport_failure("connection_error", str(error))
        except OutputError as error:
            if "credentials" in str(error):
                return Classification(RequestOutcome.AUTH, "auth_error", 401, str(error))
            return Classification(RequestOutcome.REJECTED, "rejected", 0, str(error))
        payload = gzip_body(body) if self.compress else body
        try:
            status, answer = self._bulk.post(BULK_PATH, payload, self._bulk_lines)
        except BulkTimeout as error:
            return transport_failure(
                "timeout", f"bulk request timed out after {self._settings.request_timeout}s: "
                f"{self.redact(str(error))}")
        except BulkConnectionError as error:
            return transport_failure("connection_error", self.redact(str(error)))
        if self._metrics is not None:
            self._metrics.bulk_bytes_sent.inc(len(payload))
        if delivered_all_raw(status, answer, items):
            return Classification(RequestOutcome.OK, "ok", status)
        result = classify(status, _loads(answer), items)
        if result.message:
            return Classification(
                result.request, result.label, result.status, self.redact(result.message),
                result.failures,
            )
        return result

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One JSON request (setup: templates, policies). Raises OutputUnavailable."""
        self.probe()
        headers = dict(self._json_headers)
        payload = None if body is None else orjson.dumps(body)
        if payload is None:
            headers.pop("content-type", None)
        try:
            response = self._transport.perform_request(method, path, body=payload, headers=headers)
        except TransportError as error:
            raise OutputUnavailable(self._describe(error)) from None
        return response.meta.status, _loads(response.body)

    def setup(self) -> None:
        """`elasticsearch.setup_on_start`: install the index template once; failures logged."""
        from receiver.ship.template import SetupError, install

        try:
            for step in install(self, self._settings):
                log.info("setup: %s: %s", step.what, step.note)
        except (OutputError, SetupError) as error:
            log.error("setup at start failed (shipping goes on; run `haproxy-receiver setup` "
                      "to retry): %s", self.redact(str(error)))

    def close(self) -> None:
        self._bulk.close()
        self._transport.close()


def _tls_context(settings: ElasticsearchSettings) -> ssl.SSLContext:
    """The bulk connections' TLS: the same choices elastic_transport makes for the probe (the
    configured CA, else certifi's bundle; client certificate; verification unless turned off)."""
    try:
        cafile = settings.ca_file or _certifi_bundle()
        context = ssl.create_default_context(cafile=cafile)
        if settings.client_cert:
            context.load_cert_chain(settings.client_cert, settings.client_key or None)
    except (OSError, ssl.SSLError) as error:
        raise OutputError(f"elasticsearch TLS files: {error}") from None
    if not settings.verify_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _certifi_bundle() -> str | None:
    try:
        import certifi
    except ImportError:
        return None
    return str(certifi.where())


def _loads(data: Any) -> Any:
    if not isinstance(data, bytes | bytearray) or not data:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return bytes(data)


def _short(body: Any) -> str:
    if isinstance(body, dict):
        return orjson.dumps(body).decode()[:300]
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace")[:300]
    return str(body)[:300]
