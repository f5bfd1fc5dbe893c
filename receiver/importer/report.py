"""What a person watching an import sees: a progress line on a terminal, a summary at the end.

Both go to stderr (stdout carries the documents when no Elasticsearch is configured). The
progress line is redrawn in place twice a second: bytes read of the total (compressed bytes for
gzip files, so the share is of the work), events per second over the last seconds, the time
left at that pace, and the counts so far: new, already there (Elasticsearch had them: an
earlier run, an overlapping file), dead-lettered, left out by `--since`/`--until`.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TextIO

from receiver.importer.source import STDIN, FileTally

_RATE_WINDOW = 5.0  # seconds the rates are measured over
_BAR = 24


@dataclass
class Totals:
    """The counts of a whole import (every file, every worker process)."""

    files: int = 0
    total_bytes: int = 0  # on disk, of the files planned (0 when unknown: stdin)
    consumed: int = 0
    lines: int = 0
    acknowledged: int = 0  # shipped or dead-lettered (or left out)
    new: int = 0
    existing: int = 0
    dead: int = 0
    outside: int = 0
    failed_files: int = 0

    @classmethod
    def of(cls, tallies: Iterable[FileTally], delivered: int, existing: int) -> Totals:
        totals = cls(existing=existing, new=max(0, delivered - existing))
        for tally in tallies:
            totals.files += 1
            totals.total_bytes += tally.size
            totals.consumed += tally.consumed
            totals.lines += tally.lines
            totals.acknowledged += tally.shipped + tally.dead
            totals.dead += tally.dead
            totals.outside += tally.outside
            totals.failed_files += bool(tally.errors)
        return totals


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"  # pragma: no cover - the loop returns at GiB


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """The progress line, redrawn in place on a terminal."""

    def __init__(self, out: TextIO, interval: float = 0.5) -> None:
        self._out = out
        self._interval = interval
        self._next = 0.0
        self._samples: deque[tuple[float, int, int]] = deque()  # (time, acknowledged, bytes)
        self._shown = False

    def update(self, totals: Totals, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + self._interval
        samples = self._samples
        samples.append((now, totals.acknowledged, totals.consumed))
        while len(samples) > 2 and samples[1][0] < now - _RATE_WINDOW:
            samples.popleft()
        self._out.write("\r" + self.line(totals) + "\033[K")
        self._out.flush()
        self._shown = True

    def line(self, totals: Totals) -> str:
        first, last = self._samples[0], self._samples[-1]
        elapsed = last[0] - first[0]
        events_rate = (last[1] - first[1]) / elapsed if elapsed > 0 else 0.0
        bytes_rate = (last[2] - first[2]) / elapsed if elapsed > 0 else 0.0
        parts = []
        if totals.total_bytes:
            share = min(1.0, totals.consumed / totals.total_bytes)
            filled = int(share * _BAR)
            parts.append(f"[{'#' * filled}{'.' * (_BAR - filled)}] {share * 100:3.0f}% "
                         f"{_size(totals.consumed)} of {_size(totals.total_bytes)}")
            left = totals.total_bytes - totals.consumed
            if bytes_rate > 0 and left > 0:
                parts.append(f"ETA {_duration(left / bytes_rate)}")
        else:
            parts.append(f"{_size(totals.consumed)} read")
        parts.append(f"{events_rate:,.0f} events/s")
        parts.append(f"new {totals.new:,}")
        parts.append(f"already there {totals.existing:,}")
        parts.append(f"dead-lettered {totals.dead:,}")
        if totals.outside:
            parts.append(f"outside the period {totals.outside:,}")
        return "  ".join(parts)

    def close(self) -> None:
        if self._shown:
            self._out.write("\n")
            self._out.flush()


def _lines(count: int) -> str:
    return f"{count:,} line{'' if count == 1 else 's'}"


def _name(tally: FileTally) -> str:
    return "standard input" if tally.path == STDIN else tally.path


def _file_line(tally: FileTally, dry_run: bool) -> str:
    kind = f" ({tally.kind})" if tally.kind else ""
    head = f"{_name(tally)}{kind}: {_lines(tally.lines)}"
    notes = []
    if dry_run and tally.formats:
        notes.append(", ".join(f"{name} {count:,}" for name, count in _by_count(tally.formats)))
    if not dry_run and tally.dead:
        notes.append(f"{tally.dead:,} dead-lettered")
    if tally.outside:
        notes.append(f"{tally.outside:,} outside the period")
    if tally.cut:
        notes.append(f"{tally.cut:,} cut to listen.max_message_bytes")
    if tally.blank:
        notes.append(f"{tally.blank:,} blank lines skipped")
    if tally.pending:
        notes.append(f"{tally.pending:,} bytes after the last line end (a line still being "
                     "written) left for the next run")
    text = head + (": " + "; ".join(notes) if notes else "")
    for error in tally.errors:
        text += f"\n  error: {error}"
    return text


def _by_count(formats: Tally[str]) -> list[tuple[str, int]]:
    return sorted(formats.items(), key=lambda item: (-item[1], item[0]))


def exit_status(totals: Totals, interrupted: bool) -> int:
    """0 when every line is in Elasticsearch (or already was), 1 otherwise."""
    complete = totals.acknowledged >= totals.lines and not interrupted
    return 0 if complete and not totals.failed_files and not totals.dead else 1


def summary(tallies: list[FileTally], totals: Totals, elapsed: float, *, dry_run: bool = False,
            interrupted: bool = False, dead_letter_file: str = "") -> str:
    """The per-file lines and the totals, for the end of an import."""
    lines = [_file_line(tally, dry_run) for tally in tallies]
    files = f"{totals.files:,} file{'s' if totals.files != 1 else ''}"
    if dry_run:
        formats: Tally[str] = Tally()
        for tally in tallies:
            formats.update(tally.formats)
        by_format = ", ".join(f"{name} {count:,}" for name, count in _by_count(formats))
        lines.append(f"dry run: {_lines(totals.lines)} in {files}, nothing sent"
                     + (f": {by_format}" if by_format else ""))
    else:
        rate = totals.acknowledged / elapsed if elapsed > 0 else 0.0
        text = (f"import: {_lines(totals.lines)} from {files} in {elapsed:.1f} s "
                f"({rate:,.0f} events/s): {totals.new:,} new, {totals.existing:,} already there, "
                f"{totals.dead:,} dead-lettered")
        if totals.dead and dead_letter_file:
            text += f" (in {dead_letter_file})"
        if totals.outside:
            text += f", {totals.outside:,} outside the period"
        lines.append(text)
        unconfirmed = totals.lines - totals.acknowledged
        if interrupted or unconfirmed > 0:
            lines.append(f"interrupted: {max(unconfirmed, 0):,} lines read but not confirmed by "
                         "Elasticsearch; run the same command again (what arrived is recognised "
                         "by its id, nothing is indexed twice)")
    if totals.failed_files:
        lines.append(f"{totals.failed_files:,} of {files} could not be read whole (errors above)")
    return "\n".join(lines)
