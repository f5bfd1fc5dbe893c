"""The Dockerfile (which cannot be built here) parses, runs as a non-root user, and starts a
command that exists: the console script in pyproject.toml with options the CLI really has."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer.main

from receiver.cli import app

dockerfile_parse = pytest.importorskip("dockerfile_parse", reason="dockerfile-parse (test extra)")

REPO = Path(__file__).resolve().parents[2]


def instructions() -> list[dict[str, Any]]:
    parser = dockerfile_parse.DockerfileParser(path=str(REPO / "Dockerfile"))
    parsed: list[dict[str, Any]] = parser.structure
    return parsed


def final_stage() -> list[dict[str, Any]]:
    rows = instructions()
    last_from = max(i for i, row in enumerate(rows) if row["instruction"] == "FROM")
    return rows[last_from:]


def exec_form(instruction: str) -> list[str]:
    (row,) = [r for r in final_stage() if r["instruction"] == instruction]
    value: list[str] = json.loads(row["value"])  # exec form: a JSON array, no shell between
    return value


def test_base_image_is_slim_python_311() -> None:
    bases = [r["value"].split()[0] for r in instructions() if r["instruction"] == "FROM"]
    assert bases and all(base == "python:3.11-slim" for base in bases)


def test_runs_as_a_numeric_non_root_user() -> None:
    users = [r["value"] for r in final_stage() if r["instruction"] == "USER"]
    assert users, "no USER in the final stage: the container would run as root"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) != 0, users[-1]  # numeric: runAsNonRoot can check it
    assert not group or (group.isdigit() and int(group) != 0)


def test_entrypoint_is_the_console_script_of_the_package() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    entrypoint = exec_form("ENTRYPOINT")
    assert entrypoint[0] in scripts


def test_default_command_binds_all_interfaces_with_options_the_cli_has() -> None:
    command = exec_form("CMD")
    assert command[0] == "run"
    run = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    known = {opt for param in run.params for opt in param.opts}
    flags = [arg for arg in command[1:] if arg.startswith("--")]
    assert flags and set(flags) <= known, set(flags) - known
    values = dict(zip(command[1::2], command[2::2], strict=True))
    for flag in ("--udp", "--tcp", "--metrics"):
        assert values[flag].startswith("0.0.0.0:"), flag


def test_spool_is_a_volume_and_healthcheck_probes_the_metrics_port() -> None:
    command = exec_form("CMD")
    values = dict(zip(command[1::2], command[2::2], strict=True))
    volumes = [v for r in final_stage() if r["instruction"] == "VOLUME" for v in json.loads(r["value"])]
    assert any(values["--spool-dir"].startswith(volume) for volume in volumes)
    (health,) = [r["value"] for r in final_stage() if r["instruction"] == "HEALTHCHECK"]
    port = values["--metrics"].rsplit(":", 1)[1]
    assert f"127.0.0.1:{port}/healthz" in health


def test_files_the_build_copies_are_not_ignored() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    copied = [source for r in instructions()
              if r["instruction"] == "COPY" and "--from" not in r["value"]
              for source in r["value"].split()[:-1]]
    assert "receiver" in copied
    for source in copied:
        top = source.split("/")[0]
        assert top not in ignored, f"COPY {source} but .dockerignore drops {top}"
        assert (REPO / top).exists() or top == "README.md", source  # README is the lead's
