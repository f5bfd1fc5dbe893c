"""The bulk HTTP client against a scripted server on a real socket: answer framings, closed
keep-alive connections, cut answers, silence, and failover between hosts."""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from receiver.addresses import format_host_port
from receiver.ship.bulk_http import (
    BulkClient,
    BulkConnectionError,
    BulkTimeout,
    endpoint,
    header_lines,
)
from tests.support import free_port

BODY = b'{"errors":false,"items":[{"create":{"status":201}}]}'
Answer = Callable[[socket.socket, bytes], bool]  # answers one request; False: close afterwards


def _read_request(conn: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(rest) < length:
        rest += conn.recv(65536)
    return head + b"\r\n\r\n" + rest


@contextmanager
def scripted(*answers: Answer, host: str = "127.0.0.1") -> Iterator[tuple[str, list[bytes]]]:
    """Serves connections one after another; each request takes the next answer."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, 0), family=family)
    port = listener.getsockname()[1]
    requests: list[bytes] = []
    script = list(answers)

    def serve() -> None:
        while script:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                while script:
                    request = _read_request(conn)
                    if request is None:
                        break
                    requests.append(request)
                    if not script.pop(0)(conn, request):
                        break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://{format_host_port(host, port)}", requests
    finally:
        listener.close()
        thread.join(5)


def length_answer(conn: socket.socket, _: bytes) -> bool:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                 % (len(BODY), BODY))
    return True


def chunked_answer(conn: socket.socket, _: bytes) -> bool:
    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + b"".join(b"%x;ext=1\r\n%s\r\n" % (len(part), part) for part in (BODY[:10], BODY[10:]))
                 + b"0\r\n\r\n")
    return True


def closing_answer(conn: socket.socket, _: bytes) -> bool:
    conn.sendall(b"HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\n\r\n{\"status\":429}")
    return False


def cut_answer(conn: socket.socket, _: bytes) -> bool:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{\"errors\":false")
    return False


def close_without_answer(conn: socket.socket, _: bytes) -> bool:
    return False


def client(*urls: str, timeout: float = 5.0) -> BulkClient:
    headers = {"user-agent": "test", "authorization": "ApiKey abc"}
    return BulkClient([endpoint(url, url, None, headers) for url in urls], timeout)


def test_answers_with_a_length_and_in_chunks_on_one_connection() -> None:
    with scripted(length_answer, chunked_answer, length_answer) as (url, requests):
        bulk = client(url + "/prefix/")
        for _ in range(3):
            assert bulk.post("/_bulk", b'{"create":{}}\n{"a":1}\n', header_lines({"x-n": "1"})) == (200, BODY)
        bulk.close()
    first = requests[0].decode()
    assert first.startswith("POST /prefix/_bulk HTTP/1.1\r\n")
    assert "authorization: ApiKey abc\r\n" in first and "x-n: 1\r\n" in first
    assert first.endswith('content-length: 22\r\n\r\n{"create":{}}\n{"a":1}\n')


def test_chunk_trailers_are_read_to_their_end_before_the_next_request() -> None:
    early: list[bool] = []

    def trailers_in_two_parts(conn: socket.socket, _: bytes) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\nX-One: 1\r\n"
                     % (len(BODY), BODY))
        # A client that took the answer as complete already sends its next request here.
        readable = select.select([conn], [], [], 0.5)[0]
        early.append(bool(readable))
        conn.sendall(b"X-Two: 2\r\n\r\n")
        return True

    with scripted(trailers_in_two_parts, length_answer) as (url, requests):
        bulk = client(url)
        assert bulk.post("/_bulk", b"a", "") == (200, BODY)
        assert bulk.post("/_bulk", b"b", "") == (200, BODY)
    assert early == [False] and len(requests) == 2


def test_connection_close_and_a_body_ending_with_the_connection() -> None:
    with scripted(closing_answer, length_answer) as (url, _):
        bulk = client(url)
        assert bulk.post("/_bulk", b"x", "") == (429, b'{"status":429}')
        assert bulk.post("/_bulk", b"x", "") == (200, BODY)  # a new connection


def test_a_kept_connection_the_server_closed_is_replaced_once() -> None:
    with scripted(length_answer, close_without_answer, length_answer) as (url, requests):
        bulk = client(url)
        assert bulk.post("/_bulk", b"a", "")[0] == 200
        assert bulk.post("/_bulk", b"b", "")[0] == 200
    assert [r.rsplit(b"\n", 1)[-1] for r in requests] == [b"a", b"b", b"b"]


def test_a_cut_answer_on_a_new_connection_is_a_connection_error() -> None:
    with scripted(cut_answer) as (url, _), pytest.raises(BulkConnectionError, match="cut after"):
        client(url).post("/_bulk", b"a", "")


def test_an_answer_larger_than_any_bulk_answer_is_refused() -> None:
    def huge(conn: socket.socket, _: bytes) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n{")
        return False

    with scripted(huge) as (url, _), pytest.raises(BulkConnectionError, match="larger than any"):
        client(url).post("/_bulk", b"a", "")


def test_silence_is_a_timeout() -> None:
    def silent(conn: socket.socket, _: bytes) -> bool:
        conn.recv(1)  # until the client gives up and closes
        return False

    with scripted(silent) as (url, _), pytest.raises(BulkTimeout, match=r"within 0\.2s"):
        client(url, timeout=0.2).post("/_bulk", b"a", "")


def test_fails_over_to_the_next_host_and_stays_there() -> None:
    refused = f"http://127.0.0.1:{free_port()}"
    with scripted(length_answer, length_answer) as (url, requests):
        bulk = client(refused, url)
        assert bulk.post("/_bulk", b"a", "")[0] == 200
        assert bulk.post("/_bulk", b"b", "")[0] == 200
    assert len(requests) == 2
    with pytest.raises(BulkConnectionError, match="Connection refused"):
        client(refused).post("/_bulk", b"a", "")


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_an_ipv6_host_is_named_in_brackets() -> None:
    try:
        probe = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    probe.close()
    with scripted(length_answer, host="::1") as (url, requests):
        assert client(url).post("/_bulk", b"a", "")[0] == 200
    port = url.rsplit(":", 1)[1]
    assert f"Host: [::1]:{port}\r\n".encode() in requests[0]
