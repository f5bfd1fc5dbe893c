"""Tools that must not hide a mistake (issue 26, item 4): the spool commands on a missing or
wrong path say so in one line and fail; `parse` reads files given with --file and refuses a
bare argument that is a file, with a hint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import receiver_command

LINE = '<134>Nov 25 18:21:08 haproxy[7]: {"ci":"192.0.2.7","ST":200,"r":"GET /file HTTP/1.1"}'


@pytest.mark.parametrize("command", ["stats", "dump"])
@pytest.mark.parametrize("place", ["missing", "file", "not a spool"])
def test_spool_commands_on_a_wrong_path_fail_in_one_line(
        command: str, place: str, tmp_path: Path) -> None:
    path = tmp_path / "spool"
    if place == "file":
        path.write_text("x")
    elif place == "not a spool":
        path.mkdir()
        (path / "something.txt").write_text("x")
    done = receiver_command("spool", command, "--spool-dir", str(path))
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and f"spool.dir = '{path}'" in done.stderr
    assert "Traceback" not in done.stderr


def test_parse_reads_files_given_with_file(tmp_path: Path) -> None:
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_text(LINE + "\n" + LINE.replace("/file", "/two") + "\n")
    second.write_text(LINE.replace("/file", "/three") + "\n")
    done = receiver_command("parse", "--compact", "--file", str(first), "-f", str(second))
    assert done.returncode == 0, done.stderr
    paths = [json.loads(line)["url.path"] for line in done.stdout.splitlines()]
    assert paths == ["/file", "/two", "/three"]


def test_parse_refuses_a_bare_argument_that_is_a_file_with_a_hint(tmp_path: Path) -> None:
    log = tmp_path / "haproxy.log"
    log.write_text(LINE + "\n")
    done = receiver_command("parse", str(log))
    assert done.returncode == 2 and done.stdout == ""
    assert f"haproxy-receiver parse --file {log}" in done.stderr


def test_parse_names_a_file_it_cannot_read(tmp_path: Path) -> None:
    done = receiver_command("parse", "--file", str(tmp_path / "gone.log"))
    assert done.returncode == 2 and "gone.log: cannot read: No such file or directory" in done.stderr


def test_test_output_ends_with_its_verdict(es_url: str) -> None:
    done = receiver_command("test", "output", "-e", es_url)
    assert done.stdout.splitlines()[-1].startswith("output "), done.stdout  # ok / test failed
    assert done.stderr == ""  # no log line after (or before) the verdict
    # osmem speaks as OpenSearch: whether it takes the default data stream is known at `run`
    assert "data stream logs-haproxy-default if this server accepts one" in done.stdout
