"""The HTTP stack (receiver.ship.http, libcurl) under the `elasticsearch` client (its node
class, receiver.ship.transport) against crafted servers on real sockets, one odd answer each:
framings, early and unsolicited answers, closes and resets, silence, failover. Every request
goes through the client's transport and node pool, as the output's do."""

from __future__ import annotations

import re
import select
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from elastic_transport import ConnectionError as ClientConnectionError
from elastic_transport import ConnectionTimeout, TransportError

from receiver.ship.classify import RequestOutcome, failure_text
from receiver.ship.http import ConnectionOptions
from receiver.ship.transport import Answer, Cluster
from tests.fakes.scripted_http import BULK_OK, Request, ok, scripted
from tests.ship.harness import es_settings
from tests.support import free_port, reset


def client(*urls: str, timeout: float = 5.0) -> Cluster:
    headers = {"user-agent": "test", "authorization": "ApiKey abcdefghij"}
    return Cluster(list(urls), ConnectionOptions(headers=headers, timeout=timeout))


def send(bulk: Cluster, body: bytes = b"x", path: str = "/_bulk") -> Answer:
    return bulk.request("POST", path, body, {"content-type": "application/x-ndjson"},
                        checked=False)


def post(bulk: Cluster, body: bytes = b"x", path: str = "/_bulk") -> tuple[int, bytes]:
    answer = send(bulk, body, path)
    return answer.status, answer.body


@contextmanager
def fails(kind: type[TransportError], pattern: str) -> Iterator[None]:
    """The client raised `kind` with our (node's) message matching `pattern`."""
    with pytest.raises(kind) as raised:
        yield
    assert re.search(pattern, failure_text(raised.value)), failure_text(raised.value)


def chunked(conn: socket.socket, request: Request) -> bool:
    request.read_body()
    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + b"".join(b"%x;ext=1\r\n%s\r\n" % (len(part), part)
                            for part in (BULK_OK[:10], BULK_OK[10:]))
                 + b"0\r\n\r\n")
    return True


def test_answers_with_a_length_and_in_chunks_on_one_connection() -> None:
    with scripted(ok, chunked, ok) as served:
        bulk = client(served.url + "/prefix/")
        for _ in range(3):
            assert post(bulk, b'{"create":{}}\n{"a":1}\n') == (200, BULK_OK)
        bulk.close()
    assert served.connections == 1
    first = served.requests[0]
    assert first.head.startswith(b"POST /prefix/_bulk HTTP/1.1\r\n")
    assert first.header("authorization") == "ApiKey abcdefghij"
    assert first.header("content-type") == "application/x-ndjson"
    assert first.header("expect") == ""  # no 100-continue round trip
    assert first.body == b'{"create":{}}\n{"a":1}\n'


def test_chunk_trailers_are_read_to_their_end_before_the_next_request() -> None:
    early: list[bool] = []

    def trailers_in_two_parts(conn: socket.socket, request: Request) -> bool:
        request.read_body()
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n"
                     b"X-One: 1\r\n" % (len(BULK_OK), BULK_OK))
        # A client that took the answer as complete already sends its next request here.
        early.append(bool(select.select([conn], [], [], 0.5)[0]))
        conn.sendall(b"X-Two: 2\r\n\r\n")
        return True

    with scripted(trailers_in_two_parts, ok) as served:
        bulk = client(served.url)
        assert post(bulk, b"a") == (200, BULK_OK)
        assert post(bulk, b"b") == (200, BULK_OK)
    assert early == [False] and len(served.requests) == 2


def test_an_unsolicited_100_continue_is_skipped() -> None:
    def continue_then_ok(conn: socket.socket, request: Request) -> bool:
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        return ok(conn, request)

    with scripted(continue_then_ok, ok) as served:
        bulk = client(served.url)
        response = send(bulk, b"a")
        assert (response.status, response.body) == (200, BULK_OK)
        assert response.headers["content-type"] == "application/json"  # the 200's, not the 100's
        assert post(bulk, b"b") == (200, BULK_OK)
    assert served.connections == 1


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"])
def test_an_answer_without_a_body_or_length_keeps_the_connection(status: bytes) -> None:
    def no_length(conn: socket.socket, request: Request) -> bool:
        request.read_body()
        conn.sendall(b"HTTP/1.1 " + status + b"\r\nX-Proxy: yes\r\n\r\n")
        return True

    with scripted(no_length, ok) as served:
        bulk = client(served.url, timeout=3)
        assert post(bulk) == (int(status[:3]), b"")
        assert post(bulk) == (200, BULK_OK)
    assert served.connections == 1


def test_an_http_1_0_answer_ends_with_the_connection() -> None:
    def http10(conn: socket.socket, request: Request) -> bool:
        request.read_body()
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + BULK_OK)
        return False

    with scripted(http10, ok) as served:
        bulk = client(served.url)
        assert post(bulk) == (200, BULK_OK)
        assert post(bulk) == (200, BULK_OK)  # a new connection
    assert served.connections == 2


def test_connection_close_and_a_body_ending_with_the_connection() -> None:
    def closing(conn: socket.socket, request: Request) -> bool:
        request.read_body()
        conn.sendall(b"HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\n\r\n{\"status\":429}")
        return False

    with scripted(closing, ok) as served:
        bulk = client(served.url)
        assert post(bulk) == (429, b'{"status":429}')
        assert post(bulk) == (200, BULK_OK)
    assert served.connections == 2


def test_a_reset_after_a_whole_answer_keeps_the_answer() -> None:
    def answer_then_reset(conn: socket.socket, request: Request) -> bool:
        ok(conn, request)
        reset(conn)
        return False

    with scripted(answer_then_reset, ok) as served:
        bulk = client(served.url)
        assert post(bulk, b"a") == (200, BULK_OK)
        assert post(bulk, b"b") == (200, BULK_OK)
    assert [r.body for r in served.requests] == [b"a", b"b"]


def test_a_kept_connection_the_server_closed_is_replaced_once() -> None:
    def close_without_answer(conn: socket.socket, request: Request) -> bool:
        return False

    with scripted(ok, close_without_answer, ok) as served:
        bulk = client(served.url)
        assert post(bulk, b"a")[0] == 200
        assert post(bulk, b"b")[0] == 200
    assert [r.body for r in served.requests] == [b"a", b"", b"b"]


def test_a_cut_answer_is_a_connection_error() -> None:
    def cut(conn: socket.socket, request: Request) -> bool:
        request.read_body()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{\"errors\":false")
        return False

    with scripted(cut) as served, fails(ClientConnectionError, served.url):
        post(client(served.url))


def test_an_answer_larger_than_any_bulk_answer_is_refused() -> None:
    def huge(conn: socket.socket, request: Request) -> bool:
        request.read_body()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n{")
        return False

    with scripted(huge) as served, fails(ClientConnectionError, "larger than 64 MiB"):
        post(client(served.url))


def test_an_endless_answer_without_a_length_is_cut_off() -> None:
    def endless(conn: socket.socket, request: Request) -> bool:
        request.read_body()
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        block = b"x" * (1 << 20)
        try:
            for _ in range(80):
                conn.sendall(block)
        except OSError:
            pass  # the client hung up: what we want
        return False

    with scripted(endless) as served, fails(ClientConnectionError, "larger than 64 MiB"):
        post(client(served.url))


def test_silence_is_a_timeout() -> None:
    def silent(conn: socket.socket, request: Request) -> bool:
        request.read_body()
        conn.recv(1)  # until the client gives up and closes
        return False

    with scripted(silent) as served, fails(ConnectionTimeout, r"within 0\.3s"):
        post(client(served.url, timeout=0.3))


def test_fails_over_to_the_next_host_and_stays_there() -> None:
    refused = f"http://127.0.0.1:{free_port()}"
    with scripted(ok, ok) as served:
        bulk = client(refused, served.url)
        assert post(bulk, b"a")[0] == 200
        assert post(bulk, b"b")[0] == 200  # the refused node is put aside (the node pool)
    assert len(served.requests) == 2
    with fails(ClientConnectionError, r"127\.0\.0\.1.*(refused|Failed to connect)"):
        post(client(refused))


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_an_ipv6_host_is_named_in_brackets() -> None:
    try:
        probe = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    probe.close()
    with scripted(ok, host="::1") as served:
        assert post(client(served.url))[0] == 200
    port = served.url.rsplit(":", 1)[1]
    assert served.requests[0].header("host") == f"[::1]:{port}"


# --- an answer that arrives while the body is still being sent --------------------------------

BIG = b'{"create":{}}\n' + b'{"message":"' + b"x" * (16 << 20) + b'"}\n'  # beyond socket buffers


def answer_413(conn: socket.socket, request: Request) -> None:
    """What nginx, ALB and Elasticsearch's http.max_content_length do: answer 413 from the
    headers alone, with most of the body never read, and close."""
    assert request.content_length == len(BIG)
    body = b'{"error":"content too long"}'
    conn.sendall(b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: application/json\r\n"
                 b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    conn.shutdown(socket.SHUT_WR)


def too_large_then_lingering_close(conn: socket.socket, request: Request) -> bool:
    """nginx's way: after the answer, read and discard until the client hangs up."""
    answer_413(conn, request)
    conn.settimeout(10)
    while conn.recv(1 << 20):
        pass
    return False


def too_large_then_reset(conn: socket.socket, request: Request) -> bool:
    """Closed at once: the unread body makes the kernel send a reset after the answer."""
    answer_413(conn, request)
    reset(conn)
    return False


@pytest.mark.parametrize("answer", [too_large_then_lingering_close, too_large_then_reset])
def test_an_early_413_is_read_and_classified_as_too_large(answer: object) -> None:
    from receiver.ship.elasticsearch import ElasticsearchOutput, ServerInfo

    with scripted(answer) as served:  # type: ignore[arg-type]
        output = ElasticsearchOutput(es_settings([served.url], compression="off"))
        output.server = ServerInfo("elasticsearch", "8.15.0", 8, 15)  # probed already
        output._choose_headers(output.server)
        try:
            result = output.send(BIG, 1)
        finally:
            output.close()
    assert (result.request, result.label, result.status) == (RequestOutcome.TOO_LARGE, "too_large", 413)


def test_an_answer_of_a_media_type_the_client_cannot_read_is_a_bad_response() -> None:
    from receiver.ship.elasticsearch import ElasticsearchOutput, ServerInfo

    def image(conn: socket.socket, request: Request) -> bool:
        request.read_body()
        conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: image/gif\r\n"
                     b"Content-Length: 3\r\n\r\nGIF")
        return True

    with scripted(image) as served:
        output = ElasticsearchOutput(es_settings([served.url], compression="off"))
        output.server = ServerInfo("opensearch", "2.18.0", 2, 18)  # probed already
        output._choose_headers(output.server)
        try:
            result = output.send(b'{"create":{}}\n{"a":1}\n', 1)
        finally:
            output.close()
    assert (result.request, result.label) == (RequestOutcome.RETRY, "bad_response")
    assert "image/gif" in result.message
