"""CPU µs per message of the receiving process's hot path: `Ingest.accept` (parse → encode → spool
append) on batches of loadgen-shaped lines into a real spool, plus each stage alone.

    python3 bench/ingest_bench.py [--messages 200000] [--batch 64] [--profile]

The lines are what ../shared/bench/loadgen.c sends (RFC 3164 + HAProxy JSON log-format, varying
client address, `seq` and `sent_us`). `--profile` prints the cProfile top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgpack

from receiver.config import ParseSettings, SpoolSettings
from receiver.event import encode_event
from receiver.ingest import Ingest
from receiver.metrics import Metrics
from receiver.parse import Parser
from receiver.runtime import tune
from receiver.spool import SpoolWriter

TEMPLATE = (
    '<134>{date} localhost haproxy[22]: {{"ci":"10.0.{a}.{b}","cp":{port},'
    '"t":"25/Nov/2026:19:47:11.{ms:03d}","ft":"fe_http","b":"be_app","s":"app1","Tl":"-",'
    '"Tw":0,"Tc":0,"Tr":0,"Tt":1,"ST":200,"r":"GET /api/v1/items?id={n} HTTP/1.1", '
    '"HM":"GET", "HP":"/api/v1/items", "B":200, "HQ":"?id={n}", "HU":"/api/v1/items?id={n}", '
    '"HV":"HTTP/1.1", "seq":{n}, "sent_us":{us}}}'
)


def lines(count: int) -> list[bytes]:
    base = int(time.time() * 1e6)
    return [
        TEMPLATE.format(date="Nov 25 19:47:11", a=n // 256 % 256, b=n % 256, port=1024 + n % 60000,
                        ms=n % 1000, n=n, us=base + n * 10).encode()
        for n in range(count)
    ]


def per_message(label: str, count: int, started: float) -> None:
    print(f"{label:<28} {(time.process_time() - started) / count * 1e6:6.2f} µs/msg")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    messages = lines(args.messages)
    tune()
    parse = Parser(ParseSettings()).parse
    now = time.time()
    started = time.process_time()
    documents = [parse(m, now) for m in messages]
    per_message("parse", len(messages), started)
    pack = msgpack.Packer().pack
    started = time.process_time()
    payloads = [encode_event(d, pack) for d in documents]
    per_message("encode (orjson + msgpack)", len(messages), started)
    del documents
    with tempfile.TemporaryDirectory() as directory:
        metrics = Metrics()
        writer = SpoolWriter(SpoolSettings(dir=f"{directory}/a"), metrics)
        started = time.process_time()
        for i in range(0, len(payloads), args.batch):
            writer.append(payloads[i : i + args.batch])
        per_message("spool append", len(payloads), started)
        writer.close()
        del payloads
        writer = SpoolWriter(SpoolSettings(dir=f"{directory}/b"), metrics)
        ingest = Ingest(Parser(ParseSettings()), writer, metrics, block=True)
        sources = ["127.0.0.1"] * args.batch
        profile = cProfile.Profile() if args.profile else None
        started = time.process_time()
        if profile:
            profile.enable()
        for i in range(0, len(messages), args.batch):
            batch = messages[i : i + args.batch]
            ingest.accept(batch, sources[: len(batch)], "udp://bench", "udp")
        if profile:
            profile.disable()
        per_message("Ingest.accept (all stages)", len(messages), started)
        writer.close()
    if profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
