"""The command line's PATHs -> the files an import reads, in order, and its units of work.

A PATH is a file, a directory (its files, not those of its subdirectories, hidden ones
skipped), a glob (`'/var/log/haproxy.log*'`, expanded here when the shell did not), or `-` for
standard input. A file named twice (a glob overlapping another, a link) is read once. Files from
a directory or a glob go oldest first in a rotated set (`haproxy.log.2.gz`, `haproxy.log.1`,
`haproxy.log`; dated suffixes `haproxy.log-20261130` in date order), so that a progress line
moves through time; the ids do not depend on the order.
"""

from __future__ import annotations

import glob
import math
import os
import re
import stat
from dataclasses import dataclass, field

from receiver.importer.source import STDIN, FileTally, Unit

# `name.N`, `name.N.gz`, `name-YYYYMMDD[HH...]`, `name-YYYYMMDD.gz`: a rotated copy of `name`.
_ROTATED = re.compile(r"^(?P<base>.+?)(?:\.(?P<number>\d+)|-(?P<date>\d{8,14}))?(?P<gz>\.gz)?$")
_GLOB_CHARS = re.compile(r"[*?\[]")
# Pieces `--workers` cut large plain files into: big enough that a piece costs nothing to
# start, small enough that the workers finish together.
PIECE_BYTES = 32 * 1024 * 1024


@dataclass
class Plan:
    """The files to read, each with its tally (an error already, for a PATH that names none)."""

    tallies: dict[int, FileTally] = field(default_factory=dict)

    @property
    def paths(self) -> list[str]:
        return [tally.path for tally in self.tallies.values()]

    @property
    def total_bytes(self) -> int:
        return sum(tally.size for tally in self.tallies.values())

    @property
    def reads_stdin(self) -> bool:
        return any(tally.path == STDIN for tally in self.tallies.values())

    def units(self, workers: int = 1, piece_bytes: int = PIECE_BYTES) -> list[Unit]:
        """One unit a file; with several workers, plain files larger than two pieces are cut
        into pieces (a gzip stream can only be read from its start)."""
        units: list[Unit] = []
        for number, tally in self.tallies.items():
            if tally.errors:
                continue
            pieces = 1
            if workers > 1 and tally.size > 2 * piece_bytes and tally.path != STDIN \
                    and not _is_gzip(tally.path):
                pieces = math.ceil(tally.size / piece_bytes)
            tally.units = pieces
            if pieces == 1:
                units.append(Unit(number, tally.path))
                continue
            bounds = [tally.size * k // pieces for k in range(pieces)]
            # The last piece is open-ended: a file still being written is read to its last
            # whole line, as when it is read whole.
            ends: list[int | None] = [*bounds[1:], None]
            units += [Unit(number, tally.path, start, end) for start, end in zip(bounds, ends,
                                                                                 strict=True)]
        return units


def make_plan(paths: list[str]) -> Plan:
    plan = Plan()
    seen: set[tuple[int, int] | str] = set()

    def add(path: str, problem: str = "") -> None:
        key: tuple[int, int] | str = os.path.abspath(path)
        size = 0
        if path != STDIN and not problem:
            try:
                status = os.stat(path)
                key = (status.st_dev, status.st_ino)
                size = status.st_size
            except OSError:
                pass  # opening it says why
        if key in seen:
            return
        seen.add(key)
        tally = FileTally(path, size)
        if problem:
            tally.errors.append(problem)
            tally.finished = tally.units
        plan.tallies[len(plan.tallies)] = tally

    for path in paths:
        if path == STDIN:
            add(path)
        elif os.path.isdir(path):
            names = [os.path.join(path, name) for name in os.listdir(path)
                     if not name.startswith(".")]
            files = [name for name in names if _is_file(name)]
            if not files:
                add(path, f"{path}: a directory without files")
            for name in rotation_order(files):
                add(name)
        elif not os.path.lexists(path) and _GLOB_CHARS.search(path):
            matches = [name for name in glob.glob(path) if _is_file(name)]
            if not matches:
                add(path, f"{path}: matches no file")
            for name in rotation_order(matches):
                add(name)
        else:
            add(path)
    return plan


def rotation_order(paths: list[str]) -> list[str]:
    """Oldest first within each rotated set, sets by name: `x.log.2.gz`, `x.log.1`, `x.log`."""

    def key(path: str) -> tuple[str, int, int, str, str]:
        match = _ROTATED.match(path)
        assert match is not None  # `.+?` matches any non-empty name
        number, date = match.group("number"), match.group("date")
        if number is None and date is None:
            return (match.group("base"), 1, 0, "", path)  # the live file: newest
        return (match.group("base"), 0, -int(number or 0), date or "", path)

    return sorted(paths, key=key)


def _is_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _is_gzip(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(2) == b"\x1f\x8b"
    except OSError:
        return False
