"""Every setting of haproxy-receiver, defined once: type, default and documentation side by side.

Settings come from three layers, later ones winning: the TOML file (`--config`, else the file
named by `HAPROXY_RECEIVER_CONFIG`, else `/etc/haproxy-receiver/config.toml` when it exists:
`config_file()`), environment variables `HAPROXY_RECEIVER_<SECTION>__<KEY>` (e.g.
`HAPROXY_RECEIVER_SPOOL__MAX_BYTES=1GiB`), then command-line flags. Every secret setting (listed
once in `SECRET_SETTINGS`) can instead be read from a file named by `<key>_file` in any layer
(`password_file`, `HAPROXY_RECEIVER_ELASTICSEARCH__PASSWORD_FILE`), as container secrets and
systemd credentials are mounted. `load_settings()` validates everything before anything starts
and raises `ConfigError` naming the setting and what is allowed. The README's configuration
reference is generated from these classes (`haproxy-receiver config-reference`) and a test
checks they agree.
"""

from __future__ import annotations

import binascii
import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from receiver.cpus import usable_cpus
from receiver.redaction import redact

ENV_PREFIX = "HAPROXY_RECEIVER_"
CONFIG_ENV = "HAPROXY_RECEIVER_CONFIG"  # names the configuration file when --config is not given
DEFAULT_CONFIG_FILE = Path("/etc/haproxy-receiver/config.toml")
SECRET_FILE_SUFFIX = "_file"


class ConfigError(ValueError):
    """A setting is wrong; the message names it and says what is allowed."""


def setting(default: Any, doc: str, *, unit: str = "") -> Any:
    """A dataclass field carrying its documentation (and a unit such as "bytes")."""
    metadata = {"doc": doc, "unit": unit}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


ByteSize = typing.NewType("ByteSize", int)
Seconds = typing.NewType("Seconds", float)
Workers = typing.NewType("Workers", int)  # `auto`: see auto_workers()


@dataclass(frozen=True, slots=True)
class ListenSettings:
    """Where HAProxy's `log` lines arrive."""

    udp: list[str] = setting(
        ["127.0.0.1:5140"],
        "UDP syslog addresses, `HOST:PORT` or `[IPv6]:PORT`. Empty list: no UDP listener.",
    )
    tcp: list[str] = setting(
        ["127.0.0.1:5140"],
        "TCP syslog addresses (RFC 6587: octet counting or LF framing, detected per connection).",
    )
    unix: list[str] = setting(
        [], "Unix datagram socket paths (HAProxy `log unix@/path` or `log /path`)."
    )
    unix_stream: list[str] = setting([], "Unix stream socket paths (framed like TCP).")
    tls: list[str] = setting(
        [], "TCP syslog over TLS addresses (RFC 5425, usually port 6514); needs tls_cert and tls_key."
    )
    tls_cert: str = setting("", "Server certificate chain (PEM) for the `tls` listeners.")
    tls_key: str = setting("", "Private key (PEM) of `tls_cert`.")
    tls_client_ca: str = setting(
        "", "CA bundle (PEM); when set, `tls` clients must present a certificate it signed."
    )
    allow: list[str] = setting(
        [],
        "Source networks (CIDR, e.g. `10.0.0.0/8`) allowed to send over UDP, TCP and TLS; "
        "others are refused and counted. Empty: everyone that can reach the socket.",
    )
    max_connections_per_source: int = setting(
        100, "Most stream connections open at once from one source address; 0: no limit."
    )
    udp_receive_buffer: ByteSize = setting(
        ByteSize(32 * 1024**2),
        "SO_RCVBUF for UDP and Unix datagram sockets; absorbs bursts. A warning is logged when "
        "the kernel grants less (raise net.core.rmem_max, or run as root).",
        unit="bytes",
    )
    max_message_bytes: ByteSize = setting(
        ByteSize(64 * 1024),
        "Longest syslog message accepted; a longer line or datagram is cut at this size and "
        "marked truncated (what one message costs in memory and on disk stays bounded).",
        unit="bytes",
    )
    max_connections: int = setting(1000, "Most TCP/Unix stream connections open at once.")
    idle_timeout: Seconds = setting(
        Seconds(600.0),
        "Close a stream connection that sent nothing for this long; 0 keeps it open. HAProxy "
        "keeps its log connection open however long it is idle and reconnects within a second "
        "when it is closed, so this costs a quiet sender one reconnect per period and frees the "
        "connections of senders that vanished without closing (a terminated instance). Closed "
        "gracefully: the receiver half-closes, reads until the sender closes, nothing is lost.",
        unit="s",
    )
    evict_idle_after: Seconds = setting(
        Seconds(10.0),
        "When `max_connections` or `max_connections_per_source` is reached, a new connection "
        "is admitted by closing (gracefully, as `idle_timeout`) an open one that sent no "
        "complete message for at least this long (bytes dripped without a line end do not "
        "count), or at once one still in its TLS handshake: the longest idle of the same "
        "source, or when all are full, of the source holding the most connections. Idle and "
        "slow connections then never lock senders out. 0: refuse the new connection instead.",
        unit="s",
    )
    reuse_port: bool = setting(
        False,
        "Share the UDP, TCP and TLS ports with other processes that also set it (SO_REUSEPORT: "
        "the kernel spreads datagrams and connections over them), for several receivers run on "
        "purpose. `false`: each port is this process's alone, and an address already in use "
        "stops the start (a second `run` beside the service would otherwise take its UDP "
        "datagrams).",
    )
    line_timeout: Seconds = setting(
        10.0,
        "Close a stream connection whose message in progress is not complete after this long "
        "(its part is kept, marked truncated): HAProxy writes each line at once, so only a "
        "stalled or hostile sender takes seconds over one, and a connection dripping bytes "
        "without ever ending a line cannot hold a slot. Such a connection also counts as idle "
        "for `evict_idle_after` (idle means: no complete message). 0: no bound.",
    )
    tls_handshake_timeout: Seconds = setting(
        5.0,
        "Close a `tls` connection whose handshake has not completed after this long. While "
        "limits are reached, a connection still in its handshake (it holds no log data) gives "
        "way first to a new one, the longest-waiting first, so connections that never send a "
        "ClientHello cannot lock senders out.",
    )
    backlog: int = setting(
        0,
        "Listen backlog of TCP and Unix stream sockets: connections the kernel completes while "
        "the receiver has not accepted them yet (a reconnect storm of a whole fleet after a "
        "restart). 0: the kernel's maximum, `net.core.somaxconn`; larger values are capped to it.",
    )


@dataclass(frozen=True, slots=True)
class ParseSettings:
    """How a syslog message becomes a document."""

    format: Literal["auto", "json", "httplog", "tcplog", "clf", "text"] = setting(
        "auto", "Body format; `auto` detects it per message."
    )
    field_names: Literal["ecs", "raw"] = setting(
        "ecs",
        "`ecs`: Elastic Common Schema names. `raw`: the log-format's own keys, typed.",
    )
    timezone: str = setting(
        "UTC",
        "Zone of HAProxy's dates that carry no offset (`%t`, RFC 3164 header), an IANA name.",
    )
    capture_request_headers: list[str] = setting(
        [],
        "Field names for `capture request header` values, in the order of the capture lines.",
    )
    capture_response_headers: list[str] = setting(
        [],
        "Field names for `capture response header` values, in the order of the capture lines.",
    )
    labels: dict[str, str] = setting(
        {}, "Static fields added to every document, e.g. `{\"labels.group\" = \"web-asg\"}`."
    )
    geoip_database: str = setting(
        "", "MaxMind City/Country database file for `source.geo.*`; empty disables GeoIP."
    )
    asn_database: str = setting("", "MaxMind ASN database file for `source.as.*`; empty: off.")
    keep_original: bool = setting(
        False,
        "Copy every body into `event.original` (~400 bytes more per event on disk and in "
        "Elasticsearch; off by default as in Elastic's integrations). Events that were "
        "repaired or cut keep it always; a body that could not be parsed is kept once, as "
        "`message`.",
    )
    max_future: Seconds = setting(
        Seconds(86400.0),
        "An event claiming a time more than this after its receive time is stamped with the "
        "receive time instead (its own in `haproxy.claimed_time`, tagged "
        "`_timestamp_out_of_range`): a day covers clocks a little ahead and every zone "
        "mistake (at most 14 h), not a broken clock or a forged date. 0: no bound.",
        unit="s",
    )
    max_past: Seconds = setting(
        Seconds(7 * 86400.0),
        "The same for times more than this before the receive time: a week covers a relay's "
        "backlog after an outage; older claims are broken clocks (or files replayed on "
        "purpose: raise it). Keeps indices from being created for any date a sender writes. "
        "0: no bound.",
        unit="s",
    )


@dataclass(frozen=True, slots=True)
class SpoolSettings:
    """The write-ahead spool between receiving and shipping."""

    dir: str = setting(
        "/var/lib/haproxy-receiver/spool",
        "Spool directory; one running instance per directory (guarded by a lock file).",
    )
    max_bytes: ByteSize = setting(
        ByteSize(4 * 1024**3), "Most bytes kept on disk before `when_full` applies.", unit="bytes"
    )
    segment_bytes: ByteSize = setting(
        ByteSize(64 * 1024**2), "Size at which a segment file is closed and a new one started "
        "(smaller on a volume where this is more than an eighth of the room the spool has).",
        unit="bytes",
    )
    max_record_bytes: ByteSize = setting(
        ByteSize(1024**2),
        "Largest spool record: must hold the longest message (`listen.max_message_bytes`) "
        "with its receive data (1 KiB).", unit="bytes"
    )
    when_full: Literal["block", "drop_newest", "drop_oldest"] = setting(
        "block",
        "`block`: stop reading streams (senders feel backpressure; UDP drops in the kernel, "
        "counted). `drop_newest`: refuse new events. `drop_oldest`: delete the oldest segment "
        "no worker is reading (what it already sends is still delivered; a segment being read "
        "is never taken); when workers hold every segment, refuse new events.",
    )
    fsync: Literal["always", "interval", "never"] = setting(
        "interval",
        "`always`: fsync every written batch before it counts as accepted. `interval`: "
        "one fsync per `fsync_interval` in the background. `never`: leave it to the kernel.",
    )
    fsync_interval: Seconds = setting(Seconds(0.2), "Time between fsyncs for `interval`.", unit="s")


@dataclass(frozen=True, slots=True)
class ElasticsearchSettings:
    """Where documents go. With no `hosts`, documents are printed to stdout as JSON lines."""

    hosts: list[str] = setting(
        [], "Elasticsearch/OpenSearch URLs: the client's node pool sends to them in turn, "
        "putting a failed one aside (1 s, doubling, up to 30 s). Empty: JSON lines on stdout."
    )
    destination: Literal["auto", "data_stream", "index"] = setting(
        "auto",
        "Where documents go. `auto`: the data stream `data_stream` where the server has data "
        "streams (Elasticsearch 7.9+, OpenSearch), else the daily indices `index` (a server "
        "without them, as osmem). `data_stream`: always the data stream. `index`: always the "
        "daily indices (the default before data streams).",
    )
    index: str = setting(
        "haproxy-%Y.%m.%d",
        "Index name when documents go to indices: strftime on the event time, `{field}` "
        "references allowed (e.g. `haproxy-{haproxy.frontend_name}-%Y.%m.%d`).",
    )
    index_timezone: str = setting("UTC", "Zone used for the date in `index`.")
    data_stream: str = setting(
        "",
        "The data stream documents go to when `destination` picks one (type-dataset-namespace, "
        "as Elasticsearch names them); empty: `logs-haproxy-default`. Its index template and, "
        "on Elasticsearch, a lifecycle policy (rollover, delete after `ilm_delete_after_days`) "
        "are installed at start.",
    )
    cloud_id: str = setting(
        "",
        "Elastic Cloud deployment ID (`name:base64…` from the Cloud console), decoded as the "
        "official clients do into `https://<es-uuid>.<host>:<port>`; replaces `hosts` (set one "
        "of the two). Use it with `api_key`.",
    )
    username: str = setting("", "Basic-auth user.")
    password: str = setting("", "Basic-auth password (prefer the environment variable).")
    api_key: str = setting("", "API key (`id:key` or the encoded form).")
    bearer_token: str = setting("", "Bearer token.")
    ca_file: str = setting(
        "",
        "CA certificates (PEM) to verify the servers with, instead of the default trust: the "
        "OS store (SSL_CERT_FILE/SSL_CERT_DIR or OpenSSL's default) plus certifi's bundle.",
    )
    ca_dir: str = setting(
        "",
        "Directory of CA certificates in OpenSSL's hashed layout (`openssl rehash DIR`), like "
        "SSL_CERT_DIR; with or instead of `ca_file`, it replaces the default trust.",
    )
    ca_trusted_fingerprint: str = setting(
        "",
        "SHA-256 of a CA (or server) certificate the server presents in its chain, in hex (colons "
        "allowed), as Elasticsearch 8 prints at first start: that certificate is trusted in "
        "addition to the others. The host name is still checked.",
    )
    client_cert: str = setting("", "Client certificate file, PEM (TLS client authentication).")
    client_key: str = setting("", "Private key of `client_cert`, PEM; may be encrypted.")
    client_key_passphrase: str = setting("", "Passphrase of an encrypted `client_key`.")
    tls_min_version: Literal["1.2", "1.3"] = setting("1.2", "Lowest TLS version accepted.")
    verify_certs: bool = setting(
        True, "Verify TLS certificates and host names; `false` only with a warning at start."
    )
    proxy: str = setting(
        "",
        "Proxy for every host and Kibana: `http://[user:password@]host:port`, `https://…` or "
        "`socks5h://…`. Empty: HTTPS_PROXY/HTTP_PROXY/NO_PROXY (either case) from the "
        "environment, as curl and the Python standard library read them.",
    )
    request_timeout: Seconds = setting(Seconds(30.0), "Timeout of one bulk request.", unit="s")
    batch_events: int = setting(
        1000,
        "Most events in one bulk request (each event in flight is held twice, as spool record "
        "and in the body: 1000 x 2 in flight kept a worker near 80 MiB at full speed).",
    )
    batch_bytes: ByteSize = setting(
        ByteSize(5 * 1024**2), "Most uncompressed bytes in one bulk request.", unit="bytes"
    )
    batch_age: Seconds = setting(
        Seconds(1.0),
        "The latency budget: a partial batch waits for company until its oldest event waited "
        "this long, then goes. Lower is fresher, higher means fewer, larger requests: at 2,000 "
        "events/s, 1 s sends two or three requests a second (what Elasticsearch prefers from "
        "many senders; documents become searchable at its refresh, 1 s by default).",
        unit="s",
    )
    max_in_flight: int = setting(
        2, "Bulk requests in flight at once; raise it for a distant cluster (round trips of "
        "tens of ms), at the cost of memory.",
    )
    compression: Literal["auto", "on", "off"] = setting(
        "auto",
        "gzip request bodies (level 1: ~6x fewer bytes for ~0.3 µs of CPU per event). `auto`: on "
        "unless every host is loopback (`localhost`, 127.0.0.0/8, ::1), where bytes cost nothing. "
        "`true`/`false` are read as `on`/`off`.",
    )
    retry_initial: Seconds = setting(Seconds(0.5), "First retry delay (doubles, jittered).", unit="s")
    retry_max: Seconds = setting(Seconds(30.0), "Longest retry delay.", unit="s")
    dead_letter_file: str = setting(
        "", "JSON lines file for documents Elasticsearch refused; default `<spool.dir>/dead-letter.jsonl`."
    )
    dead_letter_index: str = setting("", "Also index refused documents here (as text).")
    setup_on_start: bool = setting(
        True,
        "Install the index template (and the ILM policy, on Elasticsearch) at start when it is "
        "missing; one that differs is left as it is with a warning, unless "
        "`template_overwrite`. `false`: only `haproxy-receiver setup` installs them.",
    )
    template_overwrite: bool = setting(
        False,
        "At start, replace an index template or ILM policy of the same name that differs from "
        "this version's (after an upgrade; `haproxy-receiver setup` always does).",
    )
    ilm_delete_after_days: int = setting(
        30, "ILM policy: delete indices (a data stream's backing indices) older than this.")


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Prometheus metrics and health endpoints."""

    listen: str = setting(
        "127.0.0.1:9514", "`HOST:PORT` serving `/metrics`, `/healthz`, `/readyz`; empty: off."
    )


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """The process itself."""

    log_level: Literal["debug", "info", "warning", "error"] = setting("info", "Log level.")
    log_format: Literal["text", "json"] = setting(
        "text",
        "Log lines on stderr: `text` for people, `json` for log collectors (one ECS-shaped object "
        "per line: `@timestamp`, `log.level`, `log.logger`, `message`, `process.pid`, `error.*`).",
    )
    shutdown_grace: Seconds = setting(
        Seconds(10.0),
        "On SIGTERM/SIGINT: time to read what senders already sent (stream connections to "
        "their end, queued datagrams; usually milliseconds) and to ship what is spooled before "
        "exiting (the rest stays spooled).",
        unit="s",
    )
    workers: Workers = setting(
        Workers(1),
        "Parse-and-ship processes sharing the spool (a segment at a time each). `auto`: one per "
        "CPU this process may use (its affinity and cgroup CPU quota, not the host's cores) "
        "but one, which the receiving process keeps. One is enough for a HAProxy host; an "
        "aggregator fed by a fleet wants `auto`.",
    )
    worker_stall_timeout: Seconds = setting(
        Seconds(60.0),
        "Kill and start again a worker whose shipping showed no sign of life for this long: its "
        "reading loop did not turn, no request ended, no retry back-off beat (waiting out an "
        "outage is not stillness). What it held is shipped again. At least 25.",
        unit="s",
    )


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """Kafka between the receivers and a worker tier (the `kafka` extra: `pip install
    'haproxy-receiver[kafka]'`). With `bootstrap_servers` set, `run` produces every spool record
    to `topic` instead of shipping it, and `haproxy-receiver consume` (on any number of hosts,
    one consumer group) parses and ships them. Empty: no Kafka, nothing of it is loaded."""

    bootstrap_servers: list[str] = setting(
        [], "Kafka brokers `HOST:PORT` to start from. Empty: no Kafka path."
    )
    topic: str = setting("haproxy-receiver", "Topic the receivers produce to and workers consume.")
    group_id: str = setting(
        "haproxy-receiver",
        "Consumer group of `consume`; another group (another cluster, an archive) reads the "
        "same topic independently.",
    )
    security_protocol: Literal["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"] = setting(
        "plaintext", "How to reach the brokers: TLS (`ssl`, `sasl_ssl`) and/or SASL."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = setting(
        "SCRAM-SHA-512", "SASL mechanism, with `username` and `password`."
    )
    username: str = setting("", "SASL user.")
    password: str = setting("", "SASL password (prefer the environment variable or a file).")
    ca_file: str = setting(
        "", "CA certificates (PEM) to verify the brokers with; empty: the system's trust."
    )
    client_cert: str = setting("", "Client certificate file, PEM (TLS client authentication).")
    client_key: str = setting("", "Private key of `client_cert`, PEM; may be encrypted.")
    client_key_passphrase: str = setting("", "Passphrase of an encrypted `client_key`.")
    verify_certs: bool = setting(True, "Verify the brokers' certificates and host names.")
    compression: Literal["zstd", "lz4", "snappy", "gzip", "none"] = setting(
        "zstd", "Compression of produced batches."
    )
    linger: Seconds = setting(
        Seconds(0.02), "How long the producer waits to fill a batch (latency for fewer, larger "
        "requests).", unit="s",
    )
    unreachable_after: Seconds = setting(
        Seconds(60.0),
        "Kafka unreachable this long (records waiting for the brokers, none stored meanwhile) "
        "fails `/readyz`; the spool keeps accepting under `spool.when_full` meanwhile.",
        unit="s",
    )
    max_in_flight: int = setting(
        20000, "Most records each producing worker has sent and not yet seen stored."
    )
    options: dict[str, str] = setting(
        {}, "More client properties, passed to every Kafka client as given (e.g. "
        "`{\"socket.keepalive.enable\" = \"true\"}`)."
    )


@dataclass(frozen=True, slots=True)
class Settings:
    listen: ListenSettings = field(default_factory=ListenSettings)
    parse: ParseSettings = field(default_factory=ParseSettings)
    spool: SpoolSettings = field(default_factory=SpoolSettings)
    elasticsearch: ElasticsearchSettings = field(default_factory=ElasticsearchSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)


# Hidden by `redacted()`; each can also be given as `<key>_file` (see `_read_secret_files`).
SECRET_SETTINGS = frozenset({
    "elasticsearch.password", "elasticsearch.api_key", "elasticsearch.bearer_token",
    "elasticsearch.client_key_passphrase", "kafka.password", "kafka.client_key_passphrase",
})


# --- loading ---------------------------------------------------------------------------------

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "ki": 1024, "m": 1000**2,
          "mb": 1000**2, "mib": 1024**2, "mi": 1024**2, "g": 1000**3, "gb": 1000**3,
          "gib": 1024**3, "gi": 1024**3, "t": 1000**4, "tb": 1000**4, "tib": 1024**4, "ti": 1024**4}


def sections() -> dict[str, type[Any]]:
    """Section name → settings class, in documentation order."""
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings)}


def config_file(given: Path | None, env: Mapping[str, str] | None = None,
                default: Path = DEFAULT_CONFIG_FILE) -> Path | None:
    """The configuration file to read: `--config`, else `$HAPROXY_RECEIVER_CONFIG`, else `default`
    when it exists, else none (the embedded defaults). A file named explicitly must exist."""
    if given is not None:
        return given
    named = (os.environ if env is None else env).get(CONFIG_ENV, "")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(f"{CONFIG_ENV}={named}: no such configuration file")
        return path
    return default if default.is_file() else None


def load_settings(
    file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge file < environment < overrides (keys `section.key`) and validate."""
    raw: dict[str, dict[str, Any]] = {name: {} for name in sections()}
    if file is not None:
        _merge(raw, _read_toml(file), origin=str(file))
    _merge(raw, _from_env(os.environ if env is None else env), origin="environment")
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        raw.setdefault(section, {})[key] = value
    _read_secret_files(raw)
    return _build(raw)


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        with file.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"cannot read configuration file {file}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"configuration file {file} is not valid TOML: {error}") from None


def _merge(raw: dict[str, dict[str, Any]], data: Mapping[str, Any], origin: str) -> None:
    known = sections()
    for section, values in data.items():
        if section not in known:
            raise ConfigError(
                f"unknown section [{section}] in {origin}; allowed: {', '.join(known)}"
            )
        if not isinstance(values, Mapping):
            raise ConfigError(f"[{section}] in {origin} must be a table of settings")
        raw[section].update(values)


def secret_file_keys() -> dict[str, str]:
    """`section.<key>_file` → the secret setting `section.<key>` it fills."""
    return {f"{name}{SECRET_FILE_SUFFIX}": name for name in sorted(SECRET_SETTINGS)}


def _read_secret_files(raw: dict[str, dict[str, Any]]) -> None:
    """Replace each `<secret>_file` by the file's contents (one trailing newline removed, as
    `echo` and editors leave one). A secret given both ways is refused: which one wins would
    depend on the layer, and a forgotten variable silently overriding a file is how a rotated
    password stays unrotated."""
    for file_setting, secret in secret_file_keys().items():
        section, _, key = file_setting.partition(".")
        values = raw.get(section, {})
        if key not in values:
            continue
        path = values.pop(key)
        if not isinstance(path, str):
            raise ConfigError(f"{file_setting} must be a file path, got {path!r}")
        if not path:
            continue
        secret_key = secret.partition(".")[2]
        if values.get(secret_key):
            raise ConfigError(f"{secret} and {file_setting} are both set; keep one")
        try:
            text = Path(path).read_text("utf-8")
        except OSError as error:
            raise ConfigError(f"{file_setting}: cannot read {path}: {error.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{file_setting}: {path} is not UTF-8 text") from None
        values[secret_key] = text.removesuffix("\n").removesuffix("\r")


def _from_env(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX):].lower().partition("__")
        out.setdefault(section, {})[key] = value
    return out


def _build(raw: Mapping[str, Mapping[str, Any]]) -> Settings:
    built: dict[str, Any] = {}
    for section, cls in sections().items():
        values = dict(raw.get(section, {}))
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in names:
                names += [file_key.partition(".")[2] for file_key in secret_file_keys()
                          if file_key.startswith(f"{section}.")]
                raise ConfigError(
                    f"unknown setting {section}.{key}; allowed in [{section}]: {', '.join(names)}"
                )
        kwargs = {key: coerce(f"{section}.{key}", hints[key], value) for key, value in values.items()}
        built[section] = cls(**kwargs)
    settings = Settings(**built)
    _check(settings)
    es = settings.elasticsearch
    if es.cloud_id:  # from here on, the cloud's endpoint is an ordinary host
        settings = dataclasses.replace(
            settings, elasticsearch=dataclasses.replace(es, hosts=[cloud_id_url(es.cloud_id)]))
    return settings


def auto_workers() -> int:
    """`service.workers = auto`: the CPUs this process may use but one, at least one."""
    return max(1, usable_cpus() - 1)


def coerce(name: str, hint: Any, value: Any) -> Any:
    """Convert one raw value (TOML value or environment string) to the setting's type."""
    if hint is ByteSize:
        return ByteSize(_byte_size(name, value))
    if hint is Workers:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return Workers(auto_workers())
        count = _number(name, value, int, "a number of processes or `auto`")
        if not 1 <= count <= 256:
            raise ConfigError(f"{name} = {value!r} is not allowed; allowed: 1 to 256, or auto")
        return Workers(count)
    if hint is Seconds:
        return Seconds(_number(name, value, float, "a number of seconds"))
    if hint is bool:
        return _boolean(name, value)
    if hint is int:
        return _number(name, value, int, "an integer")
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return value
    origin = get_origin(hint)
    if origin is Literal:
        allowed = get_args(hint)
        if {"on", "off"} <= set(allowed) and str(value).strip().lower() in _TRUE | _FALSE:
            value = "on" if _boolean(name, value) else "off"  # `true`/`false` as before
        if value not in allowed:
            raise ConfigError(
                f"{name} = {value!r} is not allowed; allowed: {', '.join(map(str, allowed))}"
            )
        return value
    if origin is list:
        items = _split_list(value) if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        return [coerce(f"{name}[{i}]", get_args(hint)[0], item) for i, item in enumerate(items)]
    if origin is dict:
        table = _parse_table(name, value) if isinstance(value, str) else value
        if not isinstance(table, Mapping):
            raise ConfigError(f"{name} must be a table of strings, got {value!r}")
        return {str(k): coerce(f"{name}.{k}", str, str(v)) for k, v in table.items()}
    if isinstance(hint, types.UnionType):  # pragma: no cover - no such settings yet
        raise ConfigError(f"{name}: unsupported type {hint}")
    raise ConfigError(f"{name}: unsupported type {hint}")  # pragma: no cover


def _split_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _parse_table(name: str, text: str) -> dict[str, str]:
    """Environment form of a table: `key=value,key2=value2`."""
    table: dict[str, str] = {}
    for item in _split_list(text):
        key, sep, val = item.partition("=")
        if not sep:
            raise ConfigError(f"{name} must look like key=value,key2=value2, got {text!r}")
        table[key.strip()] = val.strip()
    return table


def _byte_size(name: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(
            f"{name} = {value!r} is not a size; allowed: a non-negative integer of bytes or "
            "a number with a unit such as 512KiB, 64MiB, 4GiB, 1GB"
        )
    unit = (match.group(2) or "").lower()
    return int(float(match.group(1)) * _UNITS[unit])


def _number(name: str, value: Any, kind: type[int] | type[float], what: str) -> Any:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be {what}, got {value!r}")
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be {what}, got {value!r}") from None
    if number < 0:
        raise ConfigError(f"{name} must not be negative, got {value!r}")
    return number


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{name} = {value!r} is not a boolean; allowed: true, false")


def _check(settings: Settings) -> None:
    """Checks that span more than one value's type."""
    from receiver.addresses import AddressError, parse_host_port  # late: avoids a cycle

    listen = settings.listen
    for kind in ("udp", "tcp"):
        for i, address in enumerate(getattr(listen, kind)):
            try:
                parse_host_port(address)
            except AddressError as error:
                raise ConfigError(f"listen.{kind}[{i}]: {error}") from None
    if settings.metrics.listen:
        try:
            parse_host_port(settings.metrics.listen)
        except AddressError as error:
            raise ConfigError(f"metrics.listen: {error}") from None
    for i, address in enumerate(listen.tls):
        try:
            parse_host_port(address)
        except AddressError as error:
            raise ConfigError(f"listen.tls[{i}]: {error}") from None
    if listen.tls and not (listen.tls_cert and listen.tls_key):
        raise ConfigError("listen.tls is set: listen.tls_cert and listen.tls_key are required")
    for i, network in enumerate(listen.allow):
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(
                f"listen.allow[{i}] = {network!r} is not a network; allowed: CIDR such as "
                "10.0.0.0/8, 192.0.2.7/32, 2001:db8::/32") from None
    if not (listen.udp or listen.tcp or listen.tls or listen.unix or listen.unix_stream):
        raise ConfigError("listen: no listener configured; set listen.udp, tcp, tls, unix or unix_stream")
    if listen.tls_handshake_timeout <= 0:
        raise ConfigError("listen.tls_handshake_timeout must be a positive number of seconds")
    if settings.service.worker_stall_timeout < 25:
        # The Kafka forwarder may wait twice 10 s for a record sent alone (kafka/producer.py).
        raise ConfigError(f"service.worker_stall_timeout = {settings.service.worker_stall_timeout:g}"
                          " is too short; allowed: 25 seconds or more")
    if not 1024 <= listen.max_message_bytes <= 16 * 1024**2:
        raise ConfigError("listen.max_message_bytes must be between 1KiB and 16MiB")
    for name in ("timezone",):
        _check_zone(f"parse.{name}", getattr(settings.parse, name))
    for name in ("max_future", "max_past"):
        if getattr(settings.parse, name) < 0:
            raise ConfigError(f"parse.{name} must be 0 (no bound) or a positive number of "
                              "seconds")
    _check_zone("elasticsearch.index_timezone", settings.elasticsearch.index_timezone)
    spool = settings.spool
    if spool.segment_bytes < 64 * 1024:
        raise ConfigError("spool.segment_bytes must be at least 64KiB")
    if spool.max_bytes < 2 * spool.segment_bytes:
        raise ConfigError("spool.max_bytes must be at least twice spool.segment_bytes")
    longest = int(listen.max_message_bytes) + 1024
    if not longest <= spool.max_record_bytes <= spool.segment_bytes // 2:
        raise ConfigError(
            f"spool.max_record_bytes must be between {longest} (listen.max_message_bytes and "
            "1KiB of receive data) and half of spool.segment_bytes")
    es = settings.elasticsearch
    for i, host in enumerate(es.hosts):
        if not re.match(r"^https?://[^/\s]+", host):
            raise ConfigError(
                f"elasticsearch.hosts[{i}] = {redact(host)!r} is not a URL; "
                "allowed: http://host:port or https://host:port"
            )
    _check_connection(es)
    if es.batch_events < 1 or es.max_in_flight < 1:
        raise ConfigError("elasticsearch.batch_events and max_in_flight must be at least 1")
    if es.retry_initial <= 0 or es.retry_max < es.retry_initial:
        raise ConfigError("elasticsearch.retry_initial must be > 0 and <= retry_max")
    if es.password and not es.username:
        raise ConfigError("elasticsearch.password is set but elasticsearch.username is empty")
    _check_kafka(settings.kafka)


def _check_kafka(kafka: KafkaSettings) -> None:
    from receiver.addresses import AddressError, parse_host_port  # late: avoids a cycle

    for i, address in enumerate(kafka.bootstrap_servers):
        try:
            parse_host_port(address)
        except AddressError as error:
            raise ConfigError(f"kafka.bootstrap_servers[{i}]: {error}") from None
    if kafka.bootstrap_servers and not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", kafka.topic):
        raise ConfigError(f"kafka.topic = {kafka.topic!r} is not a topic name; allowed: 1 to "
                          "249 letters, digits, `.`, `_`, `-`")
    if kafka.bootstrap_servers and not kafka.group_id:
        raise ConfigError("kafka.group_id must not be empty")
    if kafka.security_protocol.startswith("sasl") and not (kafka.username and kafka.password):
        raise ConfigError(f"kafka.security_protocol = {kafka.security_protocol!r} needs "
                          "kafka.username and kafka.password")
    if kafka.client_key and not kafka.client_cert:
        raise ConfigError("kafka.client_key is set but kafka.client_cert is empty")
    if kafka.max_in_flight < 1 or kafka.linger < 0 or kafka.unreachable_after <= 0:
        raise ConfigError("kafka.max_in_flight must be at least 1, kafka.linger at least 0 and "
                          "kafka.unreachable_after more than 0")
    # The producer's record limit (receiver/kafka/producer.py reads it): librdkafka's range.
    limit = kafka.options.get("message.max.bytes", "1000")
    if not (limit.isdigit() and 1000 <= int(limit) <= 1_000_000_000):
        raise ConfigError(f"kafka.options message.max.bytes = {limit!r}: allowed a whole number "
                          "of bytes from 1000 to 1000000000 (the brokers' limit)")


def _check_zone(name: str, zone: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{name} = {zone!r} is not a time zone; allowed: an IANA name such as UTC, Europe/Paris"
        ) from None


PROXY_SCHEMES = ("http", "https", "socks4", "socks4a", "socks5", "socks5h")


def _check_connection(es: ElasticsearchSettings) -> None:
    """Cloud ID, TLS settings and proxy: refused at start, naming the setting."""
    if es.cloud_id:
        if es.hosts:
            raise ConfigError(
                "elasticsearch.cloud_id and elasticsearch.hosts are both set; set one of them")
        cloud_id_url(es.cloud_id)
    # Whether the TLS files exist is checked by receiver/preflight.py (`run`, `check-config`),
    # not here: a configuration is also loaded on machines that do not hold them (CI, tools).
    if es.client_key and not es.client_cert:
        raise ConfigError("elasticsearch.client_key is set but elasticsearch.client_cert is empty")
    if es.client_key_passphrase and not (es.client_key or es.client_cert):
        raise ConfigError("elasticsearch.client_key_passphrase is set but no client_key")
    if es.ca_trusted_fingerprint:
        fingerprint_hex(es.ca_trusted_fingerprint)
    if es.proxy:
        match = re.match(r"^([a-z0-9]+)://[^/\s]+", es.proxy)
        if match is None or match.group(1) not in PROXY_SCHEMES:
            raise ConfigError(
                f"elasticsearch.proxy = {redact(es.proxy)!r} is not a proxy URL; allowed: "
                + ", ".join(f"{scheme}://host:port" for scheme in PROXY_SCHEMES))


def fingerprint_hex(text: str) -> str:
    """`elasticsearch.ca_trusted_fingerprint` as 64 lower-case hex digits (colons and spaces
    dropped, as OpenSSL prints them), or ConfigError."""
    digits = re.sub(r"[\s:]", "", text).lower()
    if not re.fullmatch(r"[0-9a-f]{64}", digits):
        raise ConfigError(
            f"elasticsearch.ca_trusted_fingerprint = {text!r} is not a SHA-256 fingerprint; "
            "allowed: 64 hex digits, colons allowed (e.g. the one Elasticsearch 8 prints)")
    return digits


def cloud_id_url(cloud_id: str) -> str:
    """The Elasticsearch URL of an Elastic Cloud ID, decoded as the official clients do:
    `name:` + base64 of `host[:port]$es-uuid$kibana-uuid` -> `https://es-uuid.host:port`
    (port 443 when absent)."""
    _name, _, encoded = cloud_id.partition(":")
    try:
        parts = binascii.a2b_base64(encoded.encode("ascii")).decode("ascii").split("$")
        host, es_uuid = parts[0], parts[1] if len(parts) > 1 else ""
        port = 443
        if ":" in host:
            host, _, port_text = host.rpartition(":")
            port = int(port_text)
        if not host or not es_uuid:
            raise ValueError("no host or no Elasticsearch id")
    except (ValueError, UnicodeError, binascii.Error):
        raise ConfigError(
            "elasticsearch.cloud_id is not an Elastic Cloud ID; allowed: `name:base64` as the "
            "Cloud console shows it") from None
    return f"https://{es_uuid}.{host}:{port}"


def redacted(settings: Settings) -> dict[str, dict[str, Any]]:
    """Settings as plain data with secrets replaced, for `check-config` and logs."""
    out: dict[str, dict[str, Any]] = {}
    for section in sections():
        values = dataclasses.asdict(getattr(settings, section))
        for key, value in values.items():
            if f"{section}.{key}" in SECRET_SETTINGS and value:
                values[key] = "***"
        if section == "elasticsearch":
            values["hosts"] = [redact(h) for h in values["hosts"]]
            values["proxy"] = redact(values["proxy"])
        out[section] = values
    return out


def reference_markdown() -> str:
    """The configuration reference as Markdown tables (the README embeds this text)."""
    lines: list[str] = []
    for section, cls in sections().items():
        lines += [f"### `[{section}]`", "", (cls.__doc__ or "").strip(), ""]
        lines += ["| setting | type | default | meaning |", "|---|---|---|---|"]
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = _default_of(f)
            lines.append(
                f"| `{f.name}` | {_type_name(hints[f.name], f.metadata.get('unit', ''))} | "
                f"`{_toml_value(default)}` | {f.metadata['doc']} |"
            )
            if f"{section}.{f.name}" in SECRET_SETTINGS:
                lines.append(
                    f"| `{f.name}{SECRET_FILE_SUFFIX}` | str | `\"\"` | File holding `{f.name}` "
                    "(one trailing newline removed), e.g. a mounted Kubernetes Secret or "
                    "systemd credential; instead of `" + f.name + "`. |"
                )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def config_toml() -> str:
    """A complete configuration file: every setting set to its default, its documentation as
    comments (`haproxy-receiver export config`); `check-config` accepts it unchanged."""
    import json
    import textwrap

    def comment(text: str) -> list[str]:
        return textwrap.wrap(text, 94, initial_indent="# ", subsequent_indent="# ")

    def value(default: Any, hint: Any) -> str:
        if isinstance(default, str):
            return json.dumps(default, ensure_ascii=False)  # a JSON string is a TOML string
        if isinstance(default, list):
            return "[" + ", ".join(value(item, str) for item in default) + "]"
        if isinstance(default, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {value(v, str)}"
                                   for k, v in default.items()) + "}"
        if hint is ByteSize:
            return value(_size_text(int(default)), str)
        return _toml_value(default)

    lines = comment("haproxy-receiver configuration: every setting, set to its default, with "
                    "its meaning. Generated by `haproxy-receiver export config` from the "
                    "settings' one declaration (receiver/config.py); change what you need and "
                    "check it with `haproxy-receiver check-config -c FILE`. Sizes take units "
                    "(64MiB, 4GiB), durations are seconds.")
    for section, cls in sections().items():
        lines += ["", *comment((cls.__doc__ or "").strip()), f"[{section}]"]
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            unit = {"s": "seconds"}.get(f.metadata.get("unit", ""), f.metadata.get("unit", ""))
            lines += ["", *comment(f.metadata["doc"] + (f" Unit: {unit}." if unit else ""))]
            if f"{section}.{f.name}" in SECRET_SETTINGS:
                lines += comment(f"Or `{f.name}{SECRET_FILE_SUFFIX} = \"/path\"`: a file "
                                 f"holding it (one trailing newline removed), instead of "
                                 f"`{f.name}`.")
            lines.append(f"{f.name} = {value(_default_of(f), hints[f.name])}")
    return "\n".join(lines) + "\n"


def _size_text(size: int) -> str:
    """A byte count as the largest binary unit that divides it (`4GiB`), else bytes."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def _default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _type_name(hint: Any, unit: str) -> str:
    if hint is ByteSize:
        return "size"
    if hint is Workers:
        return "integer \\| `auto`"
    if hint is Seconds:
        return "seconds"
    if get_origin(hint) is Literal:
        return " \\| ".join(f"`{a}`" for a in get_args(hint))
    if get_origin(hint) is list:
        return "list of strings"
    if get_origin(hint) is dict:
        return "table"
    return str(getattr(hint, "__name__", hint)) + (f" ({unit})" if unit else "")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return str(value)
