"""What we publish: the sdist and wheel `python -m build` makes pass `twine check` and
`check-wheel-contents`, carry the license and every deployment file, and the README's quick start
works from the wheel alone: installed into a fresh environment outside the checkout,
`haproxy-receiver run` on its embedded default turns a syslog line sent over UDP into a JSON
document on stdout."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from receiver import __version__
from tests.deploy.installed import ASSETS, assert_exports_every_asset, fresh_venv, pip_into
from tests.support import REPO, flatten, free_port, http_get_text, wait_for

LINE = (b'<134>Nov 25 18:21:18 haproxy[11604]: {"ci":"10.0.0.1","cp":43796,'
        b'"t":"25/Nov/2026:18:21:18.712","ST":200,"r":"GET /quick?start=1 HTTP/1.1"}')


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    pytest.importorskip("build", reason="build is in the dev dependency group (pip install --group dev)")
    out = tmp_path_factory.mktemp("dist")
    # sdist first, then the wheel from the unpacked sdist: both must be complete on their own.
    done = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Dist(sdist, wheel)


def deployment_files() -> dict[str, bytes]:
    """Path under receiver/assets/ -> the content of the repository's one copy of it."""
    files = {}
    for folder, _, names in os.walk(ASSETS, followlinks=True):  # into dashboards/, haproxy/, ...
        for name in names:
            path = Path(folder, name)
            if "__pycache__" not in path.parts and path.suffix != ".py":
                files[path.relative_to(ASSETS).as_posix()] = path.read_bytes()
    assert {"systemd/haproxy-receiver.service", "haproxy/json-udp.cfg",
            "dashboards/kibana/haproxy-receiver.ndjson", "dashboards/grafana/haproxy-receiver.json",
            "dashboards/prometheus/alerts.yml"} <= set(files)
    return files


def test_twine_and_check_wheel_contents_accept_the_distributions(dist: Dist) -> None:
    for tool in (["twine", "check", "--strict", str(dist.sdist), str(dist.wheel)],
                 ["check_wheel_contents", str(dist.wheel)]):
        done = subprocess.run([sys.executable, "-m", *tool], capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, f"{tool[0]}: {done.stdout}{done.stderr}"


def test_wheel_carries_license_and_every_deployment_file_and_no_data_files(dist: Dist) -> None:
    expected = deployment_files()
    with zipfile.ZipFile(dist.wheel) as wheel:
        names = set(wheel.namelist())
        for relative, content in expected.items():
            assert wheel.read(f"receiver/assets/{relative}") == content, relative
        assert "receiver/ship/index-template.json" in names
        info = f"haproxy_receiver-{__version__}.dist-info"
        assert wheel.read(f"{info}/licenses/LICENSE") == (REPO / "LICENSE").read_bytes()
        metadata = wheel.read(f"{info}/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata and "License-File: LICENSE" in metadata
    assert not [name for name in names if ".data/" in name], "data-files land outside the package"


def test_sdist_holds_the_deployment_files_as_files_not_links(dist: Dist) -> None:
    root = f"haproxy_receiver-{__version__}"
    with tarfile.open(dist.sdist) as sdist:
        members = {member.name: member for member in sdist.getmembers()}
        for relative, content in deployment_files().items():
            member = members[f"{root}/receiver/assets/{relative}"]
            assert member.isfile(), relative
            extracted = sdist.extractfile(member)
            assert extracted is not None and extracted.read() == content
        assert members[f"{root}/LICENSE"].isfile()


@pytest.fixture(scope="module")
def installed(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel with its dependencies (from pip's cache when it has them) in a fresh virtual
    environment outside the checkout; returns its `haproxy-receiver`."""
    python = fresh_venv(tmp_path_factory.mktemp("quickstart") / "venv")
    pip_into(python, str(dist.wheel))
    return python.parent / "haproxy-receiver"


def outside_the_checkout() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


@pytest.fixture
def running(installed: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    udp_port, metrics_port = free_port(socket.SOCK_DGRAM), free_port()
    stdout = tmp_path / "stdout.jsonl"
    with stdout.open("wb") as out, (tmp_path / "stderr.log").open("wb") as err:
        process = subprocess.Popen(
            [str(installed), "run", "--spool-dir", str(tmp_path / "spool"),
             "--udp", f"127.0.0.1:{udp_port}", "--tcp", "", "--metrics", f"127.0.0.1:{metrics_port}"],
            stdout=out, stderr=err, cwd=tmp_path, env=outside_the_checkout())
    try:
        def ready() -> str:
            assert process.poll() is None, (tmp_path / "stderr.log").read_text()
            return http_get_text(f"http://127.0.0.1:{metrics_port}/healthz")
        wait_for(ready, 60, "the installed receiver to serve /healthz")
        yield process, udp_port, stdout
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(30)


def test_quick_start_from_the_wheel_prints_the_document(
        installed: Path, running: tuple[subprocess.Popen[bytes], int, Path]) -> None:
    process, udp_port, stdout = running
    where = subprocess.run([str(installed.parent / "python"), "-c",
                            "import receiver; print(receiver.__file__)"], cwd=installed.parent,
                           capture_output=True, text=True, check=True, env=outside_the_checkout())
    assert Path(where.stdout.strip()).is_relative_to(installed.parents[1]), where.stdout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(LINE, ("127.0.0.1", udp_port))
    text = wait_for(lambda: stdout.read_text(), 30, "a document on the receiver's stdout")
    document = flatten(json.loads(text.splitlines()[0]))  # written nested, as shipped
    assert document["source.address"] == "10.0.0.1"
    assert document["http.response.status_code"] == 200
    assert document["url.path"] == "/quick" and document["url.query"] == "start=1"
    assert document["haproxy.log_format"] == "json"
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0


def test_the_installed_wheel_exports_every_deployment_file(installed: Path, tmp_path: Path) -> None:
    assert_exports_every_asset(installed, tmp_path)
