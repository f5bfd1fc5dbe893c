"""The Dockerfile (no Docker engine runs here) parses, runs as a non-root user, starts a command
that exists (the console script in pyproject.toml with options the CLI really has), and its
build stage's own commands build the wheels from exactly the files its COPY lines name."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer.main

from receiver.cli import app
from tests.deploy.installed import assert_exports_every_asset, fresh_venv

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


def test_every_port_the_readme_publishes_is_exposed() -> None:
    """`docker run -p` in the README's aggregator guide publishes each of these (issue 26)."""
    readme = (REPO / "README.md").read_text()
    published = set(re.findall(r"-p \d+:(\d+(?:/(?:udp|tcp))?)", readme))
    exposed = {port for r in final_stage() if r["instruction"] == "EXPOSE" for port in r["value"].split()}
    assert published and {p if "/" in p else f"{p}/tcp" for p in published} <= exposed


# --- the build, without a Docker engine ---------------------------------------------------------
# Docker's own semantics, kept to what this Dockerfile uses: COPY of files into a directory
# (`./`) and of a directory's contents into a directory, symbolic links copied as links, the
# context filtered by .dockerignore (patterns with `*`, `?` and `**`, no `!` exceptions).


def stages() -> list[list[dict[str, Any]]]:
    rows = instructions()
    starts = [i for i, row in enumerate(rows) if row["instruction"] == "FROM"]
    return [rows[a:b] for a, b in zip(starts, [*starts[1:], len(rows)], strict=True)]


def build_stage() -> list[dict[str, Any]]:
    (stage,) = [s for s in stages() if s[0]["value"].lower().endswith(" as build")]
    return stage


def ignore_patterns() -> list[re.Pattern[str]]:
    patterns = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("!"), "exceptions are not modelled by this test"
        regex, rest = "", line.lstrip("/")
        while rest:
            for token, meaning in (("**/", "(?:.*/)?"), ("**", ".*"), ("*", "[^/]*"), ("?", "[^/]")):
                if rest.startswith(token):
                    regex, rest = regex + meaning, rest[len(token):]
                    break
            else:
                regex, rest = regex + re.escape(rest[0]), rest[1:]
        patterns.append(re.compile(regex + r"\Z"))
    return patterns


def ignored(relative: str, patterns: list[re.Pattern[str]]) -> bool:
    """A path is left out of the context when it, or a folder above it, matches a pattern."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    return any(pattern.match(prefix) for pattern in patterns for prefix in prefixes)


def copy_into(source: Path, destination: Path, patterns: list[re.Pattern[str]]) -> int:
    """COPY of one context path (file, link or folder); returns how many entries it copied."""
    relative = source.relative_to(REPO).as_posix()
    if ignored(relative, patterns):
        return 0
    if source.is_symlink():
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.symlink_to(os.readlink(source))
        return 1
    if source.is_file():
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)
        return 1
    destination.mkdir(parents=True, exist_ok=True)
    return sum(copy_into(child, destination / child.name, patterns) for child in source.iterdir())


def lay_out_build_stage(root: Path) -> tuple[str, Path]:
    """Exactly what the build stage's COPY lines put in its WORKDIR: (WORKDIR, its copy)."""
    (workdir,) = [str(r["value"]) for r in build_stage() if r["instruction"] == "WORKDIR"]
    target = root / workdir.strip("/")
    patterns = ignore_patterns()
    for row in build_stage():
        if row["instruction"] != "COPY":
            continue
        *sources, destination = row["value"].split()
        assert len(sources) == 1 or destination.endswith("/"), row["value"]
        for source in sources:
            into = target / destination
            if destination.endswith("/"):
                into = into / Path(source).name
            copied = copy_into(REPO / source, into, patterns)
            assert copied, f"COPY {source}: nothing in the build context (missing or .dockerignore)"
    return workdir, target


def shell_commands(stage: list[dict[str, Any]]) -> list[str]:
    return [r["value"] for r in stage if r["instruction"] == "RUN" and re.match(r"pip\b", r["value"])]


def as_here(command: str, paths: dict[str, Path], pip: str) -> str:
    """A RUN line with the container's paths mapped to temporary folders and `pip` to `pip`.
    `--no-cache-dir` is dropped so pip's cache serves the downloads: it changes nothing built."""
    command = command.replace("--no-cache-dir ", "")
    for container, here in paths.items():
        command = re.sub(rf"(?<![\w/]){re.escape(container)}(?![\w-])", str(here), command)
    return re.sub(r"(^|&&\s*)pip ", lambda m: m[1] + pip + " ", command)


def run_shell(command: str, cwd: Path) -> None:
    done = subprocess.run(["/bin/sh", "-c", command], cwd=cwd, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"


def test_the_build_stage_builds_from_exactly_what_it_copies(tmp_path: Path) -> None:
    """Every file the wheel build needs must be named by a COPY (a missing one fails here, as
    `docker build` failed when pyproject.toml listed a data file the build stage never copied);
    then the runtime stage's install, from those wheels alone, gives a working program with the
    geoip and kafka extras."""
    workdir, src = lay_out_build_stage(tmp_path / "build")
    (copy_wheels,) = [r["value"] for r in final_stage() if r["instruction"] == "COPY"]
    wheels_in_build, wheels_in_final = copy_wheels.removeprefix("--from=build ").split()
    wheels = tmp_path / "wheels"
    pip = shlex.quote(sys.executable) + " -m pip"
    (build,) = shell_commands(build_stage())
    run_shell(as_here(build, {workdir: src, wheels_in_build: wheels}, pip), src)
    assert any(wheels.glob("haproxy_receiver-*.whl")) and any(wheels.glob("maxminddb-*.whl"))
    assert any(wheels.glob("confluent_kafka-*.whl"))

    # The runtime stage's pip line, into a fresh environment standing for the image.
    python = fresh_venv(tmp_path / "image")
    (install,) = shell_commands(final_stage())
    assert "haproxy-receiver[geoip,kafka]" in install
    run_shell(as_here(install, {wheels_in_final: wheels}, f"{pip} --python {python}"), tmp_path)
    assert not wheels.exists()  # the line's own `rm -rf` ran too
    entrypoint = python.parent / exec_form("ENTRYPOINT")[0]
    version = subprocess.run([str(entrypoint), "version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("haproxy-receiver ")
    assert_exports_every_asset(entrypoint, tmp_path)
    subprocess.run([str(python), "-c", "import maxminddb, confluent_kafka"], check=True)
