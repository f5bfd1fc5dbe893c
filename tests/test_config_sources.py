"""Where settings come from besides flags: the configuration file's path (flag, environment
variable, default path) and secrets read from files (`<secret>_file`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from receiver.config import (
    CONFIG_ENV,
    SECRET_SETTINGS,
    ConfigError,
    config_file,
    load_settings,
    redacted,
    secret_file_keys,
)
from tests.support import receiver_command

# --- the configuration file ------------------------------------------------------------------

def test_flag_wins_over_the_environment_variable_and_the_default(tmp_path: Path) -> None:
    given, named, default = (tmp_path / n for n in ("given.toml", "named.toml", "default.toml"))
    for path in (named, default):
        path.write_text("")
    env = {CONFIG_ENV: str(named)}
    assert config_file(given, env, default=default) == given
    assert config_file(None, env, default=default) == named
    assert config_file(None, {}, default=default) == default
    assert config_file(None, {}, default=tmp_path / "absent.toml") is None


def test_environment_variable_naming_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config_file(None, {CONFIG_ENV: str(tmp_path / "nope.toml")})
    assert str(caught.value) == f"{CONFIG_ENV}={tmp_path / 'nope.toml'}: no such configuration file"


def test_commands_read_the_file_the_environment_variable_names(tmp_path: Path) -> None:
    file = tmp_path / "elsewhere.toml"
    file.write_text('[spool]\ndir = "/srv/spool-from-env-file"\n')
    result = receiver_command("check-config", env={CONFIG_ENV: str(file)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["spool"]["dir"] == "/srv/spool-from-env-file"
    missing = receiver_command("check-config", env={CONFIG_ENV: str(tmp_path / "gone.toml")})
    assert missing.returncode == 2
    assert f"{CONFIG_ENV}={tmp_path / 'gone.toml'}: no such configuration file" in missing.stderr


# --- secrets from files ------------------------------------------------------------------------

def test_every_secret_has_a_file_form() -> None:
    assert sorted(secret_file_keys().values()) == sorted(SECRET_SETTINGS)
    assert "elasticsearch.password_file" in secret_file_keys()


def test_secret_file_in_toml_and_environment_strips_one_trailing_newline(tmp_path: Path) -> None:
    password, key = tmp_path / "password", tmp_path / "api-key"
    password.write_text("s3cret with spaces \n")  # `echo secret > file` leaves the newline
    key.write_text("id:key\r\n")
    file = tmp_path / "c.toml"
    file.write_text(f'[elasticsearch]\nusername = "shipper"\npassword_file = "{password}"\n')
    settings = load_settings(file, env={"HAPROXY_RECEIVER_ELASTICSEARCH__API_KEY_FILE": str(key)})
    assert settings.elasticsearch.password == "s3cret with spaces "
    assert settings.elasticsearch.api_key == "id:key"
    shown = json.dumps(redacted(settings))
    assert "s3cret" not in shown and "id:key" not in shown


@pytest.mark.parametrize(("name", "why"), [("missing", "No such file or directory"),
                                            ("directory", "Is a directory")])
def test_unreadable_secret_file_is_refused_naming_the_setting(tmp_path: Path, name: str, why: str) -> None:
    (tmp_path / "directory").mkdir()
    env = {"HAPROXY_RECEIVER_ELASTICSEARCH__BEARER_TOKEN_FILE": str(tmp_path / name)}
    with pytest.raises(ConfigError) as caught:
        load_settings(env=env)
    assert str(caught.value) == f"elasticsearch.bearer_token_file: cannot read {tmp_path / name}: {why}"


def test_a_secret_given_both_ways_is_refused(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file")
    env = {"HAPROXY_RECEIVER_ELASTICSEARCH__BEARER_TOKEN": "from-env",
           "HAPROXY_RECEIVER_ELASTICSEARCH__BEARER_TOKEN_FILE": str(tmp_path / "token")}
    with pytest.raises(ConfigError) as caught:
        load_settings(env=env)
    assert str(caught.value) == ("elasticsearch.bearer_token and elasticsearch.bearer_token_file "
                                 "are both set; keep one")


def test_file_form_is_offered_only_for_secrets() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"HAPROXY_RECEIVER_ELASTICSEARCH__USERNAME_FILE": "/etc/hostname"})
    message = str(caught.value)
    assert message.startswith("unknown setting elasticsearch.username_file; allowed in [elasticsearch]:")
    assert "password_file" in message


def test_cli_reads_the_secret_file_and_never_prints_it(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("hunter2\n")
    result = receiver_command("check-config", env={
        "HAPROXY_RECEIVER_ELASTICSEARCH__USERNAME": "u",
        "HAPROXY_RECEIVER_ELASTICSEARCH__PASSWORD_FILE": str(secret)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["elasticsearch"]["password"] == "***"
    assert "hunter2" not in result.stdout + result.stderr
