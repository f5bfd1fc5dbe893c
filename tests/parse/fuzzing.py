"""Mutation fuzzing of the parser with corpus frames as seeds (used by test_fuzz.py and by
bench/fuzz_parse.py for long runs)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson

from receiver.config import ParseSettings
from receiver.parse import TAG_FAILURE, TAG_REPAIRED, TAG_TRUNCATED, Parser

_INTERESTING = [b'"', b"\\", b"{", b"}", b"[", b"]", b"|", b" ", b"/", b":", b",", b"-", b"+",
                b"#22", b"\\u", b"\x00", b"\n", b"\xff", b"\xc3", b"<BADREQ>", b"-1", b"9" * 30,
                b"<134>", b"1 ", b"Nov 25 ", b"http://", b"~", b"%"]


def mutate(rng: random.Random, seed: bytes, seeds: list[bytes]) -> bytes:
    """One to four random edits: flips, inserts, deletes, cuts, duplications, splices."""
    data = bytearray(seed)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(8)
        position = rng.randrange(len(data) + 1)
        if choice == 0 and data:
            data[min(position, len(data) - 1)] = rng.randrange(256)
        elif choice == 1:
            data[position:position] = rng.choice(_INTERESTING)
        elif choice == 2:
            del data[position : position + rng.randint(1, 20)]
        elif choice == 3:
            del data[position:]
        elif choice == 4:
            end = min(len(data), position + rng.randint(1, 40))
            data[position:position] = data[position:end]
        elif choice == 5:
            other = rng.choice(seeds)
            cut = rng.randrange(len(other) + 1)
            data[position:] = other[cut:]
        elif choice == 6:
            data[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            data = bytearray(data[: position or 1] * rng.randint(1, 3))
    return bytes(data[:70000])


def run(seeds: list[bytes], count: int, seed: int = 1,
        report: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Parse `count` mutated frames; returns counts. Raises AssertionError on a broken promise
    (an exception escaping, a missing field, a document orjson cannot encode)."""
    rng = random.Random(seed)
    parsers = [Parser(ParseSettings(keep_original=True)), Parser(ParseSettings(field_names="raw")),
               Parser(ParseSettings(capture_request_headers=["Host", "User-Agent"],
                                    timezone="Europe/Berlin"))]
    failures = 0
    formats: dict[str, int] = {}
    for index in range(count):
        message = mutate(rng, rng.choice(seeds), seeds)
        parser = parsers[index % len(parsers)]
        document = parser.parse(message, 1795631000.0 + index)
        stamp = document["@timestamp"]
        assert len(stamp) == 24 and stamp[10] == "T" and stamp.endswith("Z"), (message, stamp)
        tags = document.get("tags", ())
        if TAG_FAILURE in tags:
            # Kept once: the text as `message`, or a binary body base64 in event.original.
            assert ("event.original" in document) == (document["error.type"] == "binary")
            assert isinstance(document["message"], str), message
        elif parser.keep_original or TAG_REPAIRED in tags or TAG_TRUNCATED in tags:
            assert isinstance(document["event.original"], str), message
        else:
            assert "event.original" not in document, message
        assert document.get("error.type") != "internal", (message, document["error.message"])
        orjson.dumps(document)
        if TAG_FAILURE in document.get("tags", ()):
            failures += 1
        log_format = document["haproxy.log_format"]
        formats[log_format] = formats.get(log_format, 0) + 1
        if report is not None and index and index % 100000 == 0:
            report(index)
    return {"count": count, "parse_failures": failures, "formats": formats}
