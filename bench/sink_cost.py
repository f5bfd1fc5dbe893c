"""What the peer harness's null sink spends per document: ours, ours without the fields that can
be derived from others, and a peer's, for the same lines in the same 1,000-document requests.

    python3 bench/sink_cost.py --sink PEER_HARNESS/nullsink.py [--docs 1000] [--requests 200]
                               [--rounds 3]

Peerbench's "sink µs per document" compares systems whose documents differ in size (ECS names
and fields here, the log-format's short keys as strings in the peers' generic JSON). This
separates the document from everything else: one client, one keep-alive connection, requests of
`--docs` documents posted `--requests` times to a fresh sink, its CPU read from /proc, rounds
alternating. The bodies:

- `ours`: the load generator's JSON line (bench/workload.py, dated now) through the worker's own
  encoder (BulkEncoder), to a data stream: what peerbench's sink receives from us.
- `ours without derived fields`: the same documents without the fields computed from others
  (`DERIVED`), to show what leaving them out of `_source` would buy.
- `peer`: the same lines as the harness's syslog-ng configuration writes them
  (`format-json --key haproxy.*` after `json-parser(prefix("haproxy."))`: every value a string).

`--sink` names the sink's script: the peer harness's `nullsink.py` is the one peerbench
measures (it scans every byte of a body for its tracking fields); the harness is shared with
other projects and not part of this repository (bench/peerbench.sh says where it lives). Without
`--sink`, the repository's own bench/nullsink.py, which does not track and costs less per byte.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.workload import TEMPLATE
from receiver.config import ElasticsearchSettings, ParseSettings
from receiver.event import FrameEncoder, Received, decode
from receiver.metrics import ParseMetrics
from receiver.parse import Parser
from receiver.ship.encode import BulkEncoder, action_line
from receiver.ship.nesting import NestedEncoder
from receiver.spool import Position, Record, event_id

# Fields whose values are computed from other fields of the same document (or constant for a
# log format): what a template could serve as runtime fields or copy_to instead of `_source`.
DERIVED = (
    "event.kind", "event.category", "event.type", "log.level", "log.syslog.priority",
    "url.original", "haproxy.http.request.raw_request_line", "related.ip", "source.address",
)
DATA_STREAM = "logs-haproxy-default"  # where peerbench's sink (an Elasticsearch 8) gets ours
OWN_SINK = Path(__file__).resolve().parent / "nullsink.py"


def seed_lines(count: int, now: float) -> list[bytes]:
    """The load generator's line, dated `now` (as bench/worker_bench.py's `seed` kind)."""
    moment = time.gmtime(now)
    template = TEMPLATE.replace("25/Nov/2026:19:47:11", time.strftime("%d/%b/%Y:%H:%M:%S", moment))
    base = int(now * 1e6)
    return [template.format(date=time.strftime("%b %d %H:%M:%S", moment), a=n // 256 % 256,
                            b=n % 256, port=1024 + n % 60000, ms=n % 1000, n=n,
                            us=base + n * 10).encode()
            for n in range(count)]


def bodies(count: int) -> dict[str, bytes]:
    now = time.time()
    lines = seed_lines(count, now)
    payloads = FrameEncoder("tcp://127.0.0.1:5140").encode_each(
        lines, now, [("127.0.0.1", 40000)] * count)
    records = [Record(Position(1, 400 * i), payload, now) for i, payload in enumerate(payloads)]
    settings = ElasticsearchSettings(data_stream=DATA_STREAM)
    encoder = BulkEncoder(settings, Parser(ParseSettings()), ParseMetrics(CollectorRegistry()))
    ours = encoder.encode(records, "benchspool").body
    nested = NestedEncoder()
    trimmed = bytearray()
    for record in records:
        received = decode(record.payload)
        assert isinstance(received, Received)
        document = encoder.document(received)
        for name in DERIVED:
            document.pop(name, None)
        trimmed += action_line(None, event_id("benchspool", record.position))
        trimmed += nested.encode(document) + b"\n"
    return {"ours": ours, "ours without derived fields": bytes(trimmed),
            "peer": peer_body(lines)}


def peer_body(lines: list[bytes]) -> bytes:
    """The lines as the harness's syslog-ng configuration sends them."""
    out = bytearray()
    for line in lines:
        header, _, body = line.partition(b"]: ")
        fields: dict[str, Any] = orjson.loads(body)
        out += b'{"index":{"_index":"haproxy-bench"}}\n'
        out += orjson.dumps({
            "program": "haproxy", "host": header.split(b" ")[3].decode(),
            "haproxy": {key: value if isinstance(value, str) else str(value)
                        for key, value in fields.items()},
            "@timestamp": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        }) + b"\n"
    return bytes(out)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_sink(path: Path, port: int) -> subprocess.Popen[bytes]:
    sink = subprocess.Popen([sys.executable, str(path), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return sink
        except OSError:
            if time.monotonic() > deadline or sink.poll() is not None:
                sink.kill()
                raise SystemExit(f"{path} did not start") from None
            time.sleep(0.05)


def measure(port: int, body: bytes, requests: int, sink_cpu: Callable[[], float]) -> float:
    """The sink's CPU seconds for `requests` posts of `body` over one connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    before = sink_cpu()
    for _ in range(requests):
        connection.request("POST", "/_bulk", body=body,
                           headers={"Content-Type": "application/x-ndjson"})
        answer = connection.getresponse()
        answer.read()
        if answer.status != 200:
            raise SystemExit(f"the sink answered HTTP {answer.status}")
    spent = sink_cpu() - before
    connection.close()
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=1000, help="documents per request")
    parser.add_argument("--requests", type=int, default=200, help="requests per body and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sink", type=Path, default=OWN_SINK,
                        help="the null sink's script (the peer harness's nullsink.py is what "
                             "peerbench measures; default: bench/nullsink.py)")
    args = parser.parse_args()
    sink_path: Path = args.sink
    if not sink_path.is_file():
        raise SystemExit(f"bench/sink_cost.py: no sink script at {sink_path}")
    made = bodies(args.docs)
    port = free_port()
    sink = start_sink(sink_path, port)
    spent: dict[str, list[float]] = {name: [] for name in made}
    try:
        for _ in range(args.rounds):
            for name, body in made.items():
                seconds = measure(port, body, args.requests, lambda: cpu_seconds(sink.pid))
                spent[name].append(seconds / (args.requests * args.docs) * 1e6)
    finally:
        sink.terminate()
        sink.wait(10)
    print(f"sink: {sink_path}  {args.docs} documents a request, {args.requests} requests a "
          f"round, {args.rounds} rounds")
    print("| body | bytes per document | sink µs per document (median; each round) |")
    print("|---|---|---|")
    for name, body in made.items():
        rounds = ", ".join(f"{value:.2f}" for value in spent[name])
        print(f"| {name} | {len(body) / args.docs:,.0f} | {statistics.median(spent[name]):.2f} "
              f"({rounds}) |")


if __name__ == "__main__":
    main()
