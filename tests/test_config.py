"""Settings: layers (file < environment < flags), validation messages, README agreement."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from receiver.config import ConfigError, load_settings, redacted, reference_markdown
from tests.support import REPO


def test_defaults_listen_on_localhost_only() -> None:
    settings = load_settings(env={})
    assert settings.listen.udp == ["127.0.0.1:5140"]
    assert settings.listen.tcp == ["127.0.0.1:5140"]
    assert settings.metrics.listen.startswith("127.0.0.1:")


def test_file_then_environment_then_overrides(tmp_path: Path) -> None:
    file = tmp_path / "receiver.toml"
    file.write_text('[spool]\nmax_bytes = "1GiB"\nfsync = "never"\n[elasticsearch]\nbatch_events = 10\n')
    env = {"HAPROXY_RECEIVER_SPOOL__FSYNC": "always",
           "HAPROXY_RECEIVER_LISTEN__UDP": "[::1]:5514,127.0.0.1:6000"}
    settings = load_settings(file, env=env, overrides={"elasticsearch.batch_events": 20})
    assert settings.spool.max_bytes == 1024**3
    assert settings.spool.fsync == "always"
    assert settings.listen.udp == ["[::1]:5514", "127.0.0.1:6000"]
    assert settings.elasticsearch.batch_events == 20


@pytest.mark.parametrize(("env", "message"), [
    ({"HAPROXY_RECEIVER_SPOOL__FSYNC": "sometimes"},
     "spool.fsync = 'sometimes' is not allowed; allowed: always, interval, never"),
    ({"HAPROXY_RECEIVER_SPOOL__MAX_BYTES": "lots"}, "spool.max_bytes = 'lots' is not a size"),
    ({"HAPROXY_RECEIVER_LISTEN__UDP": "localhost"}, "listen.udp[0]: 'localhost' is not HOST:PORT"),
    ({"HAPROXY_RECEIVER_LISTEN__TCP": "127.0.0.1:99999"}, "port must be a number from 0 to 65535"),
    ({"HAPROXY_RECEIVER_SPOOL__COLOUR": "red"}, "unknown setting spool.colour; allowed in [spool]: dir,"),
    ({"HAPROXY_RECEIVER_ELASTICSEARCH__HOSTS": "es:9200"},
     "elasticsearch.hosts[0] = 'es:9200' is not a URL"),
    ({"HAPROXY_RECEIVER_PARSE__TIMEZONE": "Mars/Olympus"},
     "parse.timezone = 'Mars/Olympus' is not a time zone"),
    ({"HAPROXY_RECEIVER_ELASTICSEARCH__VERIFY_CERTS": "maybe"},
     "is not a boolean; allowed: true, false"),
    ({"HAPROXY_RECEIVER_LISTEN__TLS_HANDSHAKE_TIMEOUT": "0"},
     "listen.tls_handshake_timeout must be a positive number of seconds"),
    ({"HAPROXY_RECEIVER_LISTEN__LINE_TIMEOUT": "-1"}, "listen.line_timeout must not be negative"),
    ({"HAPROXY_RECEIVER_SERVICE__WORKER_STALL_TIMEOUT": "5"},
     "service.worker_stall_timeout = 5 is too short; allowed: 25 seconds or more"),
])
def test_wrong_settings_name_the_setting_and_what_is_allowed(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env=env)
    assert message in str(caught.value)


def test_compression_takes_auto_on_off_and_the_old_booleans(tmp_path: Path) -> None:
    assert load_settings(env={}).elasticsearch.compression == "auto"
    file = tmp_path / "receiver.toml"
    file.write_text("[elasticsearch]\ncompression = false\n")
    assert load_settings(file, env={}).elasticsearch.compression == "off"
    env = {"HAPROXY_RECEIVER_ELASTICSEARCH__COMPRESSION": "true"}
    assert load_settings(env=env).elasticsearch.compression == "on"
    with pytest.raises(ConfigError, match="compression = 'gzip' is not allowed; allowed: auto, on, off"):
        load_settings(env={"HAPROXY_RECEIVER_ELASTICSEARCH__COMPRESSION": "gzip"})


def test_unknown_section_in_file(tmp_path: Path) -> None:
    file = tmp_path / "r.toml"
    file.write_text("[spol]\ndir = '/x'\n")
    with pytest.raises(ConfigError, match=r"unknown section \[spol\].*allowed: listen, parse, spool"):
        load_settings(file, env={})


def test_secrets_are_redacted() -> None:
    settings = load_settings(env={
        "HAPROXY_RECEIVER_ELASTICSEARCH__USERNAME": "elastic",
        "HAPROXY_RECEIVER_ELASTICSEARCH__PASSWORD": "hunter2",
        "HAPROXY_RECEIVER_ELASTICSEARCH__HOSTS": "https://u:pw@es.example:9200",
    })
    text = str(redacted(settings))
    assert "hunter2" not in text and "pw@" not in text
    assert "***" in text


def test_cli_refuses_a_wrong_setting_with_status_2_before_starting(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "receiver", "run", "--spool-dir", str(tmp_path / "s"),
         "--udp", "nonsense"],
        capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 2
    assert "listen.udp[0]" in result.stderr
    assert not (tmp_path / "s").exists()


def test_readme_configuration_reference_is_generated_from_the_settings() -> None:
    readme = (REPO / "README.md").read_text()
    start = readme.index("<!-- config-reference:start -->") + len("<!-- config-reference:start -->\n")
    end = readme.index("<!-- config-reference:end -->")
    assert readme[start:end] == reference_markdown(), (
        "README's configuration reference is stale: regenerate it with "
        "`haproxy-receiver config-reference`")
