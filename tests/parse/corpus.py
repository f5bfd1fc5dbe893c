"""The ground-truth corpus (tests/data/corpus, see its README.md) as parser input."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"
# The corpus was captured on 2026-11-25; receive times near it make the RFC 3164 year exact.
RECEIVED_AT = 1795631000.0


@dataclass(frozen=True)
class Frame:
    """One corpus record: the message without its TCP framing, and what the driver knew."""

    file: str
    index: int
    message: bytes
    driver: dict[str, Any]


def strip_framing(frame: bytes, framing: str | None) -> bytes:
    """Remove RFC 6587 framing: `<len> ` octet counting, or the LF terminator."""
    if framing == "octet-counting":
        length, _, rest = frame.partition(b" ")
        assert int(length) == len(rest), "octet count disagrees with the frame"
        return rest
    if framing == "lf":
        assert frame.endswith(b"\n")
        return frame[:-1]
    return frame


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.jsonl"))


def frames(path: Path) -> Iterator[Frame]:
    with path.open() as lines:
        for index, line in enumerate(lines):
            record = json.loads(line)
            raw = base64.b64decode(record["frame_b64"])
            yield Frame(
                path.name, index, strip_framing(raw, record.get("tcp_framing")),
                record["driver"],
            )


def all_frames() -> list[Frame]:
    return [frame for path in corpus_files() for frame in frames(path)]
