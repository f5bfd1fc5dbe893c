"""Fuzz: 60,000 mutated corpus frames (a seeded sample of what 200,000 did in 3.3 times the
time); no exception escapes, every document is whole.
(`python bench/fuzz_parse.py --count 1000000` runs the long version.)"""

from __future__ import annotations

from tests.parse.corpus import all_frames
from tests.parse.fuzzing import run


def test_mutated_corpus_frames_never_break_the_parser() -> None:
    seeds = [frame.message for frame in all_frames()]
    result = run(seeds, 60_000, seed=20261125)
    assert result["count"] == 60_000
    # Mutations hit every family: the detector is exercised, not just the failure path.
    assert {"json", "httplog", "tcplog", "text"} <= set(result["formats"])
