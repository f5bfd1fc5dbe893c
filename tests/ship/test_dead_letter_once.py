"""The dead-letter file holds each `_id` once (issue 27, item 4): a second writer (the worker
started after one was killed) leaves out what the first wrote; ids read back from a file that
was rotated start afresh; the first look reads only the file's last SCAN_BYTES."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from receiver.ship import dead_letter
from receiver.ship.dead_letter import DeadLetter, DeadLetterFile


def letter(n: int) -> DeadLetter:
    return DeadLetter(b'{"n":%d}' % n, b"", "haproxy-x", f"spool-1-{n:x}", 400,
                      "mapper_parsing_exception", "refused")


def ids(path: Path) -> list[str]:
    return [json.loads(line)["_id"] for line in path.read_text().splitlines()]


def test_a_successor_leaves_out_what_was_written(tmp_path: Path) -> None:
    path = tmp_path / "dl" / "dead-letter.jsonl"
    first, second = DeadLetterFile(str(path)), DeadLetterFile(str(path))
    assert first.write([letter(n) for n in range(10)]) == 10
    assert second.write([letter(n) for n in range(5, 15)]) == 5  # 5..9 were there
    assert first.write([letter(n) for n in range(12, 20)]) == 5  # read back the second's too
    assert first.write([letter(20), letter(20)]) == 1
    assert ids(path) == [f"spool-1-{n:x}" for n in range(21)]
    unnamed = DeadLetter(None, b"\x00", "", "", 0, "undecodable_record", "x")
    assert second.write([unnamed, unnamed]) == 2  # no id: nothing to recognise it by
    os.rename(path, tmp_path / "dl" / "rotated.jsonl")
    assert second.write([letter(n) for n in range(3)]) == 3  # a new file: written again
    assert ids(path) == [f"spool-1-{n:x}" for n in range(3)]


def test_the_first_look_reads_the_last_scan_bytes(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "dead-letter.jsonl"
    DeadLetterFile(str(path)).write([letter(n) for n in range(100)])
    line = len(path.read_bytes().splitlines(keepends=True)[-1])  # the last ten: one length
    monkeypatch.setattr(dead_letter, "SCAN_BYTES", line * 10)  # exactly the last 10 lines
    late = DeadLetterFile(str(path))
    assert late.write([letter(n) for n in range(100)]) == 90  # 0..89 not seen: written again
    monkeypatch.setattr(dead_letter, "SCAN_BYTES", line * 10 + 1)  # inside line 89
    later = DeadLetterFile(str(path))
    assert later.write([letter(n) for n in range(88, 92)]) == 2  # 88 and 89: cut, not read
