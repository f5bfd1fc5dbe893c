"""Long fuzz run of the parser: `python bench/fuzz_parse.py --count 1000000 [--seed N]`.

Mutates the corpus frames (tests/data/corpus) and checks that no exception
escapes `Parser.parse` and every document is whole and encodable; prints counts and the rate.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.parse.corpus import all_frames
from tests.parse.fuzzing import run


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--count", type=int, default=1_000_000)
    options.add_argument("--seed", type=int, default=1)
    args = options.parse_args()
    seeds = [frame.message for frame in all_frames()]
    start = time.perf_counter()
    result = run(seeds, args.count, args.seed,
                 report=lambda done: print(f"  {done:,} frames ...", flush=True))
    elapsed = time.perf_counter() - start
    print(f"{result['count']:,} mutated frames in {elapsed:.1f} s "
          f"({result['count'] / elapsed:,.0f}/s): no exception escaped; "
          f"{result['parse_failures']:,} kept as unparsed text")
    print("formats:", dict(sorted(result["formats"].items())))


if __name__ == "__main__":
    main()
