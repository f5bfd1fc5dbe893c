"""Every setting that names a file, a directory, a port or a certificate, checked before anything
starts (by `run` and by `check-config`): readable, parses, the key matches its certificate, the
address can be bound. A problem raises `ConfigError` naming the setting and the path, so that a
missing TLS file is one line at start instead of failures deep in a worker.

`load_settings()` checks only values (types, ranges, shapes): a configuration is also valid on
a machine that does not hold its files. These checks look at this machine.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

from receiver.addresses import family_of, parse_host_port
from receiver.config import ConfigError, Settings

Check = Callable[[Settings], None]


def _readable(setting: str, path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except IsADirectoryError:
        raise ConfigError(f"{setting} = {path!r}: is a directory, not a file") from None
    except OSError as error:
        raise ConfigError(f"{setting} = {path!r}: cannot read: {error.strerror}") from None


def _pem(setting: str, path: str, kind: str) -> None:
    """The file holds a PEM block of `kind` (CERTIFICATE, PRIVATE KEY...)."""
    if f"{kind}-----".encode() not in _readable(setting, path):
        raise ConfigError(f"{setting} = {path!r}: no PEM {kind.lower()} in it")


def _key_pair(cert_setting: str, cert: str, key_setting: str, key: str,
              passphrase: str = "", passphrase_setting: str = "") -> None:
    """Certificate and key both readable PEM, and the key is the certificate's."""
    _pem(cert_setting, cert, "CERTIFICATE")
    if key:
        _pem(key_setting, key, "PRIVATE KEY")
    if b"ENCRYPTED" in _readable(key_setting, key or cert):
        if not passphrase_setting:
            raise ConfigError(f"{key_setting} = {key!r}: the key is encrypted; give it "
                              "decrypted (there is no passphrase setting for it)")
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(
                cert, key or None, lambda: passphrase.encode())
        except ssl.SSLError:
            raise ConfigError(f"{key_setting} = {key!r}: the key is encrypted and "
                              f"{passphrase_setting} does not open it") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # a callable, never None: OpenSSL would ask for a missing passphrase on the terminal
        context.load_cert_chain(cert, key or None, lambda: passphrase.encode())
    except ssl.SSLError as error:
        reason = error.reason or str(error)
        if "MISMATCH" in reason.upper():
            raise ConfigError(f"{key_setting} = {key!r} is not the key of {cert_setting} = "
                              f"{cert!r}") from None
        raise ConfigError(f"{cert_setting} = {cert!r}, {key_setting} = {key!r}: cannot load: "
                          f"{reason}") from None


def _ca_bundle(setting: str, path: str) -> None:
    _pem(setting, path, "CERTIFICATE")
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError as error:
        raise ConfigError(f"{setting} = {path!r}: not a CA bundle: {error.reason}") from None


def _directory(setting: str, path: str, *, create: bool) -> None:
    """An existing directory this process may write into; with `create`, a missing one is fine
    when its nearest existing parent is (it is made at start)."""
    target = Path(path)
    if target.exists():
        if not target.is_dir():
            raise ConfigError(f"{setting} = {path!r}: exists and is not a directory")
        if not os.access(target, os.W_OK | os.X_OK):
            raise ConfigError(f"{setting} = {path!r}: not writable by this user")
        return
    if not create:
        raise ConfigError(f"{setting} = {path!r}: no such directory")
    parent = target.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{setting} = {path!r}: cannot be created ({parent} is not writable "
                          "by this user)")


def _writable_file(setting: str, path: str) -> None:
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{setting} = {path!r}: is a directory, not a file")
    if target.exists():
        if not os.access(target, os.W_OK):
            raise ConfigError(f"{setting} = {path!r}: not writable by this user")
        return
    _directory(setting, str(target.absolute().parent), create=True)


def _socket_path(setting: str, path: str) -> None:
    directory = Path(path).absolute().parent
    if not directory.is_dir():
        raise ConfigError(f"{setting} = {path!r}: no such directory {directory}")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"{setting} = {path!r}: {directory} is not writable by this user")


def _geo(name: str, path: str) -> None:
    from receiver.parse.geo import open_database

    _readable(f"parse.{name}", path)
    open_database(path, name).close()


def _listen_tls(s: Settings) -> None:
    listen = s.listen
    if listen.tls_cert or listen.tls_key:
        _key_pair("listen.tls_cert", listen.tls_cert, "listen.tls_key", listen.tls_key)
    if listen.tls_client_ca:
        _ca_bundle("listen.tls_client_ca", listen.tls_client_ca)


def _unix_paths(s: Settings) -> None:
    for kind in ("unix", "unix_stream"):
        for i, path in enumerate(getattr(s.listen, kind)):
            _socket_path(f"listen.{kind}[{i}]", path)


def _geo_databases(s: Settings) -> None:
    for name in ("geoip_database", "asn_database"):
        path = getattr(s.parse, name)
        if path:
            _geo(name, path)


def _spool(s: Settings) -> None:
    _directory("spool.dir", s.spool.dir, create=True)


def _elasticsearch_tls(s: Settings) -> None:
    es = s.elasticsearch
    if es.ca_file:
        _ca_bundle("elasticsearch.ca_file", es.ca_file)
    if es.ca_dir:
        _directory("elasticsearch.ca_dir", es.ca_dir, create=False)
    if es.client_cert:
        _key_pair("elasticsearch.client_cert", es.client_cert, "elasticsearch.client_key",
                  es.client_key, es.client_key_passphrase, "elasticsearch.client_key_passphrase")


def _dead_letter(s: Settings) -> None:
    if s.elasticsearch.dead_letter_file:
        _writable_file("elasticsearch.dead_letter_file", s.elasticsearch.dead_letter_file)


# Every setting naming a file, directory, socket path or certificate -> its check (a test
# breaks each in turn). Addresses are probed apart (`probe_addresses`): `run` binds them for
# real, `check-config` only tries.
FILE_CHECKS: dict[tuple[str, ...], Check] = {
    ("listen.tls_cert", "listen.tls_key", "listen.tls_client_ca"): _listen_tls,
    ("listen.unix", "listen.unix_stream"): _unix_paths,
    ("parse.geoip_database", "parse.asn_database"): _geo_databases,
    ("spool.dir",): _spool,
    ("elasticsearch.ca_file", "elasticsearch.ca_dir", "elasticsearch.client_cert",
     "elasticsearch.client_key"): _elasticsearch_tls,
    ("elasticsearch.dead_letter_file",): _dead_letter,
}
ADDRESS_SETTINGS = ("listen.udp", "listen.tcp", "listen.tls", "metrics.listen")


def check_files(settings: Settings) -> None:
    """Every file, directory and certificate the settings name; ConfigError on the first
    problem, naming the setting and the path."""
    for check in FILE_CHECKS.values():
        check(settings)


def addresses(settings: Settings) -> list[tuple[str, str, int]]:
    """(setting, address, socket type) for every address the settings bind."""
    found: list[tuple[str, str, int]] = []
    for kind, sock_type in (("udp", socket.SOCK_DGRAM), ("tcp", socket.SOCK_STREAM),
                            ("tls", socket.SOCK_STREAM)):
        for i, address in enumerate(getattr(settings.listen, kind)):
            found.append((f"listen.{kind}[{i}]", address, sock_type))
    if settings.metrics.listen:
        found.append(("metrics.listen", settings.metrics.listen, socket.SOCK_STREAM))
    return found


def probe_addresses(settings: Settings) -> list[str]:
    """Try to bind every address (and let it go): ConfigError when one can never be bound here
    (not this host's address, a privileged port); an address in use now is returned as a note,
    not an error, since `check-config` is also run beside the instance that holds it."""
    notes: list[str] = []
    for setting, address, kind in addresses(settings):
        host, port = parse_host_port(address)
        with socket.socket(family_of(host), kind) as probe:
            try:
                probe.bind((host, port))
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    notes.append(f"{setting} = {address!r}: in use now (by a running instance?); "
                                 "`run` will fail unless it is free then")
                    continue
                raise ConfigError(f"{setting} = {address!r}: cannot listen: {error.strerror}") from None
    return notes
