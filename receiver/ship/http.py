"""HTTP to Elasticsearch, OpenSearch and Kibana through libcurl (pycurl): the one HTTP stack.

The probe, `setup`, `test output`, every bulk request and the Kibana import go through
`HttpClient`, so one TLS configuration (`TlsConfig`), one proxy rule (`proxy_for`) and one
redaction rule (receiver.redaction) apply to all of them. Elasticsearch requests reach it
through the official client: its node class (receiver/ship/transport.py, `CurlNode`) holds one
`HttpClient` per host, and the client's node pool chooses the host.

Why libcurl: it is maintained, it is what rsyslog's omelasticsearch and many shippers use, and
it gets right what our hand-written client did not: an unsolicited `100 Continue`, an
answer (413) that arrives while the body is still being sent, `204`/`304` without a length,
HTTP/1.0 answers delimited by the connection's end, a reset after a complete answer, chunked
trailers, proxies (CONNECT, SOCKS) and every TLS option. Its cost per bulk request is within a
few tens of µs of the hand-written client's and a fraction of urllib3's (bench/http_bench.py,
figures in the README's dependency section). pip's wheels bundle libcurl and OpenSSL, so
nothing is compiled and the system's libcurl is never used.

Guarantees: a request either returns the final answer (any status, 1xx skipped) or raises
`HttpTimeout` (sent, no answer in time) or `HttpUnavailable` (no connection, TLS refused, the
connection broke before a whole answer, an answer larger than `MAX_ANSWER`), with a message
that is already redacted. A kept connection the server closed while idle is
replaced by libcurl itself. Handles are pooled per host and used by one thread at a time.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import os
import ssl
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import pycurl

from receiver.config import fingerprint_hex
from receiver.redaction import redact

if TYPE_CHECKING:
    from receiver.config import ElasticsearchSettings

log = logging.getLogger(__name__)

USER_AGENT = "haproxy-receiver"

# The largest answer taken: a bulk answer is a few hundred bytes per item (~17 MB for 100,000
# items without filter_path); anything larger is not Elasticsearch and must not fill memory.
MAX_ANSWER = 64 * 1024 * 1024
# libcurl sends a POSTFIELDS body in pieces of its upload buffer (64 KiB by default): 8 send
# calls, polls and reads for a 500 KB body instead of 1. Measured (min of 8 rounds of 500): a
# 500 KB POST took 190-220 µs of CPU with 64 KiB, 115-145 µs with 256 KiB to 2 MiB.
UPLOAD_BUFFER = 1024 * 1024
_TLS_VERSIONS = {"1.2": pycurl.SSLVERSION_TLSv1_2, "1.3": pycurl.SSLVERSION_TLSv1_3}
_TLS_REFUSED = frozenset({
    pycurl.E_SSL_CONNECT_ERROR, pycurl.E_PEER_FAILED_VERIFICATION, pycurl.E_SSL_CACERT_BADFILE,
    pycurl.E_SSL_CERTPROBLEM,
})


class HttpError(Exception):
    """No usable answer (the message is redacted and names the host), or a TLS file that
    cannot be read when the client is made."""


class HttpUnavailable(HttpError):
    """No connection, TLS refused, or the connection broke before a whole answer arrived."""


class HttpTimeout(HttpError):
    """The request was sent but no whole answer came within the timeout."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    header_lines: tuple[bytes, ...]  # as received, 1xx answers' included
    body: bytes
    url: str  # the host that answered, redacted

    @property
    def headers(self) -> dict[str, str]:
        """The final answer's headers, names in lower case (a 1xx answer's are skipped)."""
        headers: dict[str, str] = {}
        for line in self.header_lines:
            if line.startswith(b"HTTP/"):  # a new answer begins: forget the one before
                headers.clear()
                continue
            name, sep, value = line.partition(b":")
            if sep:
                headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        return headers


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """The TLS side of every connection, built once from the settings.

    Trust: the OS store (SSL_CERT_FILE / SSL_CERT_DIR, else OpenSSL's default file and
    directory, as Python's `ssl` finds them) plus certifi's bundle; or, when `ca_file` or
    `ca_dir` is set, those only. A certificate whose SHA-256 is `fingerprint` and that the
    server presents is trusted in addition. Host names are checked whenever certificates are.
    """

    verify: bool = True
    ca_file: str = ""
    ca_dir: str = ""
    fingerprint: str = ""  # 64 lower-case hex digits
    client_cert: str = ""
    client_key: str = ""
    key_passphrase: str = ""
    min_version: str = "1.2"

    @classmethod
    def from_settings(cls, settings: ElasticsearchSettings) -> TlsConfig:
        return cls(
            verify=settings.verify_certs, ca_file=settings.ca_file, ca_dir=settings.ca_dir,
            fingerprint=fingerprint_hex(settings.ca_trusted_fingerprint)
            if settings.ca_trusted_fingerprint else "",
            client_cert=settings.client_cert, client_key=settings.client_key,
            key_passphrase=settings.client_key_passphrase, min_version=settings.tls_min_version,
        )

    def check_files(self) -> None:
        """Raise HttpError naming the setting when a TLS file or directory cannot be read."""
        for name, path in (("ca_file", self.ca_file), ("client_cert", self.client_cert),
                           ("client_key", self.client_key)):
            if path and not os.access(path, os.R_OK):
                raise HttpError(f"elasticsearch.{name} = {path!r}: no readable file there")
        if self.ca_dir and not os.path.isdir(self.ca_dir):
            raise HttpError(f"elasticsearch.ca_dir = {self.ca_dir!r} is not a directory")

    def apply(self, curl: pycurl.Curl, anchors: bytes = b"") -> None:
        """Set this configuration on a handle, for the server and for an HTTPS proxy.
        `anchors`: PEM certificates trusted in addition (the fingerprint's match)."""
        curl.setopt(pycurl.SSLVERSION, _TLS_VERSIONS[self.min_version])
        if self.client_cert:
            curl.setopt(pycurl.SSLCERT, self.client_cert)
            curl.setopt(pycurl.SSLCERTTYPE, "PEM")
            if self.client_key:
                curl.setopt(pycurl.SSLKEY, self.client_key)
            if self.key_passphrase:
                curl.setopt(pycurl.KEYPASSWD, self.key_passphrase)
        check = 1 if self.verify else 0
        curl.setopt(pycurl.SSL_VERIFYPEER, check)
        curl.setopt(pycurl.SSL_VERIFYHOST, 2 * check)
        curl.setopt(pycurl.PROXY_SSL_VERIFYPEER, check)
        curl.setopt(pycurl.PROXY_SSL_VERIFYHOST, 2 * check)
        cafile, capath, blob = self.trust_sources()
        blob += anchors
        # Every source set or unset explicitly: the wheel's libcurl has a compiled-in default
        # bundle path that must not add to (or, on another distribution, miss from) our trust.
        for file_option, path_option, blob_option in (
            (pycurl.CAINFO, pycurl.CAPATH, pycurl.CAINFO_BLOB),
            (pycurl.PROXY_CAINFO, pycurl.PROXY_CAPATH, pycurl.PROXY_CAINFO_BLOB),
        ):
            _set_or_unset(curl, file_option, cafile)
            _set_or_unset(curl, path_option, capath)
            if blob:
                curl.setopt(blob_option, blob)
            else:
                curl.unsetopt(blob_option)

    def trust_sources(self) -> tuple[str, str, bytes]:
        """(CA file, CA directory, extra PEM) trusted, read from the environment now."""
        if self.ca_file or self.ca_dir:
            return self.ca_file, self.ca_dir, b""
        paths = ssl.get_default_verify_paths()  # honours SSL_CERT_FILE and SSL_CERT_DIR
        return paths.cafile or "", paths.capath or "", _certifi_pem()


def _set_or_unset(curl: pycurl.Curl, option: int, value: str) -> None:
    if value:
        curl.setopt(option, value)
    else:
        curl.unsetopt(option)


_CERTIFI: list[bytes] = []


def _certifi_pem() -> bytes:
    if not _CERTIFI:
        import certifi

        with open(certifi.where(), "rb") as handle:
            _CERTIFI.append(handle.read())
    return _CERTIFI[0]


def proxy_for(url: str, configured: str, environ: Mapping[str, str] | None = None) -> str:
    """The proxy for `url`, "" for a direct connection: `configured` when set; else from the
    environment as curl reads it, either case (lower case first): `https_proxy` for https,
    `http_proxy` for http, then `all_proxy`, unless `no_proxy` names the host."""
    if configured:
        return configured
    env = os.environ if environ is None else environ
    parts = urlsplit(url)

    def variable(name: str) -> str:
        return env.get(name) or env.get(name.upper()) or ""

    proxy = variable(f"{parts.scheme}_proxy") or variable("all_proxy")
    if proxy and _bypassed(parts.hostname or "", parts.port, variable("no_proxy")):
        return ""
    return proxy


def _bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether NO_PROXY names `host`: `*`, the host, a domain it is in (`example.com` and
    `.example.com` both match `es.example.com`), `host:port`, or a network (`10.0.0.0/8`)."""
    host = host.lower().strip("[]")
    for entry in (item.strip().lower() for item in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and entry_port != str(port):
            continue
        name = name.strip("[]").lstrip(".")
        if host == name or host.endswith("." + name):
            return True
        if "/" in name:
            try:
                if ipaddress.ip_address(host) in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                continue
    return False


@dataclass(frozen=True, slots=True)
class ConnectionOptions:
    """Everything a client needs besides its hosts."""

    tls: TlsConfig = field(default_factory=TlsConfig)
    proxy: str = ""  # "" = from the environment
    headers: Mapping[str, str] = field(default_factory=dict)  # sent with every request
    timeout: float = 30.0
    secrets: tuple[str, ...] = ()  # cut out of every message (receiver.redaction)


def authorization(username: str = "", password: str = "", api_key: str = "",
                  bearer_token: str = "") -> str:
    """The Authorization header value for these credentials ("" for none): Basic for a user,
    ApiKey (an `id:key` pair is encoded as the API expects), or Bearer, in that order."""
    if username:
        return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    if api_key:
        key = base64.b64encode(api_key.encode()).decode() if ":" in api_key else api_key
        return "ApiKey " + key
    if bearer_token:
        return "Bearer " + bearer_token
    return ""


def connection_options(settings: ElasticsearchSettings) -> ConnectionOptions:
    """TLS, proxy, timeout, credentials and the secrets to redact, from the settings."""
    headers = {"user-agent": USER_AGENT}
    auth = authorization(settings.username, settings.password, settings.api_key,
                         settings.bearer_token)
    if auth:
        headers["authorization"] = auth
    secrets = [settings.password, settings.api_key, settings.bearer_token,
               settings.client_key_passphrase, auth.partition(" ")[2]]
    return ConnectionOptions(TlsConfig.from_settings(settings), settings.proxy, headers,
                             float(settings.request_timeout), tuple(s for s in secrets if s))


class _Handle:
    """A libcurl handle and what its current request gathered. The header and body lists are
    cleared in place, so that their C-level `append` stays bound as libcurl's callbacks."""

    __slots__ = ("body", "curl", "header_lines", "last", "size", "too_large")

    def __init__(self, curl: pycurl.Curl) -> None:
        self.curl = curl
        self.header_lines: list[bytes] = []
        self.body: list[bytes] = []
        self.size = 0
        self.too_large = False
        self.last: tuple[str, Any, str] = ("", (), "")  # URL, headers and method set last

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > MAX_ANSWER:
            self.too_large = True
            return 0  # libcurl stops the transfer
        self.body.append(data)
        return len(data)


class _Host:
    """One URL of the list: its proxy, the fingerprint's anchor, idle handles."""

    def __init__(self, url: str, secrets: Sequence[str], proxy: str) -> None:
        parts = urlsplit(url)
        self.https = parts.scheme == "https"
        port = parts.port or (443 if self.https else 80)
        host = parts.hostname or "localhost"
        host = f"[{host}]" if ":" in host else host
        self.base = f"{parts.scheme}://{host}:{port}{parts.path.rstrip('/')}"
        self.url = redact(url, secrets)
        # `https://user:password@host`: Basic authentication, unless an Authorization header
        # is given (a header replaces the one libcurl would build).
        self.userinfo = (f"{unquote(parts.username)}:{unquote(parts.password or '')}"
                         if parts.username else "")
        self.proxy = proxy
        self.anchors: bytes | None = None  # None: fingerprint not looked up (yet)
        self.presented: list[str] = []  # fingerprints the server presented, for messages
        self.idle: list[_Handle] = []
        self.lock = threading.Lock()


def url_secrets(urls: Sequence[str], options: ConnectionOptions) -> tuple[str, ...]:
    """What is cut out of every message: the options' secrets and the passwords embedded in
    the URLs and the proxy (those travel as Basic authentication; libcurl does that)."""
    secrets = list(options.secrets)
    for url in [*urls, options.proxy]:
        password = urlsplit(url).password if url else None
        if password:
            secrets.append(password)
    return tuple(secrets)


class HttpClient:
    """Requests to one URL (an Elasticsearch node, or Kibana). Choosing among several hosts is
    the Elasticsearch client's node pool's work (receiver/ship/transport.py), not this class's."""

    def __init__(self, url: str, options: ConnectionOptions) -> None:
        if not url:
            raise ValueError("no URL to connect to")
        options.tls.check_files()
        self.options = options
        self._secrets = url_secrets([url], options)
        self._host = _Host(url, self._secrets, proxy_for(url, options.proxy))
        self._base_headers = [f"{name}: {value}" for name, value in options.headers.items()]
        # No `Expect: 100-continue` (libcurl's default above 1 MiB): servers that ignore it
        # would cost a 1 s wait per request; an early 413 is read while sending anyway.
        self._base_headers.append("Expect:")
        self._header_lists: dict[tuple[tuple[str, str], ...], list[str]] = {}
        self._closed = False
        self.url = self._host.url
        if not options.tls.verify and self._host.https:
            log.warning(
                "elasticsearch.verify_certs is off: TLS certificates of %s are NOT verified; "
                "anyone on the path can read the credentials and the data", self.url)
        if self._host.proxy:
            log.info("connecting to %s through the proxy %s", self.url,
                     self.redact(self._host.proxy))

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Response:
        """One request; raises HttpUnavailable or HttpTimeout."""
        key = tuple((headers or {}).items())
        lines = self._header_lists.get(key)
        if lines is None:
            lines = self._base_headers + [f"{name}: {value}" for name, value in key]
            if len(self._header_lists) < 64:  # bulk, JSON and GET: a handful in practice
                self._header_lists[key] = lines
        return self._request_to(self._host, method, path, body, key, lines)

    def _request_to(self, host: _Host, method: str, path: str, body: bytes | None,
                    key: tuple[tuple[str, str], ...], lines: list[str]) -> Response:
        handle = self._take(host)
        curl = handle.curl
        del handle.header_lines[:], handle.body[:]
        handle.size, handle.too_large = 0, False
        url = host.base + path
        # A bulk request repeats the last one's URL, headers and method: ~5 µs of setopt saved.
        if handle.last != (url, key, method):
            curl.setopt(pycurl.URL, url)
            curl.setopt(pycurl.HTTPHEADER, lines)
            curl.setopt(pycurl.HTTPGET, 1)  # back to a plain GET: clears NOBODY and POST
            if method == "HEAD":
                curl.setopt(pycurl.NOBODY, 1)
            _set_or_unset(curl, pycurl.CUSTOMREQUEST,
                          "" if method in ("GET", "HEAD", "POST") else method)
            handle.last = (url, key, method)
        if body is not None:
            curl.setopt(pycurl.POSTFIELDS, body)  # pycurl keeps a reference, no copy
        try:
            curl.perform()
            return Response(curl.getinfo(pycurl.RESPONSE_CODE), tuple(handle.header_lines),
                            b"".join(handle.body), host.url)
        except pycurl.error as error:
            raise self._failure(host, handle, error) from None
        finally:
            if body is not None:
                curl.setopt(pycurl.POSTFIELDS, b"")  # drop the reference to the body
            self._give_back(host, handle)

    def _failure(self, host: _Host, handle: _Handle, error: pycurl.error) -> HttpError:
        code, message = error.args[0], str(error.args[1] if len(error.args) > 1 else error)
        if handle.too_large or code == pycurl.E_FILESIZE_EXCEEDED:
            return HttpUnavailable(
                f"{host.url}: an answer larger than {MAX_ANSWER >> 20} MiB is not a bulk answer")
        text = self.redact(f"{host.url}: {message}")
        if code == pycurl.E_OPERATION_TIMEDOUT and handle.curl.getinfo(pycurl.PRETRANSFER_TIME) > 0:
            return HttpTimeout(f"no answer within {self.options.timeout:g}s from {text}")
        if code == pycurl.E_PEER_FAILED_VERIFICATION and not self.options.tls.fingerprint and (
                "issuer" in message or "self-signed" in message or "self signed" in message):
            text += ("; trust its CA with elasticsearch.ca_file, ca_dir or "
                     "ca_trusted_fingerprint, or in the OS trust store")
        if code in _TLS_REFUSED and self.options.tls.fingerprint and host.https:
            if not host.anchors:
                text += ("; no certificate it presented matches "
                         "elasticsearch.ca_trusted_fingerprint (it presented: "
                         + (", ".join(host.presented) or "nothing readable") + ")")
            with host.lock:  # the server may have new certificates: look again next time
                host.anchors = None
                idle, host.idle = host.idle, []
            for handle in idle:
                handle.curl.close()
        return HttpUnavailable(text)

    # --- handles -------------------------------------------------------------------------

    def _take(self, host: _Host) -> _Handle:
        with host.lock:
            if host.idle:
                return host.idle.pop()
            if host.anchors is None:
                host.anchors = self._find_anchor(host)
        return self._new_handle(host)

    def _give_back(self, host: _Host, handle: _Handle) -> None:
        with host.lock:
            if not self._closed and host.anchors is not None:
                host.idle.append(handle)
                return
        handle.curl.close()

    def _new_handle(self, host: _Host) -> _Handle:
        handle = _Handle(pycurl.Curl())
        curl = handle.curl
        self._configure(curl, host)
        curl.setopt(pycurl.WRITEFUNCTION, handle.write)
        curl.setopt(pycurl.HEADERFUNCTION, handle.header_lines.append)
        curl.setopt(pycurl.MAXFILESIZE_LARGE, MAX_ANSWER)
        curl.setopt(pycurl.UPLOAD_BUFFERSIZE, UPLOAD_BUFFER)
        self.options.tls.apply(curl, host.anchors or b"")
        return handle

    def _configure(self, curl: pycurl.Curl, host: _Host) -> None:
        """What every handle of `host` shares, the fingerprint lookup's included."""
        timeout_ms = max(1, int(self.options.timeout * 1000))
        curl.setopt(pycurl.NOSIGNAL, 1)  # threads: no SIGALRM for DNS timeouts
        curl.setopt(pycurl.TIMEOUT_MS, timeout_ms)
        curl.setopt(pycurl.CONNECTTIMEOUT_MS, timeout_ms)
        curl.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        curl.setopt(pycurl.TCP_KEEPALIVE, 1)  # NAT and load balancers forget idle connections
        curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        curl.setopt(pycurl.FOLLOWLOCATION, 0)
        # "" = no proxy, even when the environment names one (we decided in proxy_for).
        curl.setopt(pycurl.PROXY, host.proxy)
        if host.userinfo:
            curl.setopt(pycurl.USERPWD, host.userinfo)

    def _find_anchor(self, host: _Host) -> bytes:
        """The PEM of the certificate the server presents whose SHA-256 is the configured
        fingerprint, b"" when none (or no fingerprint). A handshake without verification and
        without a request: nothing but the TLS hello reaches the server before we trust it."""
        tls = self.options.tls
        if not (tls.fingerprint and tls.verify and host.https):
            return b""
        curl = pycurl.Curl()
        try:
            self._configure(curl, host)
            TlsConfig(verify=False, client_cert=tls.client_cert, client_key=tls.client_key,
                      key_passphrase=tls.key_passphrase, min_version=tls.min_version).apply(curl)
            curl.setopt(pycurl.URL, host.base + "/")
            curl.setopt(pycurl.CONNECT_ONLY, 1)
            curl.setopt(pycurl.OPT_CERTINFO, 1)
            curl.perform()
            chain = curl.getinfo(pycurl.INFO_CERTINFO)
        except pycurl.error as error:
            log.debug("fingerprint lookup at %s failed: %s", host.url, self.redact(str(error)))
            return b""  # the real request reports the connection problem
        finally:
            curl.close()
        host.presented = []
        for certificate in chain:
            pem = dict(certificate).get("Cert", "")
            if not pem:
                continue
            digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
            host.presented.append(digest)
            if digest == tls.fingerprint:
                return bytes(pem.encode("ascii"))
        log.warning("no certificate presented by %s has the SHA-256 of "
                    "elasticsearch.ca_trusted_fingerprint (it presented: %s)",
                    host.url, ", ".join(host.presented))
        return b""

    def close(self) -> None:
        self._closed = True
        host = self._host
        with host.lock:
            idle, host.idle = host.idle, []
        for handle in idle:
            handle.curl.close()
