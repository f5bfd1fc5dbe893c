"""A small HTTP proxy for tests: CONNECT tunnels (for https targets) and absolute-form
forwarding (for http targets), on a real socket, with optional Basic proxy authentication.

`ConnectProxy.start(credentials=("user", "password"))` serves on 127.0.0.1:<free port> from
threads; a request without the right `Proxy-Authorization` is answered 407. `seen` records each
request line the proxy received (`CONNECT 127.0.0.1:9200 HTTP/1.1`, `POST http://…/_bulk
HTTP/1.1`) with whether it carried the right credentials. A forwarded (non-CONNECT) request
is sent to the target with `Connection: close` and its answer relayed until the target closes.
"""

from __future__ import annotations

import base64
import socket
import threading
from contextlib import suppress
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Seen:
    line: str
    authorised: bool


@dataclass
class ConnectProxy:
    credentials: tuple[str, str] | None = None
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    _listener: socket.socket | None = None

    @classmethod
    def start(cls, credentials: tuple[str, str] | None = None) -> ConnectProxy:
        proxy = cls(credentials)
        proxy._listener = socket.create_server(("127.0.0.1", 0))
        proxy.url = f"http://127.0.0.1:{proxy._listener.getsockname()[1]}"
        threading.Thread(target=proxy._accept, daemon=True, name="connect-proxy").start()
        return proxy

    def lines(self) -> list[str]:
        return [seen.line for seen in self.seen]

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()

    def __enter__(self) -> ConnectProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {name.strip().lower(): value.strip() for name, _, value in
                       (line.partition(":") for line in lines[1:])}
            authorised = self._authorised(headers.get("proxy-authorization", ""))
            self.seen.append(Seen(lines[0], authorised))
            if not authorised:
                conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                             b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n'
                             b"Connection: close\r\n\r\n")
                return
            method, target, _version = lines[0].split(" ", 2)
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                upstream = socket.create_connection((host, int(port)))
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self._relay(conn, upstream, rest)
                return
            self._forward(conn, method, target, lines[1:], rest)

    def _authorised(self, value: str) -> bool:
        if self.credentials is None:
            return True
        expected = base64.b64encode(":".join(self.credentials).encode()).decode()
        return value == f"Basic {expected}"

    def _forward(self, conn: socket.socket, method: str, target: str, header_lines: list[str],
                 rest: bytes) -> None:
        parts = urlsplit(target)
        upstream = socket.create_connection((parts.hostname or "", parts.port or 80))
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        kept = [line for line in header_lines
                if line.split(":", 1)[0].strip().lower() not in (
                    "proxy-authorization", "proxy-connection", "connection")]
        head = "\r\n".join([f"{method} {path} HTTP/1.1", *kept, "Connection: close", "", ""])
        upstream.sendall(head.encode("latin-1"))
        self._relay(conn, upstream, rest)

    @staticmethod
    def _relay(client: socket.socket, upstream: socket.socket, pending: bytes) -> None:
        if pending:
            upstream.sendall(pending)

        def pump(source: socket.socket, sink: socket.socket) -> None:
            with suppress(OSError):
                while chunk := source.recv(65536):
                    sink.sendall(chunk)
            with suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        back.start()
        pump(client, upstream)
        back.join(30)
        upstream.close()
