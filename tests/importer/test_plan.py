"""Which files an import reads, in which order, and how `--workers` shares them out."""

from __future__ import annotations

import gzip
from pathlib import Path

from receiver.importer.plan import make_plan, rotation_order


def test_rotated_sets_go_oldest_first() -> None:
    names = ["d/haproxy.log", "d/haproxy.log.1", "d/haproxy.log.10.gz", "d/haproxy.log.2.gz",
             "d/other.log-20261130.gz", "d/other.log-20261129", "d/other.log"]
    assert rotation_order(names) == [
        "d/haproxy.log.10.gz", "d/haproxy.log.2.gz", "d/haproxy.log.1", "d/haproxy.log",
        "d/other.log-20261129", "d/other.log-20261130.gz", "d/other.log"]


def test_directories_globs_and_files_each_read_once(tmp_path: Path) -> None:
    logs = tmp_path / "log"
    (logs / "sub").mkdir(parents=True)
    for name in ("haproxy.log", "haproxy.log.1", ".hidden"):
        (logs / name).write_bytes(b"x\n")
    (logs / "haproxy.log.2.gz").write_bytes(gzip.compress(b"x\n"))
    (logs / "sub" / "deeper.log").write_bytes(b"x\n")
    (tmp_path / "link.log").symlink_to(logs / "haproxy.log")
    plan = make_plan([str(logs), str(logs / "haproxy.log*"), str(tmp_path / "link.log"),
                      str(tmp_path / "nothing*"), str(tmp_path / "empty"), "-"])
    assert plan.paths == [str(logs / "haproxy.log.2.gz"), str(logs / "haproxy.log.1"),
                          str(logs / "haproxy.log"), str(tmp_path / "nothing*"),
                          str(tmp_path / "empty"), "-"]
    errors = {tally.path: tally.errors for tally in plan.tallies.values()}
    assert errors[str(tmp_path / "nothing*")] == [f"{tmp_path / 'nothing*'}: matches no file"]
    assert errors[str(tmp_path / "empty")] == []  # a missing file: its opening says why
    assert plan.reads_stdin


def test_workers_share_large_plain_files_in_pieces(tmp_path: Path) -> None:
    (tmp_path / "big.log").write_bytes(b"x" * 99 + b"\n" * 901)  # 1000 bytes
    (tmp_path / "big.log.1.gz").write_bytes(gzip.compress(b"y\n" * 5000))
    plan = make_plan([str(tmp_path / "big.log.1.gz"), str(tmp_path / "big.log")])
    assert [(u.path, u.start, u.end) for u in plan.units(1, 100)] == [
        (str(tmp_path / "big.log.1.gz"), 0, None), (str(tmp_path / "big.log"), 0, None)]
    pieces = plan.units(2, 300)
    assert [(u.start, u.end) for u in pieces[1:]] == [(0, 250), (250, 500), (500, 750), (750, None)]
    assert pieces[0].end is None  # gzip: whole
    assert plan.tallies[1].units == 4
