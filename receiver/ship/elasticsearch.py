"""The Elasticsearch/OpenSearch output: server probe, media types, bulk requests, setup requests.

Every request goes through the official `elasticsearch` client (receiver/ship/transport.py),
whose nodes send through receiver.ship.http (libcurl): the probe, `setup`, `test output` and
bulk share one TLS configuration, one proxy rule, and the client's node pool over the hosts
(round robin, a failed node put aside and tried again after its back-off). At the first
request it probes `GET /` and picks the media types each server accepts: Elasticsearch 8/9 get
`compatible-with=<major>` types, Elasticsearch 7 and OpenSearch 1-3 plain JSON/NDJSON. A server
that is neither is refused with a clear error. Credentials travel only in the Authorization
header; every text from the server or the HTTP stack (error messages, per-item reasons) passes
through `redact` (receiver.redaction) before it leaves this module, so logs, metrics and the
dead-letter file never see them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import orjson

from receiver.config import ElasticsearchSettings
from receiver.metrics import ShipMetrics
from receiver.redaction import redact
from receiver.ship.classify import (
    Classification,
    RequestOutcome,
    classify,
    classify_error,
    delivered_all_raw,
    failure_text,
    transport_failure,
)
from receiver.ship.encode import gzip_body
from receiver.ship.errors import OutputError, OutputUnavailable
from receiver.ship.http import HttpError, connection_options, url_secrets

if TYPE_CHECKING:
    from receiver.ship.transport import Answer, Cluster

log = logging.getLogger(__name__)

# Given by make_output, so that this module imports neither of the modules that use it:
# sets up the destination for `setup_on_start` (receiver.ship.setup.setup_at_start) ...
Installer = Callable[["ElasticsearchOutput", ElasticsearchSettings], Iterable[object]]
# ... and decides where documents go on this server (receiver.ship.destination.resolve).
Resolver = Callable[["ElasticsearchOutput", ElasticsearchSettings], ElasticsearchSettings]

# Only what the shipper reads: smaller answers to parse (ES and OpenSearch both support it).
BULK_PATH = "/_bulk?filter_path=errors,items.*.status,items.*.error"


def bulk_path(index: str | None) -> str:
    """The bulk request's target: `/<index>/_bulk` when the request names the index its
    action lines leave out (EncodedBatch.request_index), else `/_bulk`."""
    return BULK_PATH if index is None else "/" + quote(index, safe="") + BULK_PATH


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


class ElasticsearchOutput:
    """Bulk requests to Elasticsearch or OpenSearch (the `elasticsearch` client on libcurl)."""

    wants_ids = True

    def __init__(self, settings: ElasticsearchSettings, metrics: ShipMetrics | None = None,
                 installer: Installer | None = None, resolver: Resolver | None = None
                 ) -> None:
        if not settings.hosts:
            raise OutputError("elasticsearch.hosts is empty")
        self._settings = settings
        self._installer = installer
        self._resolver = resolver
        self._metrics = metrics
        self.compress = compresses(settings)
        options = connection_options(settings)
        self._secrets = url_secrets(settings.hosts, options)
        self.urls = [redact(url, self._secrets) for url in settings.hosts]
        # Imported here, in the worker making its output: the receiving process imports this
        # module's names, never the client (~0.13 s of CPU, ~15 MiB).
        from receiver.ship.transport import Cluster

        try:
            self._cluster: Cluster = Cluster(settings.hosts, options)
        except HttpError as error:  # a TLS file that cannot be read
            raise OutputError(str(error)) from None
        self._checked = False  # Elasticsearch 8/9: through the client's product-checked method
        self._lock = threading.Lock()
        self.server: ServerInfo | None = None
        self._bulk_headers: dict[str, str] = {}  # chosen by the probe
        self._json_headers: dict[str, str] = {}

    def describe(self) -> str:
        server = f" ({self.server.describe()})" if self.server else ""
        return ", ".join(self.urls) + server

    def redact(self, text: str) -> str:
        """`text` without any credential (receiver.redaction, with our secrets)."""
        return redact(text, self._secrets)

    # --- probing -------------------------------------------------------------------------

    def probe(self) -> ServerInfo:
        """`GET /` once; choose media types. Raises OutputUnavailable or OutputError."""
        with self._lock:
            if self.server is not None:
                return self.server
            # Through the transport: which server this is, and so which way to reach it, is
            # what the answer tells.
            try:
                response = self._cluster.request(
                    "GET", "/", None, {"accept": "application/json"}, checked=False)
            except Exception as error:
                raise OutputUnavailable(f"cannot reach {self._unreachable(error)}") from None
            info = self._server_info(response)
            self._choose_headers(info)
            self.server = info
            return info

    def _unreachable(self, error: Exception) -> str:
        """The client's error for a request that got no answer, as text; anything else (a
        programming error) is raised."""
        from elastic_transport import TransportError

        if not isinstance(error, TransportError):
            raise error
        return self.redact(failure_text(error))

    def _server_info(self, response: Answer) -> ServerInfo:
        status, url = response.status, self._node_name(response)
        body = _loads(response.body)
        if status == 403:
            # A writer without the `monitor` privilege may not read `GET /`; plain JSON
            # media types work on every supported server, so go on with those.
            log.warning(
                "%s does not let us read its version (`GET /` answered HTTP 403); "
                "assuming Elasticsearch/OpenSearch and using plain JSON media types", url)
            return ServerInfo("unknown", "", 0, 0)
        if status == 401:
            raise OutputError(
                f"{url} refused our credentials for `GET /` (HTTP {status}): "
                f"{self.redact(_short(body))}; check elasticsearch.username/password, "
                "api_key or bearer_token"
            )
        info = parse_server_info(url, status, dict(response.headers), body)
        log.info("output: %s at %s (bulk bodies %s)", info.describe(), url,
                 "gzipped" if self.compress else "not compressed")
        return info

    def _node_name(self, response: Answer) -> str:
        """The host that answered, as configured and redacted."""
        return response.node if response.node else ", ".join(self.urls)

    def _choose_headers(self, info: ServerInfo) -> None:
        self._checked = info.flavor == "elasticsearch" and info.major >= 8
        if info.flavor == "elasticsearch" and info.major >= 8:
            compat = f"; compatible-with={info.major}"
            self._bulk_headers = {
                "content-type": "application/vnd.elasticsearch+x-ndjson" + compat,
                "accept": "application/vnd.elasticsearch+json" + compat,
            }
            self._json_headers = {
                "content-type": "application/vnd.elasticsearch+json" + compat,
                "accept": "application/vnd.elasticsearch+json" + compat,
            }
        else:
            self._bulk_headers = {"content-type": "application/x-ndjson", "accept": "application/json"}
            self._json_headers = {"content-type": "application/json", "accept": "application/json"}
        if self.compress:
            self._bulk_headers["content-encoding"] = "gzip"

    # --- requests ------------------------------------------------------------------------

    def send(self, body: bytes, items: int, index: str | None = None) -> Classification:
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
            response = self._cluster.request("POST", bulk_path(index), payload,
                                             self._bulk_headers, self._checked)
        except Exception as error:  # the client's error types: classify_error says what they mean
            return self._redacted(classify_error(error, items))
        if self._metrics is not None:
            self._metrics.bulk_bytes_sent.inc(len(payload))
        if delivered_all_raw(response.status, response.body, items):
            return Classification(RequestOutcome.OK, "ok", response.status)
        return self._redacted(classify(response.status, _loads(response.body), items))

    def _redacted(self, result: Classification) -> Classification:
        """The classification with every text from the server redacted (an item's reason may
        echo our Authorization header: it goes to the log and the dead-letter file)."""
        if not result.message and not result.failures:
            return result
        return dataclasses.replace(
            result, message=self.redact(result.message),
            failures=tuple(
                dataclasses.replace(failure, error_type=self.redact(failure.error_type),
                                    reason=self.redact(failure.reason))
                for failure in result.failures),
        )

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One JSON request (setup: templates, policies). Raises OutputUnavailable."""
        self.probe()
        headers = dict(self._json_headers)
        payload = None if body is None else orjson.dumps(body)
        if payload is None:
            headers.pop("content-type", None)
        try:
            response = self._cluster.answer(method, path, payload, headers, self._checked)
        except Exception as error:
            from elasticsearch import UnsupportedProductError

            if isinstance(error, UnsupportedProductError):
                raise OutputError(classify_error(error, 0).message) from None
            raise OutputUnavailable(self._unreachable(error)) from None
        return response.status, _loads(response.body)

    def setup(self) -> None:
        """`elasticsearch.setup_on_start`: what `make_output` gave as the installer (the index
        template, receiver/ship/setup.py); failures are logged, shipping goes on."""
        if self._installer is None:
            return
        try:
            for step in self._installer(self, self._settings):
                log.info("setup: %s", step)
        except Exception as error:  # OutputError, SetupError: never a reason to stop shipping
            log.error("setup at start failed (shipping goes on; run `haproxy-receiver setup` "
                      "to retry): %s", self.redact(str(error)))

    def destination(self) -> ElasticsearchSettings:
        """The settings with `data_stream` decided for this server: what `make_output` gave as
        the resolver (receiver/ship/destination.py); the settings as they are without one."""
        if self._resolver is None:
            return self._settings
        return self._resolver(self, self._settings)

    def close(self) -> None:
        self._cluster.close()


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
