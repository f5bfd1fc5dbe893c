"""µs per line of `Parser.parse` for each corpus file (one core, one process).

Run: `python bench/parse_bench.py [--seconds 0.5]`. Reads tests/data/corpus (captured frames),
strips TCP framing, and parses each file's frames in a loop for about `--seconds`; prints a
table sorted by cost, plus the JSON seed line the throughput target is measured on.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from receiver.config import ParseSettings
from receiver.parse import Parser

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "data" / "corpus"
SEED_LINE = (
    b'<134>Nov 25 18:21:08 haproxy[11604]: {"ci":"127.0.0.1","cp":56572,'
    b'"t":"25/Nov/2026:18:21:08.761","ft":"fe_json","b":"be_app","s":"s1",'
    b'"Tl":"25/Nov/2026:18:21:08 +0000","Tw":0,"Tc":0,"Tr":1,"Tt":1,"ST":200,'
    b'"r":"GET / HTTP/1.1", "HM":"GET", "HP":"/", "B":161, "HQ":"", "HU":"/", '
    b'"HV":"HTTP/1.1"}\n'
)


def load(path: Path) -> list[bytes]:
    frames: list[bytes] = []
    for line in path.open():
        record = json.loads(line)
        frame = base64.b64decode(record["frame_b64"])
        if record.get("tcp_framing") == "octet-counting":
            frame = frame.partition(b" ")[2]
        frames.append(frame)
    return frames


def measure(parser: Parser, frames: list[bytes], seconds: float, rounds: int = 3) -> float:
    """µs per frame: the best of `rounds` rounds of repeated passes (the best round is the
    one least disturbed by other processes on the machine)."""
    received = time.time()
    parse = parser.parse
    best = float("inf")
    for _ in range(rounds):
        count = 0
        start = time.perf_counter()
        while True:
            for frame in frames:
                parse(frame, received)
            count += len(frames)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / rounds:
                break
        best = min(best, elapsed / count * 1e6)
    return best


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--seconds", type=float, default=0.5, help="time per file")
    args = options.parse_args()
    parser = Parser(ParseSettings())
    rows: list[tuple[float, str, int]] = []
    for path in sorted(CORPUS.glob("*.jsonl")):
        frames = load(path)
        rows.append((measure(parser, frames, args.seconds), path.stem, len(frames)))
    rows.append((measure(parser, [SEED_LINE], args.seconds), "seed JSON line (MISSION.md)", 1))
    print(f"{'corpus file':<42} {'lines':>6} {'µs/line':>8} {'lines/s':>9}")
    for cost, name, count in sorted(rows):
        print(f"{name:<42} {count:>6} {cost:>8.2f} {1e6 / cost:>9.0f}")


if __name__ == "__main__":
    main()
