"""Every setting naming a file, a directory, a port or a certificate, broken in turn (issue 26,
item 3): `run` exits 2 with one line naming the setting and the path, no traceback, before
anything starts (no listener, no metrics, no worker); `check-config` says the same."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from receiver.config import load_settings
from receiver.preflight import ADDRESS_SETTINGS, FILE_CHECKS, check_files, probe_addresses
from tests.support import REPO, free_port, tls_files


@dataclass
class Broken:
    setting: str
    toml: Callable[[Path], str]  # the configuration, given a directory with good TLS files
    expected: str  # in the error line, after the setting's name
    hold: str = ""  # "udp", "tcp": bind this address in the test for the duration
    port_taken: bool = False


def _cert(d: Path) -> str:
    return str(d / "cert.pem")


def _key(d: Path) -> str:
    return str(d / "key.pem")


def _tls(d: Path, cert: str = "", key: str = "", ca: str = "") -> str:
    return (f'[listen]\ntls = ["127.0.0.1:{free_port()}"]\ntls_cert = "{cert or _cert(d)}"\n'
            f'tls_key = "{key or _key(d)}"\n' + (f'tls_client_ca = "{ca}"\n' if ca else ""))


def _es(d: Path, **values: str) -> str:
    return '[elasticsearch]\nhosts = ["https://127.0.0.1:9"]\n' + "".join(
        f'{k} = "{v}"\n' for k, v in values.items())


BROKEN = [
    Broken("listen.tls_cert", lambda d: _tls(d, cert=str(d / "gone.pem")),
           "gone.pem': cannot read: No such file or directory"),
    Broken("listen.tls_key", lambda d: _tls(d, key=str(d / "other-key.pem")),
           "other-key.pem' is not the key of listen.tls_cert"),
    Broken("listen.tls_client_ca", lambda d: _tls(d, ca=str(d / "text.txt")),
           "text.txt': no PEM certificate in it"),
    Broken("listen.unix", lambda d: f'[listen]\nunix = ["{d}/none/log.sock"]\n',
           "none/log.sock': no such directory"),
    Broken("listen.unix_stream", lambda d: f'[listen]\nunix_stream = ["{d}/none/s.sock"]\n',
           "none/s.sock': no such directory"),
    Broken("parse.geoip_database", lambda d: f'[parse]\ngeoip_database = "{d}/text.txt"\n',
           "cannot open MaxMind database"),
    Broken("parse.asn_database", lambda d: f'[parse]\nasn_database = "{d}/gone.mmdb"\n',
           "gone.mmdb': cannot read: No such file or directory"),
    Broken("spool.dir", lambda d: f'[spool]\ndir = "{d}/text.txt"\n',
           "text.txt': exists and is not a directory"),
    Broken("elasticsearch.ca_file", lambda d: _es(d, ca_file=f"{d}/gone.pem"),
           "gone.pem': cannot read"),
    Broken("elasticsearch.ca_dir", lambda d: _es(d, ca_dir=f"{d}/none"),
           "none': no such directory"),
    Broken("elasticsearch.client_cert", lambda d: _es(d, client_cert=f"{d}/text.txt"),
           "text.txt': no PEM certificate in it"),
    Broken("elasticsearch.client_key",
           lambda d: _es(d, client_cert=_cert(d), client_key=f"{d}/other-key.pem"),
           "other-key.pem' is not the key of elasticsearch.client_cert"),
    Broken("elasticsearch.dead_letter_file", lambda d: _es(d, dead_letter_file=str(d)),
           "is a directory, not a file"),
    Broken("listen.udp", lambda d: "", "cannot listen: Address already in use", hold="udp",
           port_taken=True),
    Broken("listen.tcp", lambda d: "", "cannot listen: Address already in use", hold="tcp",
           port_taken=True),
    Broken("listen.tls", lambda d: "", "cannot listen: Address already in use", hold="tls",
           port_taken=True),
    Broken("metrics.listen", lambda d: "", "cannot listen: Address already in use",
           hold="metrics", port_taken=True),
]


def test_every_setting_naming_a_file_or_an_address_is_broken_by_a_case() -> None:
    named = {name for names in FILE_CHECKS for name in names} | set(ADDRESS_SETTINGS)
    assert {case.setting for case in BROKEN} == named


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("files")
    tls_files(directory)
    other = tmp_path_factory.mktemp("other")
    tls_files(other)
    (other / "key.pem").rename(directory / "other-key.pem")
    (directory / "text.txt").write_text("not a certificate, not a database\n")
    return directory


@contextmanager
def held(kind: str, files: Path) -> Iterator[str]:
    """A configuration whose `kind` address another socket holds (listening)."""
    sock_type = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, sock_type) as taken:
        taken.bind(("127.0.0.1", 0))
        if sock_type == socket.SOCK_STREAM:
            taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        if kind == "metrics":
            yield f'[metrics]\nlisten = "{address}"\n'
        elif kind == "tls":
            yield (f'[listen]\nudp = []\ntcp = []\ntls = ["{address}"]\n'
                   f'tls_cert = "{_cert(files)}"\ntls_key = "{_key(files)}"\n')
        else:
            other = "tcp" if kind == "udp" else "udp"
            yield f'[listen]\n{kind} = ["{address}"]\n{other} = []\n'


def run(config: Path, spool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "receiver", *args, "--config", str(config)]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HAPROXY_RECEIVER_SPOOL__DIR": str(spool)})


def defaults(toml: str) -> str:
    """Free addresses for what the case does not set: the tests run beside each other."""
    if "[listen]" not in toml:
        toml += f'[listen]\nudp = ["127.0.0.1:{free_port(socket.SOCK_DGRAM)}"]\ntcp = []\n'
    elif "udp =" not in toml:
        toml = toml.replace("[listen]\n", "[listen]\nudp = []\ntcp = []\n", 1)
    if "[metrics]" not in toml:
        toml += f'[metrics]\nlisten = "127.0.0.1:{free_port()}"\n'
    return toml


@pytest.mark.parametrize("case", BROKEN, ids=[case.setting for case in BROKEN])
def test_run_refuses_a_broken_file_or_address_in_one_line_before_starting(
        case: Broken, files: Path, tmp_path: Path) -> None:
    config, spool = tmp_path / "config.toml", tmp_path / "spool"
    if case.setting == "spool.dir":
        spool = files / "text.txt"
    with held(case.hold, files) if case.hold else _nothing() as toml:
        config.write_text(defaults(toml or case.toml(files)))
        done = run(config, spool, "run")
        checked = run(config, spool, "check-config")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if case.setting in line]
    assert len(lines) == 1 and case.expected in lines[0], done.stderr
    assert "listening on" not in done.stderr and "metrics on" not in done.stderr
    assert "worker" not in done.stderr
    if case.port_taken:  # beside the instance that holds its ports: a note, not a failure
        assert checked.returncode == 0, checked.stderr
        assert f"note: {case.setting}" in checked.stderr and "in use now" in checked.stderr
    else:
        assert checked.returncode == 2, checked.stderr
        assert case.setting in checked.stderr and case.expected in checked.stderr
        assert "Traceback" not in checked.stderr


@contextmanager
def _nothing() -> Iterator[str]:
    yield ""


def test_an_address_this_host_does_not_have_is_an_error_for_check_config() -> None:
    settings = load_settings(env={}, overrides={"listen.udp": ["192.0.2.1:5140"], "listen.tcp": []})
    with pytest.raises(Exception, match=r"listen.udp\[0\] = '192.0.2.1:5140': cannot listen"):
        probe_addresses(settings)


def test_good_files_pass(files: Path, tmp_path: Path) -> None:
    settings = load_settings(env={}, overrides={
        "listen.tls": [f"127.0.0.1:{free_port()}"], "listen.tls_cert": _cert(files),
        "listen.tls_key": _key(files), "listen.tls_client_ca": str(files / "ca.pem"),
        "spool.dir": str(tmp_path / "new" / "spool"), "elasticsearch.ca_file": str(files / "ca.pem"),
        "elasticsearch.client_cert": _cert(files), "elasticsearch.client_key": _key(files),
        "elasticsearch.dead_letter_file": str(tmp_path / "dead.jsonl")})
    check_files(settings)


def test_an_encrypted_key_needs_its_passphrase_and_never_prompts(tmp_path: Path) -> None:
    """OpenSSL would ask on the terminal for a missing passphrase: a service must not wait."""
    from receiver.config import ConfigError

    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=x", "-passout", "pass:pw-1"],
                   capture_output=True, check=True, stdin=subprocess.DEVNULL)
    base = {"elasticsearch.hosts": ["https://127.0.0.1:9"], "elasticsearch.client_cert": str(cert),
            "elasticsearch.client_key": str(key), "spool.dir": str(tmp_path / "spool")}
    for given in ("", "wrong"):
        overrides = {**base, "elasticsearch.client_key_passphrase": given} if given else base
        with pytest.raises(ConfigError, match="client_key_passphrase does not open it"):
            check_files(load_settings(env={}, overrides=overrides))
    check_files(load_settings(env={}, overrides={**base, "elasticsearch.client_key_passphrase": "pw-1"}))
    listen = {"listen.tls": [f"127.0.0.1:{free_port()}"], "listen.tls_cert": str(cert),
              "listen.tls_key": str(key), "spool.dir": str(tmp_path / "spool")}
    with pytest.raises(ConfigError, match=r"listen\.tls_key = .*encrypted; give it decrypted"):
        check_files(load_settings(env={}, overrides=listen))
