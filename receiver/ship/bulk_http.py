"""HTTP/1.1 for the bulk requests only: keep-alive connections, failover between hosts.

Why not elastic_transport here: through it, urllib3 and http.client a bulk request cost ~0.4 ms
of CPU (http.client parses every answer's headers with the `email` package), which at low rates
(small batches, one request every few ms) was half the ship process's CPU. A bulk request is
always the same: POST, a body with a known length, an answer with a length or in chunks. The
rest (the probe, `setup`) keeps elastic_transport.

Each connection carries one request at a time; idle ones wait in a pool per host. A request on
a reused connection that finds it closed by the server (idle keep-alive timeout) is sent once
more on a new one: bulk actions are `create` with ids, so a request that did arrive is answered
409 per item the second time, never indexed twice.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from receiver.addresses import format_host_port

MAX_HEAD = 64 * 1024  # an answer's status line and headers; Elasticsearch's are < 1 KiB
READ_SIZE = 256 * 1024
# The largest answer taken: a bulk answer is a few hundred bytes per item (~17 MB for 100,000
# items without filter_path); anything larger is not Elasticsearch and must not fill memory.
MAX_ANSWER = 64 * 1024 * 1024


class BulkTimeout(Exception):
    """No answer within the request timeout."""


class BulkConnectionError(Exception):
    """No connection, or it broke before a whole answer arrived."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One host of `elasticsearch.hosts`, as a connection needs it."""

    url: str  # without credentials, for messages
    host: str
    port: int
    tls: ssl.SSLContext | None
    path_prefix: str
    headers: str  # `name: value\r\n` lines sent with every request (user agent, credentials)

    @property
    def authority(self) -> str:
        """`host:port` for the Host header, an IPv6 address in brackets."""
        return format_host_port(self.host, self.port)


def endpoint(url: str, redacted: str, tls: ssl.SSLContext | None, headers: Mapping[str, str]) -> Endpoint:
    parts = urlsplit(url)
    https = parts.scheme == "https"
    return Endpoint(redacted, parts.hostname or "localhost", parts.port or (443 if https else 80),
                    tls if https else None, parts.path.rstrip("/"), header_lines(headers))


def header_lines(headers: Mapping[str, str]) -> str:
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items())


class _Connection:
    def __init__(self, target: Endpoint, timeout: float) -> None:
        self.target = target
        sock = socket.create_connection((target.host, target.port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if target.tls is not None:
                sock = target.tls.wrap_socket(sock, server_hostname=target.host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.used = False  # has answered a request before (may be closed by the server now)

    def exchange(self, head: bytes, body: bytes) -> tuple[int, bytes, bool]:
        """Send one request; returns (status, body, whether the connection stays usable)."""
        sock = self.sock
        if self.target.tls is None:
            sent = sock.sendmsg([head, body])  # one syscall for both, no copy; may be partial
            if sent < len(head):
                sock.sendall(head[sent:])
                sock.sendall(body)
            elif sent < len(head) + len(body):
                sock.sendall(memoryview(body)[sent - len(head):])
        else:
            sock.sendall(head)
            sock.sendall(body)
        self.used = True
        return _read_answer(self.sock)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _read_answer(sock: socket.socket) -> tuple[int, bytes, bool]:
    data = bytearray()
    end = -1
    while end < 0:
        if len(data) > MAX_HEAD:
            raise BulkConnectionError("the answer's headers are too long")
        chunk = sock.recv(READ_SIZE)
        if not chunk:
            raise BulkConnectionError("the server closed the connection before answering")
        data += chunk
        end = data.find(b"\r\n\r\n")
    status, length, chunked, keep = _parse_head(bytes(data[:end]))
    rest = data[end + 4:]
    if chunked:
        return status, _read_chunked(sock, rest), keep
    if length is None:  # no length: the body ends with the connection
        while chunk := sock.recv(READ_SIZE):
            rest += chunk
            _check_size(len(rest))
        return status, bytes(rest), False
    _check_size(length)
    while len(rest) < length:
        chunk = sock.recv(min(max(READ_SIZE, length - len(rest)), MAX_ANSWER))
        if not chunk:
            raise BulkConnectionError(f"the answer was cut after {len(rest)} of {length} bytes")
        rest += chunk
    return status, bytes(rest[:length]), keep


def _check_size(size: int) -> None:
    if size > MAX_ANSWER:
        raise BulkConnectionError(f"an answer of {size} bytes is larger than any bulk answer")


def _parse_head(head: bytes) -> tuple[int, int | None, bool, bool]:
    """(status, content length or None, chunked, keep-alive) from the status line and headers."""
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/1.") or not code.isdigit():
        raise BulkConnectionError(f"not an HTTP answer: {lines[0][:80]!r}")
    keep = version == b"HTTP/1.1"
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                raise BulkConnectionError(f"bad content-length {value[:40]!r}") from None
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            token = value.strip().lower()
            keep = token == b"keep-alive" or (keep and token != b"close")
    return int(code), length, chunked, keep


def _read_chunked(sock: socket.socket, data: bytearray) -> bytes:
    body = bytearray()
    while True:
        line_end = data.find(b"\r\n")
        while line_end < 0:
            data += _more(sock)
            line_end = data.find(b"\r\n")
        try:
            size = int(bytes(data[:line_end]).split(b";", 1)[0], 16)
        except ValueError:
            raise BulkConnectionError("bad chunk size in the answer") from None
        start = line_end + 2
        if size == 0:  # then trailer lines, if any, and an empty line
            while data.find(b"\r\n\r\n", start - 2) < 0:
                data += _more(sock)
            return bytes(body)
        _check_size(len(body) + size)
        while len(data) < start + size + 2:
            data += _more(sock)
        body += data[start : start + size]
        del data[: start + size + 2]


def _more(sock: socket.socket) -> bytes:
    chunk = sock.recv(READ_SIZE)
    if not chunk:
        raise BulkConnectionError("the server closed the connection in the middle of the answer")
    return chunk


class BulkClient:
    """POSTs to the first host that answers, starting with the one that answered last."""

    def __init__(self, endpoints: list[Endpoint], timeout: float) -> None:
        self._endpoints = endpoints
        self._timeout = timeout
        self._idle: list[list[_Connection]] = [[] for _ in endpoints]
        self._lock = threading.Lock()
        self._current = 0

    def post(self, path: str, body: bytes, headers: str) -> tuple[int, bytes]:
        """`headers`: `header_lines` of this request's own (content type, encoding)."""
        # Raises BulkTimeout, or BulkConnectionError when no host took the request.
        failures: list[str] = []
        count = len(self._endpoints)
        first = self._current
        for step in range(count):
            index = (first + step) % count
            try:
                answer = self._post_to(index, path, body, headers)
            except BulkConnectionError as error:
                failures.append(f"{self._endpoints[index].url}: {error}")
                continue
            self._current = index
            return answer
        raise BulkConnectionError("; ".join(failures))

    def _post_to(self, index: int, path: str, body: bytes, headers: str) -> tuple[int, bytes]:
        target = self._endpoints[index]
        head = (
            f"POST {target.path_prefix}{path} HTTP/1.1\r\nHost: {target.authority}\r\n"
            f"{target.headers}{headers}content-length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        while True:
            connection = self._take(index)
            reused = connection.used
            try:
                status, answer, keep = connection.exchange(head, body)
            except TimeoutError:
                connection.close()
                raise BulkTimeout(f"no answer from {target.url} within {self._timeout}s") from None
            except (OSError, BulkConnectionError) as error:
                connection.close()
                if reused:  # most likely closed while idle: once more on a new connection
                    continue
                raise BulkConnectionError(_reason(error)) from None
            if keep:
                self._give_back(index, connection)
            else:
                connection.close()
            return status, answer

    def _take(self, index: int) -> _Connection:
        with self._lock:
            if self._idle[index]:
                return self._idle[index].pop()
        target = self._endpoints[index]
        try:
            return _Connection(target, self._timeout)
        except TimeoutError:
            raise BulkConnectionError(f"connecting timed out after {self._timeout}s") from None
        except ssl.SSLError as error:
            raise BulkConnectionError(f"TLS: {error.reason or error}") from None
        except OSError as error:
            raise BulkConnectionError(_reason(error)) from None

    def _give_back(self, index: int, connection: _Connection) -> None:
        with self._lock:
            self._idle[index].append(connection)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, [[] for _ in self._endpoints]
        for connections in idle:
            for connection in connections:
                connection.close()


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__
