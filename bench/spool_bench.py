"""Spool throughput: append events/s and MB/s under each fsync policy, and replay speed (read +
acknowledge, as the shipper does after a restart).

    python3 bench/spool_bench.py                 # defaults: 200k events of ~500 bytes
    python3 bench/spool_bench.py --events 50000 --dir /var/tmp/spool-bench

Payloads are msgpack documents shaped like the receiver's (~500 bytes), appended in batches of
64 (a burst of datagrams), read back in batches of 2000 (a bulk request).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from receiver.config import ByteSize, Seconds, SpoolSettings
from receiver.metrics import Metrics
from receiver.spool import LocalLedger, SpoolReader, SpoolWriter, event_id
from receiver.spool.ledger import LEDGER_FILE


def document(n: int) -> bytes:
    return msgpack.packb(
        {
            "@timestamp": "2026-11-25T19:16:20.438Z",
            "source": {"ip": f"10.0.{n % 256}.{n % 200}", "port": 40000 + n % 20000},
            "http": {"request": {"method": "GET"}, "response": {"status_code": 200, "bytes": 5120},
                     "version": "1.1"},
            "url": {"path": f"/api/v1/items/{n}", "query": "page=2&sort=asc"},
            "haproxy": {"frontend_name": "inbound_policy", "backend_name": "default_9999",
                        "server_name": "app-01", "request_ms": 0, "queue_ms": 0,
                        "connect_ms": 1, "response_ms": 5, "total_ms": 92},
            "event": {"duration": 92_000_000, "sequence": n},
            "host": {"name": "lb-1"},
            "log": {"syslog": {"facility": {"code": 16}, "severity": {"code": 6}}},
            "event.original": '{"ci":"10.0.0.1","cp":43174,"ft":"inbound_policy","b":"default_9999",'
                              '"s":"app-01","Tt":92,"ST":200,"r":"GET /api/v1/items HTTP/1.1"}',
        }
    )


def append_run(directory: Path, policy: str, events: int, batch: int) -> tuple[float, float, int]:
    shutil.rmtree(directory, ignore_errors=True)
    settings = SpoolSettings(
        dir=str(directory), max_bytes=ByteSize(16 * 1024**3), segment_bytes=ByteSize(64 * 1024**2),
        fsync=policy,  # type: ignore[arg-type]
    )
    settings = replace(settings, fsync_interval=Seconds(0.2))
    metrics = Metrics()
    batches = [[document(n) for n in range(start, start + batch)] for start in range(0, 64 * batch, batch)]
    size = sum(len(p) for p in batches[0]) / batch
    writer = SpoolWriter(settings, metrics)
    started = time.perf_counter()
    done = 0
    while done < events:
        done += writer.append(batches[(done // batch) % len(batches)])
    elapsed = time.perf_counter() - started
    writer.close()
    fsyncs = int(metrics.registry.get_sample_value("haproxy_receiver_spool_fsyncs_total") or 0)
    return done / elapsed, done * size / elapsed / 1e6, fsyncs


def replay_run(directory: Path, max_records: int, with_ids: bool) -> tuple[float, int]:
    (directory / LEDGER_FILE).unlink(missing_ok=True)  # a restart that replays everything
    writer = SpoolWriter(SpoolSettings(dir=str(directory), max_bytes=ByteSize(16 * 1024**3),
                                       segment_bytes=ByteSize(64 * 1024**2)), Metrics())
    reader = SpoolReader(directory, LocalLedger(writer.ledger))
    started = time.perf_counter()
    count = 0
    while (batch := reader.read(max_records, 5 * 1024**2)) is not None:
        if with_ids:
            for record in batch.records:
                event_id(batch.identity, record.position)
        count += len(batch.records)
        reader.acknowledge(batch, len(batch.records))
    elapsed = time.perf_counter() - started
    reader.close()
    writer.close()
    return count / elapsed, count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dir", type=Path, default=None, help="spool directory (default: a temp dir)")
    args = parser.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="spool-bench-", dir="/var/tmp"))
    rows = []
    try:
        for policy in ("never", "interval", "always"):
            events = args.events if policy != "always" else max(args.events // 4, 1000)
            rate, mbps, fsyncs = append_run(base / "spool", policy, events, args.batch)
            rows.append((f"append, fsync={policy}", events, rate, mbps, f"{fsyncs} fsyncs"))
        append_run(base / "spool", "never", args.events, args.batch)
        rate, count = replay_run(base / "spool", 2000, with_ids=False)
        rows.append(("replay: read + acknowledge", count, rate, 0.0, "batches of 2000"))
        append_run(base / "spool", "never", args.events, args.batch)
        rate, count = replay_run(base / "spool", 2000, with_ids=True)
        rows.append(("replay: read + event_id + acknowledge", count, rate, 0.0, "batches of 2000"))
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    print(f"payload ~{len(document(12345))} bytes, append batches of {args.batch}\n")
    print("| run | events | events/s | MB/s | note |")
    print("|---|---|---|---|---|")
    for name, events, rate, mbps, note in rows:
        print(f"| {name} | {events} | {rate:,.0f} | {mbps:.1f} | {note} |" if mbps else
              f"| {name} | {events} | {rate:,.0f} | | {note} |")


if __name__ == "__main__":
    main()
