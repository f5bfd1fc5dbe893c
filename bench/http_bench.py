"""CPU of one bulk POST per HTTP client: thread CPU time, warm keep-alive, side by side.

    python3 bench/http_bench.py                       # 500 KB and 11-event bodies, every client
    python3 bench/http_bench.py --requests 2000 --rounds 5

A server in a child process (its CPU is not counted) reads each request and answers a fixed
filter_path bulk answer with Content-Length, keeping the connection. Each client posts the same
body on one warm connection; `time.thread_time()` around `--requests` POSTs gives CPU µs per
request of the sending thread alone. Rounds alternate between the clients so that machine noise
hits them alike; the table shows the median round and the spread (min-max).

Clients: `pycurl` (libcurl, an easy handle reused), `receiver` (receiver.ship.http alone:
pycurl plus header parsing and the answer cap; the output's path before the `elasticsearch`
client came back), `es-client` (the output's path to Elasticsearch 8/9: the official client's
`perform_request`, its transport and node pool, our libcurl node and pass-through serializer,
receiver/ship/transport.py), `es-transport` (the path to 7.x and OpenSearch: the same without
the client's request method), `es-urllib3` (the official client as it comes: its urllib3 node
and its own serializers), `urllib3` (HTTPConnectionPool). The last line gives what the client
path adds per event of the 500 KB body. The README's row for the hand-written client libcurl
replaced was measured with this benchmark before that client was removed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


Post = Callable[[bytes], tuple[int, bytes]]
CONTENT_TYPE = "application/x-ndjson"


def document(n: int) -> dict[str, Any]:
    """One event shaped like the parser's ECS output for the JSON log-format (~1 KB)."""
    return {
        "@timestamp": f"2026-11-25T18:00:{n % 60:02d}.{n % 1000:03d}Z",
        "source.ip": f"10.0.{n >> 8 & 255}.{n & 255}", "source.port": 1024 + n,
        "http.request.method": "GET", "url.original": f"/api/v1/items/{n}?page=2",
        "url.path": f"/api/v1/items/{n}", "url.query": "page=2", "http.version": "1.1",
        "http.response.status_code": 200, "http.response.bytes": 512 + n % 4096,
        "haproxy.frontend_name": "inbound_policy", "haproxy.backend_name": "default_9999",
        "haproxy.server_name": "web-03", "haproxy.time_queue_ms": 0,
        "haproxy.time_connect_ms": 1, "haproxy.time_response_ms": 5,
        "haproxy.total_time_ms": 92, "haproxy.termination_state": "----",
        "event.duration": 92_000_000, "host.name": "ip-10-0-1-17", "process.name": "haproxy",
        "process.pid": 22, "event.original": '{"ci":"10.0.0.1","cp":43174,"ft":"inbound_policy",'
                                              '"b":"default_9999","s":"web-03","Tt":92,"ST":200}',
    }


def bulk_body(events: int) -> bytes:
    lines = []
    for n in range(events):
        lines.append(b'{"create":{"_index":"haproxy-2026.11.25","_id":"bench-1-%d"}}' % n)
        lines.append(orjson.dumps(document(n)))
    return b"\n".join(lines) + b"\n"


def bulk_answer(events: int) -> bytes:
    return b'{"errors":false,"items":[' + b",".join(
        [b'{"create":{"status":201}}'] * events) + b"]}"


# --- the server (child process) ---------------------------------------------------------------

def serve(port: int) -> None:
    """Single-threaded keep-alive server: reads a request by Content-Length, answers it with
    `bulk_answer(items)` where items = the number of action lines (every other line)."""
    listener = socket.create_server(("127.0.0.1", port), backlog=16)
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    buffers: dict[socket.socket, bytearray] = {}
    answers: dict[int, bytes] = {}
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is listener:
                conn, _ = listener.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.setblocking(True)
                selector.register(conn, selectors.EVENT_READ)
                buffers[conn] = bytearray()
                continue
            data = sock.recv(1 << 20)
            if not data:
                selector.unregister(sock)
                buffers.pop(sock).clear()
                sock.close()
                continue
            buffer = buffers[sock]
            buffer += data
            while (end := buffer.find(b"\r\n\r\n")) >= 0:
                head = bytes(buffer[:end]).lower()
                length = int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
                if len(buffer) < end + 4 + length:
                    break
                body = bytes(buffer[end + 4 : end + 4 + length])
                del buffer[: end + 4 + length]
                items = body.count(b"\n") // 2
                if items not in answers:
                    payload = bulk_answer(items)
                    answers[items] = (
                        b"HTTP/1.1 200 OK\r\nX-Elastic-Product: Elasticsearch\r\n"
                        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                        % (len(payload), payload))
                sock.sendall(answers[items])


# --- the clients -----------------------------------------------------------------------------

def pycurl_client(url: str) -> Post:
    import pycurl

    curl = pycurl.Curl()
    curl.setopt(pycurl.URL, url + "/_bulk")
    curl.setopt(pycurl.HTTPHEADER, [f"content-type: {CONTENT_TYPE}", "Expect:"])
    curl.setopt(pycurl.NOSIGNAL, 1)
    chunks: list[bytes] = []
    curl.setopt(pycurl.WRITEFUNCTION, chunks.append)

    def post(body: bytes) -> tuple[int, bytes]:
        chunks.clear()
        curl.setopt(pycurl.POSTFIELDS, body)
        curl.perform()
        return curl.getinfo(pycurl.RESPONSE_CODE), b"".join(chunks)

    return post


def receiver_client(url: str) -> Post | None:
    try:
        http = importlib.import_module("receiver.ship.http")
    except ImportError:
        return None
    client = http.HttpClient(url, http.ConnectionOptions())

    def post(body: bytes) -> tuple[int, bytes]:
        response = client.request("POST", "/_bulk", body, {"content-type": CONTENT_TYPE})
        return int(response.status), bytes(response.body)

    return post


COMPAT = "application/vnd.elasticsearch+x-ndjson; compatible-with=8"
BULK_TARGET = "/_bulk?filter_path=errors,items.*.status,items.*.error"


def cluster_client(url: str, checked: bool) -> Post | None:
    try:
        http = importlib.import_module("receiver.ship.http")
        transport = importlib.import_module("receiver.ship.transport")
    except ImportError:  # a checkout from before the client came back
        return None
    options = http.ConnectionOptions(headers={"user-agent": "bench"})
    cluster = transport.Cluster([url], options)
    headers = ({"content-type": COMPAT, "accept": COMPAT.replace("x-ndjson", "json")}
               if checked else {"content-type": CONTENT_TYPE, "accept": "application/json"})

    def post(body: bytes) -> tuple[int, bytes]:
        answer = cluster.request("POST", BULK_TARGET, body, headers, checked)
        return int(answer.status), bytes(answer.body)

    return post


def stock_client(url: str) -> Post | None:
    try:
        elasticsearch = importlib.import_module("elasticsearch")
    except ImportError:
        return None
    client = elasticsearch.Elasticsearch(url)

    def post(body: bytes) -> tuple[int, bytes]:
        response = client.perform_request(
            "POST", BULK_TARGET, body=body, headers={"content-type": CONTENT_TYPE})
        return int(response.meta.status), orjson.dumps(response.body)

    return post


def urllib3_client(url: str) -> Post | None:
    try:  # not a dependency of ours any more; measured where something else installed it
        urllib3 = importlib.import_module("urllib3")
    except ImportError:
        return None
    pool = urllib3.HTTPConnectionPool("127.0.0.1", int(url.rsplit(":", 1)[1]), maxsize=1)

    def post(body: bytes) -> tuple[int, bytes]:
        response = pool.urlopen("POST", "/_bulk", body=body,
                                headers={"content-type": CONTENT_TYPE}, retries=False)
        return int(response.status), bytes(response.data)

    return post


CLIENTS: dict[str, Callable[[str], Post | None]] = {  # None: not importable here
    "pycurl": pycurl_client,
    "receiver": receiver_client,
    "es-client": lambda url: cluster_client(url, checked=True),
    "es-transport": lambda url: cluster_client(url, checked=False),
    "es-urllib3": stock_client,
    "urllib3": urllib3_client,
}


def measure(post: Post, body: bytes, requests: int) -> float:
    """CPU µs of this thread per POST."""
    items = body.count(b"\n") // 2
    expected = bulk_answer(items)
    for _ in range(20):  # warm: connection open, caches filled
        assert post(body) == (200, expected)
    started = time.thread_time()
    for _ in range(requests):
        post(body)
    return (time.thread_time() - started) / requests * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--port", type=int, default=15941)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    per_event = len(bulk_body(100)) / 100
    bodies = {"500 KB": bulk_body(round(500_000 / per_event)), "11 events": bulk_body(11)}
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(args.port)],
                              stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        url = f"http://127.0.0.1:{args.port}"
        clients = {name: make(url) for name, make in CLIENTS.items()}
        results: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for label, body in bodies.items():
                for name, post in clients.items():
                    if post is not None:
                        results.setdefault((name, label), []).append(
                            measure(post, body, args.requests))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)
    sizes = ", ".join(f"{label} = {len(body):,} bytes" for label, body in bodies.items())
    if args.json:
        for (name, label), values in results.items():
            print(json.dumps({"client": name, "body": label, "us": values}))
        return 0
    print(f"CPU µs per bulk POST (thread time, median of {args.rounds} rounds of "
          f"{args.requests}; min-max), {sizes}, Python {sys.version.split()[0]}")
    print("| client | " + " | ".join(bodies) + " |")
    print("|---|" + "---|" * len(bodies))
    for name in CLIENTS:
        if (name, next(iter(bodies))) not in results:
            print(f"| {name} | " + " | ".join("(not importable)" for _ in bodies) + " |")
            continue
        cells = []
        for label in bodies:
            values = results[(name, label)]
            cells.append(f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    label, body = next(iter(bodies.items()))
    events = body.count(b"\n") // 2
    if ("es-client", label) in results and ("receiver", label) in results:
        for name in ("es-client", "es-transport"):
            added = (statistics.median(results[(name, label)])
                     - statistics.median(results[("receiver", label)])) / events
            print(f"{name} adds {added:+.2f} µs per event to receiver ({label}, {events} events)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
