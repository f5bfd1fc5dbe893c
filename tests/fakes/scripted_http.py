"""An HTTP server that answers each request one scripted way, on a real socket.

`scripted(answer, answer, ...)` serves connections one after another on 127.0.0.1 (or `host`),
optionally over TLS; each request takes the next answer of the script. An answer is a function
`(connection, request) -> keep` that writes whatever bytes it likes (a well-formed answer, a
`100 Continue` nobody asked for, an answer before the body was read, half an answer, nothing)
and returns whether to read another request from the same connection. `request.head` holds the
request line and headers; `request.read_body()` reads the body by its Content-Length, which an
answer may also leave unread (an early answer). Requests read are recorded, head and body.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from receiver.addresses import format_host_port


@dataclass
class Request:
    conn: socket.socket
    head: bytes
    rest: bytearray  # bytes read after the head (start of the body)
    body: bytes = b""
    body_read: bool = False

    @property
    def content_length(self) -> int:
        for line in self.head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                return int(value)
        return 0

    def header(self, wanted: str) -> str:
        for line in self.head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == wanted.lower().encode():
                return value.strip().decode("latin-1")
        return ""

    def read_body(self) -> bytes:
        length = self.content_length
        while len(self.rest) < length:
            chunk = self.conn.recv(1 << 20)
            if not chunk:
                break
            self.rest += chunk
        self.body, self.body_read = bytes(self.rest[:length]), True
        del self.rest[:length]
        return self.body


Answer = Callable[[socket.socket, Request], bool]


@dataclass
class Served:
    url: str
    requests: list[Request] = field(default_factory=list)
    connections: int = 0


def _read_head(conn: socket.socket, pending: bytearray) -> tuple[bytes, bytearray] | None:
    while b"\r\n\r\n" not in pending:
        try:
            chunk = conn.recv(65536)
        except OSError:
            return None
        if not chunk:
            return None
        pending += chunk
    end = pending.find(b"\r\n\r\n")
    return bytes(pending[:end]), bytearray(pending[end + 4 :])


@contextmanager
def scripted(*answers: Answer, host: str = "127.0.0.1",
             tls: ssl.SSLContext | None = None) -> Iterator[Served]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, 0), family=family)
    port = listener.getsockname()[1]
    served = Served(f"{'https' if tls else 'http'}://{format_host_port(host, port)}")
    script = list(answers)

    def serve() -> None:
        while script:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            served.connections += 1
            conn = raw
            try:
                if tls is not None:
                    conn = tls.wrap_socket(raw, server_side=True)
                pending = bytearray()
                while script:
                    got = _read_head(conn, pending)
                    if got is None:
                        break
                    request = Request(conn, got[0], got[1])
                    served.requests.append(request)
                    keep = script.pop(0)(conn, request)
                    if not request.body_read and keep:
                        request.read_body()
                    pending = request.rest
                    if not keep:
                        break
            except (OSError, ssl.SSLError):
                pass
            finally:
                with suppress(OSError):
                    conn.close()

    thread = threading.Thread(target=serve, daemon=True, name="scripted-http")
    thread.start()
    try:
        yield served
    finally:
        listener.close()
        thread.join(10)


# --- answers used by several tests ------------------------------------------------------------

BULK_OK = b'{"errors":false,"items":[{"create":{"status":201}}]}'


def ok(conn: socket.socket, request: Request) -> bool:
    request.read_body()
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                 % (len(BULK_OK), BULK_OK))
    return True
