"""CPU µs per message of the receive path (`Ingest.accept`: encode the record, append to the
spool) on batches of loadgen-shaped lines into a real spool, and of what the workers do with
each message behind the spool (parse, encode the bulk body).

    python3 bench/ingest_bench.py [--messages 200000] [--batch 64] [--profile]

`--profile` prints the cProfile top functions of the receive path.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry

from bench.workload import lines
from receiver.config import ElasticsearchSettings, ParseSettings, SpoolSettings
from receiver.event import FrameEncoder, Peer
from receiver.ingest import Ingest
from receiver.metrics import Metrics, ParseMetrics
from receiver.parse import Parser
from receiver.runtime import tune
from receiver.ship.encode import BulkEncoder
from receiver.spool import Position, Record, SpoolWriter


def per_message(label: str, count: int, started: float) -> None:
    print(f"{label:<44} {(time.process_time() - started) / count * 1e6:6.2f} µs/msg")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    messages = lines(args.messages)
    tune()
    print("receiving process")
    encoder = FrameEncoder("udp://127.0.0.1:5140")
    peers: list[Peer] = [("10.0.0.1", 40000)] * args.batch
    now = time.time()
    started = time.process_time()
    payloads = [p for i in range(0, len(messages), args.batch)
                for p in encoder.encode_each(messages[i : i + args.batch], now,
                                             peers[: len(messages[i : i + args.batch])])]
    per_message("  record encoding", len(messages), started)
    with tempfile.TemporaryDirectory() as directory:
        metrics = Metrics()
        writer = SpoolWriter(SpoolSettings(dir=f"{directory}/a"), metrics)
        started = time.process_time()
        for i in range(0, len(payloads), args.batch):
            writer.append(payloads[i : i + args.batch])
        per_message("  spool append", len(payloads), started)
        writer.close()
        writer = SpoolWriter(SpoolSettings(dir=f"{directory}/b"), metrics)
        ingest = Ingest(writer, metrics, block=True)
        profile = cProfile.Profile() if args.profile else None
        started = time.process_time()
        if profile:
            profile.enable()
        for i in range(0, len(messages), args.batch):
            batch = messages[i : i + args.batch]
            ingest.accept(batch, peers[: len(batch)], "udp://127.0.0.1:5140", "udp")
        if profile:
            profile.disable()
        per_message("  Ingest.accept (all of the receive path)", len(messages), started)
        writer.close()
    print("each worker")
    parse = Parser(ParseSettings()).parse
    started = time.process_time()
    for message in messages:
        parse(message, now)
    per_message("  parse", len(messages), started)
    bulk = BulkEncoder(ElasticsearchSettings(), Parser(ParseSettings()),
                       ParseMetrics(CollectorRegistry()))
    records = [Record(Position(1, i), p, now) for i, p in enumerate(payloads)]
    started = time.process_time()
    for i in range(0, len(records), 1000):
        bulk.encode(records[i : i + 1000], "benchspool")
    per_message("  decode + parse + bulk body (BulkEncoder)", len(records), started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this benchmark: {peak:.0f} MiB")
    if profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
