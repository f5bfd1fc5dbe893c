"""`haproxy-receiver test output`, run as an operator would (the real command, a subprocess):
against osmem-server (no security), a server with security refusing a wrong password or
holding a read-only user, and an unreachable host."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from receiver.config import CONFIG_ENV
from tests.fakes.es_server import FakeElasticsearch
from tests.support import REPO, free_port

WRITER = ["create_doc", "auto_configure"]
USERS = {
    "admin": ("admin-pw", [*WRITER, "manage_index_templates", "manage_ilm"]),
    "writer": ("writer-pw", WRITER),
    "reader": ("reader-pw", ["read", "view_index_metadata"]),
}


def command(*args: str, **env: str) -> tuple[int, str]:
    """Run a haproxy-receiver command with `elasticsearch.*` settings from `env`: its status
    and what it printed (stdout, then its log on stderr after a `--- log` line)."""
    # A bare environment (no proxies, no settings), with the tests' configuration file: never
    # the machine's /etc.
    environment = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", CONFIG_ENV: os.environ[CONFIG_ENV]}
    # The choices these tests were written for (tests/ship/test_destination.py covers `auto`
    # and the template at start): daily indices, or the data stream a test names.
    env = {"destination": "data_stream" if "data_stream" in env else "index",
           "setup_on_start": "false", **env}
    environment.update({f"HAPROXY_RECEIVER_ELASTICSEARCH__{k.upper()}": v for k, v in env.items()})
    done = subprocess.run([sys.executable, "-m", "receiver", *args], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=60, check=False)
    return done.returncode, done.stdout + "--- log\n" + done.stderr


@pytest.fixture
def secured() -> Iterator[FakeElasticsearch]:
    with FakeElasticsearch.start("es8", users=USERS) as server:
        yield server


def test_osmem_server_has_no_security_and_needs_the_template(es_url: str) -> None:
    status, text = command("test", "output", hosts=es_url)
    assert status == 1, text
    assert "ok   OpenSearch" in text
    assert "--   no security plugin on this server" in text
    assert "FAIL index template haproxy-receiver missing: run `haproxy-receiver setup`" in text
    assert command("setup", hosts=es_url)[0] == 0
    status, text = command("test", "output", hosts=es_url)
    assert status == 0, text
    assert "ok   index template haproxy-receiver installed and up to date" in text
    assert text.split("--- log\n")[0].rstrip().endswith("output ok: 1 host ready for `run`")


def test_a_wrong_password_is_named_with_the_settings_to_fix(secured: FakeElasticsearch) -> None:
    status, text = command("test", "output", hosts=secured.url, username="writer",
                           password="wrong-pw-42")
    assert status == 1
    assert "refused our credentials" in text and "elasticsearch.username/password" in text
    assert "wrong-pw-42" not in text


def test_a_read_only_user_lacks_what_run_needs(secured: FakeElasticsearch) -> None:
    assert command("setup", hosts=secured.url, username="admin", password="admin-pw")[0] == 0
    status, text = command("test", "output", hosts=secured.url, username="reader",
                           password="reader-pw")
    assert status == 1, text
    assert "ok   Elasticsearch 8.15.3" in text
    assert "ok   authenticated as reader" in text
    assert ("FAIL reader lacks what `run` needs: create_doc on haproxy-*, auto_configure on "
            "haproxy-*") in text
    status, text = command("test", "output", hosts=secured.url, username="writer",
                           password="writer-pw")
    assert status == 0, text
    assert "ok   writer may create documents in haproxy-*" in text


def test_setup_on_start_needs_the_template_privileges(secured: FakeElasticsearch) -> None:
    status, text = command("test", "output", hosts=secured.url, username="writer",
                           password="writer-pw", data_stream="logs-haproxy-default",
                           setup_on_start="true")
    assert status == 1, text
    assert "writer lacks what `run` needs: manage_index_templates, manage_ilm" in text
    assert "`run` installs it at start (setup_on_start)" in text
    status, text = command("test", "output", hosts=secured.url, username="admin",
                           password="admin-pw", data_stream="logs-haproxy-default",
                           setup_on_start="true")
    assert status == 0, text
    assert "admin may create documents in logs-haproxy-default and install the template" in text


def test_an_unreachable_host_fails_and_the_others_are_still_checked(es_url: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    status, text = command("test", "output", hosts=f"{dead},{es_url}")
    assert status == 1
    lines = text.splitlines()
    at = lines.index(dead)
    assert lines[at + 1].startswith(f"  FAIL cannot reach {dead}: ")
    assert "check elasticsearch.hosts, the network, the proxy" in lines[at + 1]
    assert "ok   OpenSearch" in text  # the second host was checked too


def test_the_readme_examples_are_what_the_code_produces(secured: FakeElasticsearch) -> None:
    """README, "TLS, credentials, proxies, Elastic Cloud": the `test output` transcript and the
    cloud_id example."""
    import re
    import tomllib

    from receiver.config import cloud_id_url

    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### TLS, credentials, proxies, Elastic Cloud"):]
    toml = re.search(r"```toml\n(.*?)```", section, re.S)
    assert toml is not None
    cloud = tomllib.loads(toml.group(1))["elasticsearch"]["cloud_id"]
    stated = re.search(r"into `(https://[^`]+)`, which then stands in `hosts`", section)
    assert stated is not None and cloud_id_url(cloud) == stated.group(1)

    transcript = re.search(r"```\n\$ haproxy-receiver test output -e (\S+)\n(.*?)```", section, re.S)
    assert transcript is not None
    shown_url, shown = transcript.groups()
    assert command("setup", hosts=secured.url, username="admin", password="admin-pw")[0] == 0
    status, text = command("test", "output", hosts=secured.url, username="reader",
                           password="reader-pw")
    assert status == 1
    assert text.split("--- log\n")[0] == shown.replace(shown_url, secured.url)
