"""`haproxy-receiver export KIND`: the deployment files the package carries, to stdout or a file;
a wrong kind or configuration name is refused (status 2) with the allowed values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from receiver.assets import KINDS, haproxy_configs
from tests.support import REPO


def export(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "receiver", "export", *args], cwd=cwd,
                          capture_output=True, timeout=60, check=False)


def test_unknown_kind_is_refused_naming_every_kind() -> None:
    done = export("filebeat-config")
    assert done.returncode == 2 and done.stdout == b""
    assert "unknown kind 'filebeat-config'" in done.stderr.decode()
    assert all(kind in done.stderr.decode() for kind in KINDS)


def test_haproxy_config_without_a_known_name_lists_the_configurations() -> None:
    for args, status in (((), 0), (("--name", "json-udp.cfg"), 2)):
        done = export("haproxy-config", *args)
        assert done.returncode == status
        listing = (done.stdout if status == 0 else done.stderr).decode()
        assert all(f"  {name} " in listing for name in haproxy_configs()), listing
        assert "README" in listing
    assert set(haproxy_configs()) == {path.stem for path in (REPO / "haproxy").glob("*.cfg")}
    summary = "HAProxy 2.6+ → haproxy-receiver over UDP, with the JSON log-format"  # its first line
    assert haproxy_configs()["json-udp"] == summary


def test_name_is_refused_for_kinds_that_have_one_file() -> None:
    done = export("systemd-unit", "--name", "x")
    assert done.returncode == 2 and b"only haproxy-config" in done.stderr


def test_output_writes_the_file(tmp_path: Path) -> None:
    target = tmp_path / "haproxy-receiver.service"
    done = export("systemd-unit", "--output", str(target), cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == b""
    assert target.read_bytes() == (REPO / "deploy" / "systemd" / "haproxy-receiver.service").read_bytes()
    unwritable = export("alert-rules", "--output", str(tmp_path / "absent" / "alerts.yml"))
    assert unwritable.returncode == 1 and b"cannot write" in unwritable.stderr


def test_index_template_follows_the_configuration(tmp_path: Path) -> None:
    default = json.loads(export("index-template").stdout)
    assert default["index_patterns"] == ["haproxy-*"] and "data_stream" not in default
    assert default["template"]["mappings"]["properties"]
    config = tmp_path / "config.toml"
    config.write_text('[elasticsearch]\ndata_stream = "logs-haproxy-web"\n')
    streamed = json.loads(export("index-template", "--config", str(config)).stdout)
    assert streamed["index_patterns"] == ["logs-haproxy-web"] and streamed["data_stream"] == {}


def test_the_exported_configuration_is_complete_and_check_config_accepts_it(tmp_path: Path) -> None:
    import dataclasses
    import tomllib

    from receiver.config import Settings, load_settings, sections

    config = tmp_path / "config.toml"
    done = export("config", "--output", str(config))
    assert done.returncode == 0, done.stderr
    data = tomllib.loads(config.read_text())
    for section, cls in sections().items():  # every setting, each with its comment
        assert set(data[section]) == {f.name for f in dataclasses.fields(cls)}, section
    assert load_settings(config, env={}) == Settings()
    text = config.read_text()
    assert "# Private key (PEM) of `tls_cert`.\ntls_key = \"\"" in text
    assert 'max_bytes = "4GiB"' in text
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    checked = [subprocess.run(
        [sys.executable, "-m", "receiver", "check-config", "--values-only", "-c", str(file)],
        cwd=REPO, capture_output=True, timeout=60, check=False) for file in (config, empty)]
    assert checked[0].returncode == 0, checked[0].stderr
    assert json.loads(checked[0].stdout) == json.loads(checked[1].stdout)
