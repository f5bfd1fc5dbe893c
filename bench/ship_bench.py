"""Replay throughput: a full spool -> N worker processes (parse + bulk) -> bench/nullsink.py.

    python3 bench/ship_bench.py                       # 200k messages, 1 and 2 workers, gzip off
    python3 bench/ship_bench.py --workers 1,2,3 --events 500000 --gzip on
    python3 bench/ship_bench.py --workers 1 --rate 2000 --events 60000   # an everyday rate

Fills a fresh spool with N loadgen-shaped messages as received (bench/workload.py), or with
documents as an earlier version spooled them (`--records documents`), then starts the real
`WorkerPool` (receiver/workers/: the ledger stays in this process, each worker is its own
interpreter) and times it from start until the ledger has every event acknowledged. Prints
events/s, the CPU seconds and peak RSS of the workers and of this process (the ledger), and the
sink's CPU (its own process, sharing the machine's cores). Re-executes itself once with glibc
malloc tuned as the workers tune themselves (receiver/runtime.py).

`--rate N` measures a worker at an everyday rate instead: the workers start on an empty spool
and this process appends the messages as they would arrive, N a second in one append every
50 ms (what the receiving process does with a connection that brings little). The first
second's worth is a warm-up; the worker CPU of the rest (start-up excluded) is reported, per
event too, with the bulk requests the sink saw: what the receiving process's listener costs is
left out, so the worker's own cost per event is measured with less noise than end to end.
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
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.workload import lines
from receiver.config import (
    ElasticsearchSettings,
    ServiceSettings,
    Settings,
    SpoolSettings,
    Workers,
)
from receiver.event import FrameEncoder, encode_document
from receiver.metrics import ReceiverMetrics
from receiver.spool import SpoolWriter
from receiver.workers.pool import WorkerPool

NULLSINK = Path(__file__).resolve().parent / "nullsink.py"  # the repository's own null Elasticsearch
_MALLOC = {"MALLOC_TRIM_THRESHOLD_": "268435456", "MALLOC_TOP_PAD_": "67108864"}
STALL_LIMIT = 60.0  # seconds without any acknowledged event: the run failed
PACED_APPEND = 0.05  # --rate: seconds between appends


def document(n: int) -> dict[str, Any]:
    """What the parser makes of a loadgen line (its ECS shape), for `--records documents`."""
    return {
        "@timestamp": f"2026-11-25T18:{n // 60000 % 60:02d}:{n // 1000 % 60:02d}.{n % 1000:03d}Z",
        "source.ip": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}",
        "source.port": 1024 + n % 60000, "http.request.method": "GET",
        "url.original": f"/api/v1/items?id={n}", "url.path": "/api/v1/items", "url.query": f"id={n}",
        "http.version": "1.1", "http.response.status_code": 200, "http.response.bytes": 200,
        "haproxy.frontend_name": "fe_http", "haproxy.backend_name": "be_app",
        "haproxy.server_name": "app1", "haproxy.time_queue_ms": 0, "haproxy.time_connect_ms": 0,
        "haproxy.time_response_ms": 0, "haproxy.total_time_ms": 1, "event.duration": 1_000_000,
        "log.syslog.facility.code": 16, "log.syslog.severity.code": 6, "process.name": "haproxy",
        "process.pid": 22, "haproxy.seq": n,
    }


def payloads(kind: str, count: int) -> list[bytes]:
    if kind == "documents":
        return [encode_document(document(n)) for n in range(count)]
    encoder, now = FrameEncoder("udp://127.0.0.1:5140"), time.time()
    messages = lines(count)
    return [p for i in range(0, count, 500)
            for p in encoder.encode(messages[i : i + 500], now, ("127.0.0.1", 40000))]


def start_sink(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    ready = workdir / "sink.ready"
    sink = subprocess.Popen([sys.executable, str(NULLSINK), "--port", str(port),
                             "--ready-file", str(ready)])
    deadline = time.monotonic() + 15
    while not ready.exists():
        if time.monotonic() > deadline or sink.poll() is not None:
            sink.kill()
            raise SystemExit("nullsink did not start")
        time.sleep(0.05)
    return sink


def process_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS MiB) of another process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    peak = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return cpu, peak


def run_once(args: argparse.Namespace, records: list[bytes], workers: int, url: str,
             workdir: Path, sink_pid: int) -> dict[str, Any]:
    urllib.request.urlopen(urllib.request.Request(url + "/_stats/sink/reset", method="POST"),
                           timeout=5).read()
    spool_dir = Path(tempfile.mkdtemp(dir=workdir))
    settings = Settings(
        spool=dataclasses.replace(SpoolSettings(), dir=str(spool_dir), fsync="never"),
        elasticsearch=dataclasses.replace(
            ElasticsearchSettings(), hosts=[url], compression=args.gzip,
            batch_events=args.batch_events, max_in_flight=args.max_in_flight),
        service=dataclasses.replace(ServiceSettings(), workers=Workers(workers), log_level="warning"),
    )
    metrics = ReceiverMetrics()
    writer = SpoolWriter(settings.spool, metrics)
    if args.rate:
        return run_paced(args, records, workers, url, writer, settings, metrics, sink_pid)
    for start in range(0, len(records), 10000):
        writer.append(records[start : start + 10000])
    pool = WorkerPool(settings, metrics, writer.ledger)
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    sink_before = process_usage(sink_pid)[0]
    started = time.perf_counter()
    pool.start()
    pids = [w.process.pid for w in pool._workers.values()]
    wait_acknowledged(writer)
    elapsed = time.perf_counter() - started
    worker_usage = [process_usage(pid) for pid in pids]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    sink_cpu = process_usage(sink_pid)[0] - sink_before
    pool.stop(5.0)
    writer.close()
    total = len(records)
    ledger_cpu = (usage.ru_utime + usage.ru_stime) - (usage_before.ru_utime + usage_before.ru_stime)
    with urllib.request.urlopen(url + "/_stats/sink", timeout=5) as response:
        stats = json.loads(response.read())
    return {
        "records": args.records, "workers": workers, "gzip": args.gzip, "events": total,
        "sink_docs": stats["docs"], "seconds": round(elapsed, 2),
        "events_per_s": round(total / elapsed),
        "worker_cpu_s": round(sum(cpu for cpu, _ in worker_usage), 2),
        "worker_peak_rss_mib": round(max(rss for _, rss in worker_usage)),
        "ledger_cpu_s": round(ledger_cpu, 2),
        "sink_cpu_s": round(sink_cpu, 2),
    }


def wait_acknowledged(writer: SpoolWriter) -> None:
    last, stalled_since = writer.ledger.pending(), time.monotonic()
    while last > 0:  # a worker that keeps failing must not hang the benchmark
        time.sleep(0.01)
        pending = writer.ledger.pending()
        if pending != last:
            last, stalled_since = pending, time.monotonic()
        elif time.monotonic() - stalled_since > STALL_LIMIT:
            raise SystemExit(f"no progress for {STALL_LIMIT:.0f} s with {pending} events "
                             "pending: the workers are not shipping (see their log above)")


def feed(writer: SpoolWriter, records: list[bytes], rate: int) -> None:
    """Append `records` at `rate` a second, one append every PACED_APPEND seconds."""
    step = max(1, round(rate * PACED_APPEND))
    started = time.monotonic()
    for n, start in enumerate(range(0, len(records), step)):
        delay = started + n * step / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        writer.append(records[start : start + step])


def run_paced(args: argparse.Namespace, records: list[bytes], workers: int, url: str,
              writer: SpoolWriter, settings: Settings, metrics: ReceiverMetrics,
              sink_pid: int) -> dict[str, Any]:
    """`--rate`: the workers' CPU per event at a steady rate, after a warm-up."""
    warm, measured = records[: args.rate], records[args.rate :]
    pool = WorkerPool(settings, metrics, writer.ledger)
    pool.start()
    pids = [w.process.pid for w in pool._workers.values()]
    feed(writer, warm, args.rate)
    wait_acknowledged(writer)
    time.sleep(1.0)  # the warm-up's last request answered and its metrics reported
    before = sum(process_usage(pid)[0] for pid in pids)
    sink_before = process_usage(sink_pid)[0]
    with urllib.request.urlopen(url + "/_stats/sink", timeout=5) as response:
        requests_before = json.loads(response.read())["bulk_requests"]
    started = time.perf_counter()
    feed(writer, measured, args.rate)
    wait_acknowledged(writer)
    elapsed = time.perf_counter() - started
    time.sleep(1.0)  # as before the measure: the same tail on both sides
    worker_usage = [process_usage(pid) for pid in pids]
    cpu = sum(used for used, _ in worker_usage) - before
    sink_cpu = process_usage(sink_pid)[0] - sink_before
    with urllib.request.urlopen(url + "/_stats/sink", timeout=5) as response:
        stats = json.loads(response.read())
    pool.stop(5.0)
    writer.close()
    return {
        "records": args.records, "workers": workers, "gzip": args.gzip, "rate": args.rate,
        "events": len(measured), "seconds": round(elapsed, 2),
        "worker_cpu_s": round(cpu, 3), "worker_us_per_event": round(cpu / len(measured) * 1e6, 1),
        "bulk_requests": stats["bulk_requests"] - requests_before,
        "worker_peak_rss_mib": round(max(rss for _, rss in worker_usage)),
        "sink_cpu_s": round(sink_cpu, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--workers", default="1,2", help="comma list of worker counts to run")
    parser.add_argument("--records", choices=["received", "documents"], default="received")
    parser.add_argument("--gzip", choices=["on", "off"], default="off")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each worker count, alternating")
    defaults = ElasticsearchSettings()
    parser.add_argument("--batch-events", type=int, default=defaults.batch_events)
    parser.add_argument("--max-in-flight", type=int, default=defaults.max_in_flight)
    parser.add_argument("--sink-port", type=int, default=15921)
    parser.add_argument("--rate", type=int, default=0,
                        help="events a second appended while the workers ship (0: a full spool)")
    parser.add_argument("--json", action="store_true", help="print JSON rows only")
    args = parser.parse_args()
    if any(os.environ.get(k) != v for k, v in _MALLOC.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **_MALLOC})
    records = payloads(args.records, args.events)
    url = f"http://127.0.0.1:{args.sink_port}"
    counts = [int(n) for n in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="ship-bench-") as tmp:
        workdir = Path(tmp)
        sink = start_sink(args.sink_port, workdir)
        try:
            rows = [run_once(args, records, n, url, workdir, sink.pid)
                    for _ in range(args.repeat) for n in counts]
        finally:
            sink.terminate()
            sink.wait(10)
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    if args.rate:
        print("| workers | rate | events | seconds | bulk requests | worker CPU s | worker µs/event "
              "| worker peak RSS MiB | sink CPU s |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['workers']} | {r['rate']:,} | {r['events']:,} | {r['seconds']} | "
                  f"{r['bulk_requests']} | {r['worker_cpu_s']} | {r['worker_us_per_event']} | "
                  f"{r['worker_peak_rss_mib']} | {r['sink_cpu_s']} |")
        return 0
    print("| records | workers | gzip | events | sink docs | seconds | events/s | worker CPU s "
          "| worker peak RSS MiB | ledger CPU s | sink CPU s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['records']} | {r['workers']} | {r['gzip']} | {r['events']} | "
              f"{r['sink_docs']} | {r['seconds']} | {r['events_per_s']:,} | {r['worker_cpu_s']} | "
              f"{r['worker_peak_rss_mib']} | {r['ledger_cpu_s']} | {r['sink_cpu_s']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
