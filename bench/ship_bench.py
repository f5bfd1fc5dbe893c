"""Shipping throughput: a full spool -> Shipper -> bench/nullsink.py, gzip on and off.

    python3 bench/ship_bench.py                 # 200k events, spool source, gzip off and on
    python3 bench/ship_bench.py --events 500000 --source memory --gzip on

Writes N pre-packed HAProxy documents (the parser's ECS shape, ~25 fields) into a fresh spool
(or keeps them as in-memory batches with `--source memory`), then times the shipper from start
until the sink has every document. Prints events/s, uncompressed MB/s, wire MB/s and CPU µs
per event of this process and of the sink (its own process, sharing the 2 cores). Re-executes itself once with
glibc malloc tuned as ../shared/PERF-NOTES.md recommends.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from receiver.config import ElasticsearchSettings, SpoolSettings
from receiver.event import encode_event
from receiver.metrics import Metrics
from receiver.ship.elasticsearch import ElasticsearchOutput
from receiver.ship.shipper import Shipper
from receiver.spool import Batch, Position, Record, SpoolReader, SpoolWriter

NULLSINK = Path(__file__).resolve().parent / "nullsink.py"  # the repository's own null Elasticsearch
_MALLOC = {"MALLOC_TRIM_THRESHOLD_": "268435456", "MALLOC_TOP_PAD_": "67108864"}


def document(n: int) -> dict[str, Any]:
    return {
        "@timestamp": f"2026-11-25T18:{n // 60000 % 60:02d}:{n // 1000 % 60:02d}.{n % 1000:03d}Z",
        "source.ip": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}",
        "source.port": 1024 + n % 60000,
        "http.request.method": "GET",
        "url.original": f"/api/v1/items/{n}?page=2",
        "url.path": f"/api/v1/items/{n}",
        "url.query": "page=2",
        "http.version": "1.1",
        "http.response.status_code": 200,
        "http.response.bytes": 512 + n % 4096,
        "haproxy.frontend_name": "inbound_policy",
        "haproxy.backend_name": "default_9999",
        "haproxy.server_name": "web-03",
        "haproxy.time_request_ms": 0,
        "haproxy.time_queue_ms": 0,
        "haproxy.time_connect_ms": 1,
        "haproxy.time_response_ms": 5,
        "haproxy.total_time_ms": 92,
        "haproxy.termination_state": "----",
        "event.duration": 92_000_000,
        "host.name": "ip-10-0-1-17",
        "log.syslog.facility.code": 16,
        "log.syslog.severity.code": 6,
        "process.name": "haproxy",
        "process.pid": 22,
        "seq": n,
        "event.original": '{"ci":"10.0.0.1","cp":43174,"t":"26/Feb/2020:05:17:05.438",'
                          '"ft":"inbound_policy","b":"default_9999","s":"web-03","Tw":0,'
                          '"Tc":1,"Tr":5,"Tt":92,"ST":200,"r":"GET /api/v1/items HTTP/1.1"}',
    }


class MemoryReader:
    """Pre-built batches handed out in order (when the spool is not wanted)."""

    identity = "benchspool"

    def __init__(self, payloads: list[bytes], per_batch: int) -> None:
        now = time.time()
        records = [Record(Position(1, i * 64), p, now) for i, p in enumerate(payloads)]
        self._records = records
        self._next = 0
        self._seq = 0
        self.per_batch = per_batch

    def read(self, max_records: int, max_bytes: int) -> Batch | None:
        if self._next >= len(self._records):
            return None
        count = min(max_records, self.per_batch)
        records = self._records[self._next : self._next + count]
        self._next += len(records)
        self._seq += 1
        return Batch(self._seq, records, Position(1, self._next * 64))

    def wait(self, timeout: float) -> bool:
        time.sleep(min(timeout, 0.01))
        return False

    def acknowledge(self, batch: Batch) -> None:
        return


def sink_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/_stats/sink", timeout=5) as response:
        stats: dict[str, Any] = json.loads(response.read())
        return stats


def start_sink(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    ready = workdir / "sink.ready"
    sink = subprocess.Popen(
        [sys.executable, str(NULLSINK), "--port", str(port), "--ready-file", str(ready)],
    )
    deadline = time.monotonic() + 15
    while not ready.exists():
        if time.monotonic() > deadline or sink.poll() is not None:
            sink.kill()
            raise SystemExit("nullsink did not start")
        time.sleep(0.05)
    return sink


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of another process (the sink), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_once(args: argparse.Namespace, payloads: list[bytes], gzip: bool, url: str,
             workdir: Path, sink_pid: int) -> dict[str, Any]:
    urllib.request.urlopen(urllib.request.Request(url + "/_stats/sink/reset", method="POST"),
                           timeout=5).read()
    settings = dataclasses.replace(
        ElasticsearchSettings(), hosts=[url], compression="on" if gzip else "off",
        batch_events=args.batch_events, max_in_flight=args.max_in_flight,
    )
    reader: Any
    writer: SpoolWriter | None = None
    if args.source == "spool":
        spool_dir = Path(tempfile.mkdtemp(dir=workdir))
        spool_settings = dataclasses.replace(SpoolSettings(), dir=str(spool_dir), fsync="never")
        writer = SpoolWriter(spool_settings, Metrics())
        for start in range(0, len(payloads), 10000):
            writer.append(payloads[start : start + 10000])
        reader = SpoolReader(spool_dir)
    else:
        reader = MemoryReader(payloads, args.batch_events)
    metrics = Metrics()
    output = ElasticsearchOutput(settings, metrics)
    output.probe()
    shipper = Shipper(settings, reader, output, metrics, str(workdir / "dead-letter.jsonl"))
    stop = threading.Event()
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    sink_before = process_cpu(sink_pid)
    started = time.perf_counter()
    thread = threading.Thread(target=shipper.run, args=(stop,))
    thread.start()
    total = len(payloads)
    shipped = 0.0
    while shipped < total:
        time.sleep(0.02)
        shipped = metrics.registry.get_sample_value("haproxy_receiver_events_shipped_total") or 0
    elapsed = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    sink_cpu = process_cpu(sink_pid) - sink_before
    stop.set()
    thread.join()
    shipper.drain(time.monotonic() + 5)
    output.close()
    if writer is not None:
        reader.close()
        writer.close()
    stats = sink_stats(url)
    cpu = (usage.ru_utime + usage.ru_stime) - (usage_before.ru_utime + usage_before.ru_stime)
    wire = metrics.registry.get_sample_value("haproxy_receiver_bulk_sent_bytes_total") or 0
    return {
        "gzip": gzip, "source": args.source, "events": total, "sink_docs": stats["docs"],
        "seconds": round(elapsed, 3), "events_per_s": round(total / elapsed),
        "ndjson_mb_per_s": round(stats["bytes"] / elapsed / 1e6, 1),
        "wire_mb_per_s": round(wire / elapsed / 1e6, 1),
        "cpu_us_per_event": round(cpu / total * 1e6, 2),
        "sink_cpu_us_per_event": round(sink_cpu / total * 1e6, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--gzip", choices=["on", "off", "both"], default="both")
    parser.add_argument("--source", choices=["spool", "memory"], default="spool")
    defaults = ElasticsearchSettings()
    parser.add_argument("--batch-events", type=int, default=defaults.batch_events)
    parser.add_argument("--max-in-flight", type=int, default=defaults.max_in_flight)
    parser.add_argument("--sink-port", type=int, default=15921)
    parser.add_argument("--json", action="store_true", help="print JSON rows only")
    args = parser.parse_args()
    if any(os.environ.get(k) != v for k, v in _MALLOC.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **_MALLOC})
    payloads = [encode_event(document(n)) for n in range(args.events)]
    url = f"http://127.0.0.1:{args.sink_port}"
    with tempfile.TemporaryDirectory(prefix="ship-bench-") as tmp:
        workdir = Path(tmp)
        sink = start_sink(args.sink_port, workdir)
        try:
            modes = {"on": [True], "off": [False], "both": [False, True]}[args.gzip]
            rows = [run_once(args, payloads, gzip, url, workdir, sink.pid) for gzip in modes]
        finally:
            sink.terminate()
            sink.wait(10)
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print("| source | gzip | events | sink docs | seconds | events/s | NDJSON MB/s | wire MB/s "
          "| shipper CPU µs/event | sink CPU µs/event |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['source']} | {'on' if r['gzip'] else 'off'} | {r['events']} | "
              f"{r['sink_docs']} | {r['seconds']} | {r['events_per_s']:,} | "
              f"{r['ndjson_mb_per_s']} | {r['wire_mb_per_s']} | {r['cpu_us_per_event']} | "
              f"{r['sink_cpu_us_per_event']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
