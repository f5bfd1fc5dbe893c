"""A null Elasticsearch for benchmarks: answers `_bulk` as if every document was created, counts.

    python3 bench/nullsink.py --port 15921 [--ready-file PATH]

Owns nothing of the receiver: it is the far end of `bench/ship_bench.py`, cheap enough per
document (one asyncio protocol, no HTTP library, HTTP/1.1 keep-alive) that the shipper, not the
sink, is what a benchmark measures. It answers:

  GET|HEAD /                      Elasticsearch 8 info, with `X-Elastic-Product: Elasticsearch`
  POST|PUT /_bulk, /<index>/_bulk NDJSON, plain or `Content-Encoding: gzip`, Content-Length or
                                  chunked; `{"errors":false,"items":[...]}` with one
                                  `{"<action>":{"_index","_id","status":201,"result":"created"}}`
                                  per action line (200 "updated" for update, "deleted" for delete)
  GET /_stats/sink                `{"docs", "bytes" (NDJSON, uncompressed), "wire_bytes",
                                  "bulk_requests"}`
  POST /_stats/sink/reset         zeroes the counters
  anything else                   GET: 404 with an Elasticsearch error body; other methods:
                                  `{"acknowledged":true}`
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import signal
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

INFO = orjson.dumps({
    "name": "nullsink", "cluster_name": "nullsink", "cluster_uuid": "nullsink",
    "version": {"number": "8.15.3", "build_flavor": "default", "lucene_version": "9.11.1",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0"},
    "tagline": "You Know, for Search",
})
NOT_FOUND = orjson.dumps({"error": {"type": "resource_not_found_exception",
                                    "reason": "nullsink serves _bulk only"}, "status": 404})
RESULTS = {"index": (201, "created"), "create": (201, "created"), "update": (200, "updated"),
           "delete": (200, "deleted")}


@dataclass
class Counters:
    docs: int = 0
    bytes: int = 0
    wire_bytes: int = 0
    bulk_requests: int = 0

    def reset(self) -> None:
        self.docs = self.bytes = self.wire_bytes = self.bulk_requests = 0


def bulk_answer(ndjson: bytes, counters: Counters) -> bytes:
    """The all-created answer to one bulk body; counts its documents."""
    items = []
    lines = iter(ndjson.splitlines())
    for line in lines:
        if not line.strip():
            continue
        ((action, meta),) = orjson.loads(line).items()
        status, result = RESULTS[action]
        if action != "delete":
            next(lines, None)  # the document (or partial update) that follows its action
        items.append({action: {"_index": meta.get("_index", ""), "_id": meta.get("_id", ""),
                               "_version": 1, "result": result, "status": status}})
    counters.docs += len(items)
    counters.bytes += len(ndjson)
    counters.bulk_requests += 1
    return orjson.dumps({"took": 0, "errors": False, "items": items})


class Http(asyncio.Protocol):
    """HTTP/1.1 with keep-alive: requests are answered in order, one at a time."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (request := self._take_request()) is not None:
            self._answer(*request)

    def _take_request(self) -> tuple[str, str, dict[str, str], bytes] | None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = self.buffer[:end].decode("latin-1").split("\r\n")
        method, target, _ = head[0].split(" ", 2)
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._take_chunked(start)
            if body is None:
                return None
        else:
            length = int(headers.get("content-length", "0"))
            if len(self.buffer) < start + length:
                return None
            body = bytes(self.buffer[start:start + length])
            del self.buffer[:start + length]
        return method, target, headers, body

    def _take_chunked(self, start: int) -> bytes | None:
        body = bytearray()
        position = start
        while True:
            line_end = self.buffer.find(b"\r\n", position)
            if line_end < 0:
                return None
            size = int(self.buffer[position:line_end].split(b";")[0], 16)
            if len(self.buffer) < line_end + 2 + size + 2:
                return None
            body += self.buffer[line_end + 2:line_end + 2 + size]
            position = line_end + 2 + size + 2
            if size == 0:  # no trailers are sent by the clients this serves
                del self.buffer[:position]
                return bytes(body)

    def _answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> None:
        path = target.split("?", 1)[0].rstrip("/")
        status, answer = 200, b'{"acknowledged":true}'
        if path.endswith("/_bulk") or path == "_bulk":
            self.counters.wire_bytes += len(body)
            if headers.get("content-encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            answer = bulk_answer(body, self.counters)
        elif path == "":
            answer = INFO
        elif path == "/_stats/sink":
            answer = orjson.dumps(asdict(self.counters))
        elif path == "/_stats/sink/reset" and method == "POST":
            self.counters.reset()
        elif method in ("GET", "HEAD"):
            status, answer = 404, NOT_FOUND
        reason = "OK" if status == 200 else "Not Found"
        assert self.transport is not None
        self.transport.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"X-Elastic-Product: Elasticsearch\r\nContent-Length: {len(answer)}\r\n\r\n".encode()
            + (b"" if method == "HEAD" else answer))


async def serve(port: int, ready_file: Path | None) -> None:
    counters = Counters()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Http(counters), "127.0.0.1", port)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if ready_file is not None:
        ready_file.write_text(str(port))
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=15921)
    parser.add_argument("--ready-file", type=Path, help="written once the port listens")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.ready_file))


if __name__ == "__main__":
    main()
