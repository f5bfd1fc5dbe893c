"""The process's own log: ECS-shaped JSON lines or text, chosen by `--log-format` on every
command that logs, and the same in the ship process as in the receiving one."""

from __future__ import annotations

import datetime
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from receiver.logs import setup_logging
from tests.support import REPO, Receiver, group_members, wait_for


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_the_ecs_fields(restore_logging: None) -> None:
    out = io.StringIO()
    setup_logging("info", "json", stream=out)
    logging.getLogger("receiver.example").warning("spool %s is %d%% full", "/var/spool", 93)
    logging.getLogger("receiver.example").debug("not shown at info")
    (line,) = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["log.level"] == "warning"
    assert record["log.logger"] == "receiver.example"
    assert record["message"] == "spool /var/spool is 93% full"
    assert record["process.pid"] == os.getpid()
    assert record["ecs.version"]
    stamp = datetime.datetime.fromisoformat(record["@timestamp"])
    assert stamp.utcoffset() == datetime.timedelta(0) and record["@timestamp"].endswith("Z")
    assert abs((datetime.datetime.now(datetime.UTC) - stamp).total_seconds()) < 600
    assert not any(key.startswith("error.") for key in record)


def test_exceptions_become_error_fields_on_one_line(restore_logging: None) -> None:
    out = io.StringIO()
    setup_logging("info", "json", stream=out)
    empty: dict[str, int] = {}
    try:
        empty["missing"]
    except KeyError:
        logging.getLogger("receiver.ship").exception("bulk request failed\nsecond line")
    (line,) = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["log.level"] == "error"
    assert record["message"] == "bulk request failed\nsecond line"
    assert record["error.type"] == "KeyError"
    assert record["error.message"] == "'missing'"
    assert record["error.stack_trace"].startswith("Traceback (most recent call last):")
    assert "KeyError: 'missing'" in record["error.stack_trace"]


def test_text_format_and_a_second_setup_replaces_the_first(restore_logging: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("debug", "json", stream=first)
    setup_logging("warning", "text", stream=second)
    logging.getLogger("receiver.x").info("hidden")
    logging.getLogger("receiver.x").error("shown")
    assert first.getvalue() == ""
    (line,) = second.getvalue().splitlines()
    assert line.endswith(" ERROR receiver.x: shown")


def test_both_processes_of_a_running_receiver_log_json(tmp_path: Path) -> None:
    receiver = Receiver(tmp_path, None, extra=["--log-format", "json", "--log-level", "debug"]).start()
    process = receiver.process
    assert process is not None
    try:
        wait_for(lambda: len(group_members(process.pid)) == 2, 30, "the ship process")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"<134>Nov 25 18:21:08 haproxy[7]: plain message", ("127.0.0.1", receiver.udp_port))
        wait_for(lambda: receiver.stdout_path.read_bytes().count(b"\n") == 1, 10, "the document")
    finally:
        assert receiver.stop(signal.SIGTERM) == 0
    records = [json.loads(line) for line in receiver.stderr().splitlines()]
    assert records and all({"@timestamp", "log.level", "log.logger", "message", "process.pid"} <= r.keys()
                           for r in records)
    pids = {r["process.pid"] for r in records}
    assert process.pid in pids and len(pids) == 2  # the ship process logged too
    assert any(r["log.level"] == "debug" for r in records)
    assert any(r["message"].startswith("listening on udp://") for r in records)


@pytest.mark.parametrize("command", [["run"], ["setup"], ["parse", "x"], ["spool", "stats"]])
def test_every_command_that_logs_refuses_an_unknown_format(command: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "receiver", *command, "--log-format", "xml"],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 2
    assert "service.log_format = 'xml' is not allowed; allowed: text, json" in result.stderr


def test_readme_log_example_has_the_fields_a_line_has(restore_logging: None) -> None:
    out = io.StringIO()
    setup_logging("info", "json", stream=out)
    logging.getLogger("receiver.service").info("listening on udp://127.0.0.1:5140")
    produced = json.loads(out.getvalue())
    readme = (REPO / "README.md").read_text()
    (shown,) = [json.loads(line) for line in readme.splitlines()
                if line.strip().startswith('{"@timestamp"') and '"log.level"' in line]
    assert list(shown) == list(produced)
    assert shown["ecs.version"] == produced["ecs.version"]
