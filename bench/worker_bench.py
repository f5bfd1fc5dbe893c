"""A worker's CPU µs per event, by line kind: decode the spool record, parse, encode the bulk body.

    python3 bench/worker_bench.py [--events 100000] [--kinds seed,httplog] [--code DIR]
                                  [--rounds 3] [--profile] [--instructions]

For each kind of line it fills version 2 spool records (as the receive path writes them) with
`--events` distinct lines and times, in CPU seconds, `decode` alone, `decode + Parser.parse`,
and `BulkEncoder.encode` in batches of 1,000 (decode + parse + bulk body: what a worker does per
event behind the spool). Prints the best of `--rounds` rounds (the round least disturbed by
other processes) as µs per event and events/s, then the peak RSS.

Kinds:
- `seed`: the load generator's JSON line (bench/workload.py), dated now (`@timestamp` from `%t`);
- `seed-fixed`: the same lines with the generator's fixed date (far from the receive time: the
  receive time stamps the event, the date is kept as `haproxy.claimed_time`);
- `httplog`: the README walkthrough's httplog line, dated now, with varying client address,
  port, milliseconds and query string.

`--code DIR` measures the `receiver` package of another checkout (e.g. the main branch) with this
same script: before/after in one sitting.

`--instructions` counts instead of timing: the CPU instructions per event of decode + parse +
bulk body, under valgrind's callgrind (which must be on PATH), from two runs of `--events` 0 and
N after the same set-up. Slow (about a minute a kind), but the same count whatever else the
machine is doing: the way to compare two checkouts on a machine shared with other work.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--events", type=int, default=100_000)
parser.add_argument("--kinds", default="seed,httplog")
parser.add_argument("--code", default=str(Path(__file__).resolve().parents[1]),
                    help="the checkout whose receiver package is measured")
parser.add_argument("--rounds", type=int, default=3)
parser.add_argument("--profile", action="store_true", help="cProfile of one BulkEncoder pass")
parser.add_argument("--instructions", action="store_true",
                    help="instructions per event under callgrind instead of CPU time")
parser.add_argument("--encode-only", type=int, default=-1, help=argparse.SUPPRESS)  # callgrind's run
ARGS = parser.parse_args()
sys.path.insert(0, ARGS.code)
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry  # noqa: E402

from bench.workload import TEMPLATE  # noqa: E402
from receiver.config import ElasticsearchSettings, ParseSettings  # noqa: E402
from receiver.event import FrameEncoder, decode  # noqa: E402
from receiver.metrics import ParseMetrics  # noqa: E402
from receiver.parse import Parser  # noqa: E402
from receiver.runtime import tune  # noqa: E402
from receiver.ship.encode import BulkEncoder  # noqa: E402
from receiver.spool import Position, Record  # noqa: E402

HTTPLOG = (  # the README walkthrough's line (bench/doc_weight.py), with the varying parts as fields
    "<134>{header} haproxy[11604]: 10.0.{a}.{b}:{port} [{date}.{ms:03d}] fe_httplog be_app/s1 "
    '0/0/0/0/0 404 161 - - ---- 1/1/0/0/0 0/0 "GET /status/404?ref=home&page={n} HTTP/1.1"'
)


def make_lines(kind: str, count: int, now: float) -> list[bytes]:
    moment = time.gmtime(now)
    header = time.strftime("%b %d %H:%M:%S", moment)
    date = time.strftime("%d/%b/%Y:%H:%M:%S", moment)
    base = int(now * 1e6)
    if kind == "httplog":
        return [HTTPLOG.format(header=header, date=date, a=n // 256 % 256, b=n % 256,
                               port=1024 + n % 60000, ms=n % 1000, n=n).encode()
                for n in range(count)]
    if kind in ("seed", "seed-fixed"):
        template = TEMPLATE if kind == "seed-fixed" else TEMPLATE.replace(
            "25/Nov/2026:19:47:11", date)
        return [template.format(date="Nov 25 19:47:11" if kind == "seed-fixed" else header,
                                a=n // 256 % 256, b=n % 256, port=1024 + n % 60000,
                                ms=n % 1000, n=n, us=base + n * 10).encode()
                for n in range(count)]
    raise SystemExit(f"unknown kind {kind!r}: seed, seed-fixed or httplog")


def best_of(rounds: int, run: Callable[[], object]) -> float:
    """The least CPU time of `rounds` runs, in seconds."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def measure(kind: str, lines: list[bytes], now: float) -> None:
    payloads = FrameEncoder("udp://127.0.0.1:5140").encode_each(
        lines, now, [("10.0.0.1", 40000)] * len(lines))
    records = [Record(Position(1, i), payload, now) for i, payload in enumerate(payloads)]
    parse = Parser(ParseSettings()).parse
    bulk = BulkEncoder(ElasticsearchSettings(), Parser(ParseSettings()),
                       ParseMetrics(CollectorRegistry()))

    def decode_only() -> None:
        for payload in payloads:
            decode(payload)

    def decode_parse() -> None:
        for payload in payloads:
            received = decode(payload)
            parse(received.frame, received.received_at)  # type: ignore[union-attr]

    def encode() -> None:
        for i in range(0, len(records), 1000):
            bulk.encode(records[i : i + 1000], "benchspool")

    for stage, run in (("decode", decode_only), ("decode + parse", decode_parse),
                       ("decode + parse + bulk body", encode)):
        cost = best_of(ARGS.rounds, run) / len(lines)
        print(f"{kind:<11} {stage:<34} {cost * 1e6:9.2f} {1 / cost:10.0f}")
    if ARGS.profile:
        profile = cProfile.Profile()
        profile.runcall(encode)
        pstats.Stats(profile).sort_stats("tottime").print_stats(20)


def encode_only(kind: str, count: int) -> None:
    """Set up 3,200 events, then encode the first 200 (plans, caches) and `count` more: what
    callgrind counts for `--instructions`, twice, to subtract the set-up."""
    now = 1795636031.5  # fixed: the same lines every run
    lines = make_lines(kind, 3200, now)
    payloads = FrameEncoder("udp://127.0.0.1:5140").encode_each(
        lines, now, [("10.0.0.1", 40000)] * len(lines))
    records = [Record(Position(1, i * 400), payload, now) for i, payload in enumerate(payloads)]
    bulk = BulkEncoder(ElasticsearchSettings(), Parser(ParseSettings()),
                       ParseMetrics(CollectorRegistry()))
    bulk.encode(records[:200], "benchspool")
    for i in range(200, 200 + count, 1000):
        bulk.encode(records[i : i + min(1000, 200 + count - i)], "benchspool")


def instructions() -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (Debian: apt-get install valgrind)")
    count = min(ARGS.events, 3000)
    print(f"code: {ARGS.code}  instructions per event (callgrind), {count} events per kind")
    for kind in ARGS.kinds.split(","):
        totals = []
        for events in (0, count):
            done = subprocess.run(
                ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                 __file__, "--code", ARGS.code, "--kinds", kind, "--encode-only", str(events)],
                capture_output=True, text=True, check=True)
            found = re.search(r"Collected : (\d+)", done.stderr)
            assert found is not None, done.stderr[-500:]
            totals.append(int(found.group(1)))
        print(f"{kind:<11} decode + parse + bulk body {(totals[1] - totals[0]) / count:12,.0f}")


def main() -> None:
    if ARGS.encode_only >= 0:
        encode_only(ARGS.kinds, ARGS.encode_only)
        return
    if ARGS.instructions:
        instructions()
        return
    tune()
    now = time.time()
    print(f"code: {ARGS.code}  events: {ARGS.events} per kind  best of {ARGS.rounds} rounds")
    print(f"{'kind':<11} {'stage':<34} {'µs/event':>9} {'events/s':>10}")
    for kind in ARGS.kinds.split(","):
        measure(kind, make_lines(kind, ARGS.events, now), now)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.0f} MiB (CPU seconds: {time.process_time():.1f})")


if __name__ == "__main__":
    main()
