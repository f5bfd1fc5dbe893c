"""The field specification: a log-format variable (`ci`, `Tw`, `r`, ...) -> typed document field(s).

Owns the one table every parse path is built from (`FIELDS`: variable -> ECS name and kind), the
names of the fields derived from them (`source.ip`, `haproxy.termination.cause`, ...), and the
conversion of one value of each kind (`HANDLERS`). The general mapper (`mapper.FieldMapper`),
the straight-line code generated per key layout (`compiled.py`) and the httplog fast path (which
hands its tokens to that generated code) all read this module; none of them writes a field name
of its own, so renaming a field is one edit here. The README's field reference is generated from
the same table (`field_reference()`).

In `field_names = "ecs"` mode (default) known keys get Elastic Common Schema names (Elastic's
HAProxy integration names where ECS has none); unknown keys are kept as `haproxy.<key>` with
their JSON type. In `raw` mode every key stays as the log-format wrote it, typed.

HAProxy conventions handled here: `-` means "no value" (dropped), `-1` timers mean "phase not
reached" (kept as -1), `+` prefixes (logasap, redispatch) are dropped from numbers, `#XX`
escapes in paths, queries and captures are decoded back to the bytes they stand for (the
request target itself, `url.original`, stays exactly as logged), and `<BADREQ>` carries no
method or path.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any, Protocol

# Kinds of conversion (small ints: compared in generated code).
STR = 0  # text, renamed
INT = 1  # integer (timers, counts, ports, bytes); `+` prefix dropped
SRC_IP = 2  # client address -> source.address + source.ip when a valid IP
DST_IP = 3  # frontend address -> destination.address + destination.ip
DATE_MS = 4  # `%t`-style date, no zone, optional ms
DATE_OFFSET = 5  # `%Tl`-style date with offset
EPOCH = 6  # `%Ts` epoch seconds
FRONTEND = 7  # `%ft`: kept as logged; a trailing `~` (SSL listener) also sets the transport
STATUS = 8  # HTTP status; -1 (none) dropped
REQUEST = 9  # `%r` request line: split into method, url, version
URI = 10  # `%HU`: url.original as logged
PATH = 11  # `%HP` (#XX decoded)
QUERY = 12  # `%HQ`: leading `?` removed; empty dropped
VERSION = 13  # `%HV`: `HTTP/1.1` -> `1.1`
METHOD = 14  # `%HM`
TERMINATION = 15  # `%ts`/`%tsc`: kept raw and split
CAPTURE_REQUEST = 16  # `%hr`: `{a|b}` -> configured names
CAPTURE_RESPONSE = 17  # `%hs`
TLS_VERSION = 18  # `%sslv`: `TLSv1.3` -> tls.version 1.3, tls.version_protocol tls
BOOL = 19  # `0`/`1`
BYTES_UPLOADED = 21  # `%U`
DURATION = 22  # `%Ta`/`%Tt`: also the source of event.duration
LIST = 23  # tokens a text line carries beyond its format's fields, kept in order

DATE_KINDS = (DATE_MS, DATE_OFFSET, EPOCH)

# variable -> (ECS name, kind). The README field reference is generated from this table.
FIELDS: dict[str, tuple[str, int]] = {
    "ci": ("source.address", SRC_IP),
    "cp": ("source.port", INT),
    "fi": ("destination.address", DST_IP),
    "fp": ("destination.port", INT),
    "bi": ("haproxy.backend_source_ip", STR),
    "bp": ("haproxy.backend_source_port", INT),
    "si": ("haproxy.server_ip", STR),
    "sp": ("haproxy.server_port", INT),
    "t": ("haproxy.accept_date", DATE_MS),
    "tr": ("haproxy.request_date", DATE_MS),
    "Tl": ("haproxy.accept_date_local", DATE_OFFSET),
    "T": ("haproxy.accept_date_gmt", DATE_OFFSET),
    "trg": ("haproxy.request_date_gmt", DATE_OFFSET),
    "trl": ("haproxy.request_date_local", DATE_OFFSET),
    "Ts": ("haproxy.accept_timestamp", EPOCH),
    "ms": ("haproxy.accept_date_ms", INT),
    "ft": ("haproxy.frontend_name", FRONTEND),
    "b": ("haproxy.backend_name", STR),
    "s": ("haproxy.server_name", STR),
    "TR": ("haproxy.time_request_ms", INT),
    "Tw": ("haproxy.time_queue_ms", INT),
    "Tc": ("haproxy.time_connect_ms", INT),
    "Tr": ("haproxy.time_response_ms", INT),
    "Th": ("haproxy.time_handshake_ms", INT),
    "Ti": ("haproxy.time_idle_ms", INT),
    "Td": ("haproxy.time_data_ms", INT),
    "Tu": ("haproxy.time_total_active_ms", INT),
    "Ta": ("haproxy.time_active_ms", DURATION),
    "Tt": ("haproxy.total_time_ms", DURATION),
    "ST": ("http.response.status_code", STATUS),
    # %B, the bytes sent to the client, on every line kind: stored once, under Elastic's
    # integration name (a TCP line has no HTTP response); `http.response.bytes` is an alias
    # of it in the index template, so searches and dashboards on the ECS name still work.
    "B": ("haproxy.bytes_read", INT),
    "U": ("http.request.bytes", BYTES_UPLOADED),
    "CC": ("haproxy.http.request.captured_cookie", STR),
    "CS": ("haproxy.http.response.captured_cookie", STR),
    "ts": ("haproxy.termination_state", TERMINATION),
    "ac": ("haproxy.connections.active", INT),
    "fc": ("haproxy.connections.frontend", INT),
    "bc": ("haproxy.connections.backend", INT),
    "sc": ("haproxy.connections.server", INT),
    "rc": ("haproxy.connections.retries", INT),
    "sq": ("haproxy.server_queue", INT),
    "bq": ("haproxy.backend_queue", INT),
    "hr": ("haproxy.http.request.captured_headers", CAPTURE_REQUEST),
    "hs": ("haproxy.http.response.captured_headers", CAPTURE_RESPONSE),
    "r": ("haproxy.http.request.raw_request_line", REQUEST),
    "HM": ("http.request.method", METHOD),
    "HU": ("url.original", URI),
    "HP": ("url.path", PATH),
    "HQ": ("url.query", QUERY),
    "HV": ("http.version", VERSION),
    "ID": ("http.request.id", STR),
    "H": ("observer.hostname", STR),
    "pid": ("process.pid", INT),
    "rt": ("haproxy.request_counter", INT),
    "lc": ("haproxy.log_counter", INT),
    "sslv": ("tls.version", TLS_VERSION),
    "sslc": ("tls.cipher", STR),
    # httpslog's sample fetches
    "fc_err": ("haproxy.connection_error_code", INT),
    "ssl_fc_err": ("haproxy.tls.error_code", STR),
    "ssl_c_err": ("haproxy.tls.client_cert_error_code", INT),
    "ssl_c_ca_err": ("haproxy.tls.client_ca_error_code", INT),
    "ssl_fc_is_resumed": ("tls.resumed", BOOL),
    "ssl_fc_sni": ("tls.client.server_name", STR),
    # The error line's `frontend/bind:` and the legacy "Connect from" line's mode.
    "bind_name": ("haproxy.bind_name", STR),
    "mode": ("haproxy.mode", STR),
    # Tokens of a text line that its format does not define (a custom format derived from
    # httplog/tcplog): kept in order, never given a name they may not have. (A JSON key of
    # this name lands where an unknown key would: `haproxy.extra_tokens`.)
    "extra_tokens": ("haproxy.extra_tokens", LIST),
    "ua": ("user_agent.original", STR),
    "referer": ("http.request.referrer", STR),
}


# Other names for the variables above: HAProxy's legacy and list forms, and descriptive keys
# often used in hand-written JSON log-formats. Each maps to its variable's field and kind.
ALIASES: dict[str, str] = {
    "Tq": "TR", "tsc": "ts", "hrl": "hr", "hsl": "hs", "f": "ft",
    "client_ip": "ci", "client_port": "cp", "frontend_name": "ft", "backend_name": "b",
    "server_name": "s", "status_code": "ST", "bytes_read": "B", "http_method": "HM",
    "http_request": "r", "termination_state": "ts", "user_agent": "ua", "referrer": "referer",
}
FIELDS.update({alias: FIELDS[variable] for alias, variable in ALIASES.items()})


def name_of(variable: str) -> str:
    """The document field of a log-format variable (for modules that write one directly)."""
    return FIELDS[variable][0]


# Fields derived from the variables above; each name is written here once.
UNKNOWN_PREFIX = "haproxy."  # an unknown log-format key `k` becomes `haproxy.k`
# Written beside `source.address`/`destination.address` on purpose, not for compatibility: ECS
# asks for the address as logged (a unix socket, `-`, a name) in `.address` and, only when it is
# an IP, a copy in `.ip` (typed `ip`: ranges, CIDR queries); and for every IP of the event in
# `related.ip`. An alias could not do either (it has one target and one type for all documents).
SOURCE_IP = "source.ip"
DESTINATION_IP = "destination.ip"
RELATED_IP = "related.ip"  # every valid address of the event (source, then destination)
FRONTEND_TRANSPORT = "haproxy.frontend_transport"
TCP_BYTES_UPLOADED = "haproxy.bytes_uploaded"  # %U on a TCP line (HTTP: http.request.bytes)
TLS_PROTOCOL = "tls.version_protocol"
TERMINATION_CAUSE = "haproxy.termination.cause"
TERMINATION_PHASE = "haproxy.termination.phase"
EVENT_DURATION = "event.duration"  # nanoseconds, from %Ta/%Tt
CLAIMED_TIME = "haproxy.claimed_time"  # a date passed over for @timestamp, as logged
EVENT_OUTCOME = "event.outcome"  # ECS categorisation, by format (parse) or message (messages)
EVENT_CATEGORY = "event.category"
EVENT_TYPE = "event.type"
COOKIE_CLIENT = "haproxy.termination.cookie_client"
COOKIE_SERVER = "haproxy.termination.cookie_server"
URL_SCHEME = "url.scheme"
URL_DOMAIN = "url.domain"
URL_PORT = "url.port"
METHOD_FIELD = name_of("HM")
VERSION_FIELD = name_of("HV")
URL_ORIGINAL = name_of("HU")
URL_PATH = name_of("HP")
URL_QUERY = name_of("HQ")
DERIVED_NAMES = (SOURCE_IP, DESTINATION_IP, RELATED_IP, FRONTEND_TRANSPORT,
                 TCP_BYTES_UPLOADED, TLS_PROTOCOL, TERMINATION_CAUSE, TERMINATION_PHASE,
                 COOKIE_CLIENT, COOKIE_SERVER, URL_SCHEME, URL_DOMAIN, URL_PORT)

# Where HAProxy's documentation explains each variable, for the field reference.
DESCRIPTIONS: dict[str, str] = {
    "ci": "client IP (`source.ip` too when it is an IP; unix-socket clients have none)",
    "cp": "client port", "fi": "frontend IP", "fp": "frontend port",
    "t": "accept date; the source of `@timestamp`", "tr": "request date",
    "Tl": "accept date with zone", "T": "accept date, GMT", "Ts": "accept date, epoch",
    "ft": "frontend as logged (`~` suffix: SSL listener, also `haproxy.frontend_transport: ssl`)",
    "TR": "time to receive the full request (ms)", "Tq": "legacy name of TR",
    "Tw": "time in queues (ms)", "Tc": "time to connect to the server (ms)",
    "Tr": "server response time (ms)", "Ta": "active time of the request (ms); event.duration",
    "Tt": "total session time (ms); event.duration", "ST": "HTTP status (-1 dropped)",
    "B": "bytes read by the client, on every line (`http.response.bytes`: an alias)",
    "U": "bytes uploaded by the client (tcplog: haproxy.bytes_uploaded)",
    "ts": "termination state, split into haproxy.termination.*",
    "r": "request line, split into method, url.*, http.version",
    "HU": "request target exactly as logged", "HP": "path (`#XX` decoded)",
    "hr": "captured request headers: named by parse.capture_request_headers",
    "hs": "captured response headers: named by parse.capture_response_headers",
    "extra_tokens": "tokens of a text line beyond its format's fields (custom formats)",
}

_TERMINATION_CAUSE = {
    "C": "client_abort", "S": "server_abort", "P": "proxy_denied", "L": "local_response",
    "R": "resource_exhausted", "I": "internal_error", "D": "killed_server_down",
    "U": "killed_server_up", "K": "killed_by_admin", "c": "client_timeout",
    "s": "server_timeout", "-": "normal",
}
_TERMINATION_PHASE = {
    "R": "request", "Q": "queue", "C": "connect", "H": "response_headers", "D": "data",
    "L": "last_data", "T": "tarpit", "-": "closed",
}
_COOKIE_CLIENT = {
    "N": "none", "I": "invalid", "D": "server_down", "V": "valid", "E": "expired",
    "O": "old", "U": "unused",
}
_COOKIE_SERVER = {
    "N": "none", "I": "inserted", "U": "updated", "P": "provided", "R": "rewritten",
    "D": "deleted",
}

_HASH_RUN = re.compile(r"(?:#[0-9A-F]{2})+")
# `is_ip` answers seen before (clients repeat). Fast paths read it directly (`IP_SEEN.get`)
# before calling `is_ip`; only `is_ip` writes it. Bounded small: 65,536 addresses held ~6 MiB
# for no measurable gain over 8,192 (the IPv4 check on a miss is ~0.5 µs).
IP_SEEN: dict[str, bool] = {}
_IP_SEEN_LIMIT = 8192
_IPV4_CHARS = frozenset("0123456789.")
# `ipaddress.IPv4Address`'s rules: four decimal octets, at most 255, no leading zeros (ASCII
# digits only: `[0-9]`, not `\d`).
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")


def _unhash_run(match: re.Match[str]) -> str:
    return bytes.fromhex(match.group().replace("#", "")).decode("utf-8", "backslashreplace")


def unescape_hash(text: str) -> str:
    """`#22` -> `"`, `#C3#A9` -> `é` (HAProxy's log escaping; invalid UTF-8 stays visible)."""
    if "#" not in text:
        return text
    return _HASH_RUN.sub(_unhash_run, text)


def is_ip(text: str) -> bool:
    """A valid IPv4/IPv6 address for Elasticsearch's `ip` type (cached: clients repeat)."""
    known = IP_SEEN.get(text)
    if known is not None:
        return known
    # What ipaddress decides for digits and dots, ~4x faster (client addresses are often
    # new: a cache miss per event).
    if _IPV4.fullmatch(text) is not None:
        valid = True
    elif _IPV4_CHARS.issuperset(text):
        valid = False
    else:
        try:
            ipaddress.ip_address(text)
            valid = True
        except ValueError:
            valid = False
    if len(IP_SEEN) >= _IP_SEEN_LIMIT:
        IP_SEEN.clear()
    IP_SEEN[text] = valid
    return valid


INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def to_int(value: Any) -> int | None:
    """HAProxy numbers: int, `"123"`, `"+123"` (logasap), `"-1"`; None for `-`, garbage and
    anything outside Elasticsearch's `long` (which orjson could not encode either)."""
    if type(value) is int:
        number = value
    elif type(value) is str:
        if len(value) > 24:
            return None
        try:
            # int() accepts the `+` sign HAProxy adds with logasap and redispatch.
            number = int(value)
        except ValueError:
            return None
    elif isinstance(value, bool):
        return int(value)
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        return None
    return number if INT64_MIN <= number <= INT64_MAX else None


def split_uri(uri: str, doc: dict[str, Any], method: str | None = None) -> None:
    """url.original (as logged), url.path and url.query (`#XX` decoded); scheme, domain and
    port for absolute-form targets and for CONNECT's authority-form (`host:port`)."""
    doc[URL_ORIGINAL] = uri
    target = uri
    lowered = uri[:8].lower()
    if lowered[:7] == "http://" or lowered == "https://":
        scheme, _, rest = uri.partition("://")
        authority_end = len(rest)
        for stop in "/?":
            found = rest.find(stop)
            if 0 <= found < authority_end:
                authority_end = found
        doc[URL_SCHEME] = scheme.lower()
        _authority(rest[:authority_end], doc)
        target = rest[authority_end:] or "/"
    elif method == "CONNECT" and target[:1] != "/":
        _authority(target, doc)
        return
    path, _, query = target.partition("?")
    doc[URL_PATH] = unescape_hash(path)
    if query:
        doc[URL_QUERY] = unescape_hash(query)


def _authority(authority: str, doc: dict[str, Any]) -> None:
    host, colon, port = authority.rpartition(":")
    if colon and port.isdigit() and len(port) <= 5 and host:
        doc[URL_DOMAIN] = host.strip("[]")
        doc[URL_PORT] = int(port)
    elif authority:
        doc[URL_DOMAIN] = authority.strip("[]")


class Collected:
    """What the mapper saw that later steps need (timestamps, duration, outcome)."""

    __slots__ = (
        "date", "date_is_t", "date_kind", "duration_ms", "partial", "request_line", "status",
        "termination",
    )

    def __init__(self) -> None:
        self.partial = False  # the body was not read to its end (cut, or JSON partly read)
        self.date: Any = None
        self.date_kind = 0
        self.date_is_t = False
        self.duration_ms: int | None = None
        self.request_line: str | None = None
        self.status: int | None = None
        self.termination: str | None = None


class Naming(Protocol):
    """What a handler needs to know about the mapper calling it."""

    raw_names: bool
    request_names: list[str]
    response_names: list[str]


Handler = Callable[[Naming, str, str, Any, dict[str, Any], Collected, bool], None]


def _int(mapper: Naming, key: str, name: str, value: Any, doc: dict[str, Any],
         seen: Collected, http: bool) -> None:
    number = to_int(value)
    if number is not None:
        doc[name] = number


def _str(mapper: Naming, key: str, name: str, value: Any, doc: dict[str, Any],
         seen: Collected, http: bool) -> None:
    if value != "-" and value != "":
        doc[name] = value


def _list(mapper: Naming, key: str, name: str, value: Any, doc: dict[str, Any],
          seen: Collected, http: bool) -> None:
    if value:
        doc[name] = value


def _duration(mapper: Naming, key: str, name: str, value: Any, doc: dict[str, Any],
              seen: Collected, http: bool) -> None:
    number = to_int(value)
    if number is not None:
        doc[name] = number
        if number >= 0 and (key == "Tt" or seen.duration_ms is None):
            seen.duration_ms = number


def _date(mapper: Naming, key: str, name: str, value: Any, doc: dict[str, Any],
          seen: Collected, http: bool) -> None:
    kind = FIELDS[key][1]
    if mapper.raw_names:
        doc[name] = value
    if type(value) is str:
        if value in ("", "-"):
            return
    elif not (kind == EPOCH and type(value) in (int, float)):
        return
    # The accept date (%t) wins, then the ms date, the zoned date, the epoch; then the first.
    if seen.date is None or key == "t" or (kind < seen.date_kind and not seen.date_is_t):
        seen.date, seen.date_kind = value, kind
        seen.date_is_t = key == "t"


def _address(mapper: Naming, key: str, name: str, value: Any, doc: dict[str, Any],
             seen: Collected, http: bool) -> None:
    if type(value) is not str or value in ("-", ""):
        return
    doc[name] = value
    if not mapper.raw_names and is_ip(value):
        doc[SOURCE_IP if FIELDS[key][1] == SRC_IP else DESTINATION_IP] = value
        add_related_ip(value, doc)


def add_related_ip(address: str, doc: dict[str, Any]) -> None:
    related = doc.get(RELATED_IP)
    if related is None:
        doc[RELATED_IP] = [address]
    elif address not in related:
        related.append(address)


def _status(mapper: Naming, key: str, name: str, value: Any, doc: dict[str, Any],
            seen: Collected, http: bool) -> None:
    status = to_int(value)
    if status is not None and status >= 0:
        doc[name] = status
        seen.status = status


def _frontend(mapper: Naming, key: str, name: str, value: Any, doc: dict[str, Any],
              seen: Collected, http: bool) -> None:
    if type(value) is not str or value in ("-", ""):
        return
    doc[name] = value
    if value[-1] == "~" and not mapper.raw_names:
        doc[FRONTEND_TRANSPORT] = "ssl"


def _bytes(mapper: Naming, key: str, name: str, value: Any, doc: dict[str, Any],
           seen: Collected, http: bool) -> None:
    """%U: http.request.bytes or, on TCP lines, haproxy.bytes_uploaded."""
    number = to_int(value)
    if number is None:
        return
    if mapper.raw_names:
        doc[name] = number
    else:
        doc[name if http else TCP_BYTES_UPLOADED] = number


def _request(mapper: Naming, key: str, name: str, value: Any, doc: dict[str, Any],
             seen: Collected, http: bool) -> None:
    if type(value) is str and value not in ("-", ""):
        doc[name] = value
        if not mapper.raw_names:
            seen.request_line = value


def _http_part(mapper: Naming, key: str, name: str, value: Any, doc: dict[str, Any],
               seen: Collected, http: bool) -> None:
    """%HM, %HU, %HP, %HQ, %HV."""
    if type(value) is not str or value in ("<BADREQ>", "-", ""):
        return
    if mapper.raw_names:
        doc[name] = value
        return
    kind = FIELDS[key][1]
    if kind == METHOD:
        doc[name] = value
    elif kind == VERSION:
        doc[name] = value[5:] if value.startswith("HTTP/") else value
    elif kind == QUERY:
        if value[0] == "?":
            value = value[1:]
        if value:
            doc[name] = unescape_hash(value)
    elif kind == URI:
        lowered = value[:8].lower()
        if lowered[:7] == "http://" or lowered == "https://":
            path = doc.get(URL_PATH)
            split_uri(value, doc)
            if path is not None:
                doc[URL_PATH] = path
        else:
            doc[name] = value
    else:  # PATH
        doc[name] = unescape_hash(value)


def _termination(mapper: Naming, key: str, name: str, value: Any, doc: dict[str, Any],
                 seen: Collected, http: bool) -> None:
    if type(value) is not str or not value:
        return
    if mapper.raw_names:
        doc[name] = value
        return
    record_termination(value, doc, seen)


_TERMINATION_STATE = FIELDS["ts"][0]


def record_termination(value: str, doc: dict[str, Any], seen: Collected) -> None:
    """`haproxy.termination_state` kept raw, and split into cause, phase and cookie flags."""
    if not value:
        return
    fields = TERMINATIONS.get(value)
    if fields is None:
        fields = _termination_fields(value)
        if len(TERMINATIONS) >= 1024:  # 12 x 8 x 9 x 9 states exist; a flood of junk does not
            TERMINATIONS.clear()
        TERMINATIONS[value] = fields
    doc.update(fields)
    seen.termination = value


# A termination state -> its fields, kept by record_termination (fast paths read it
# directly, as they read IP_SEEN, and call record_termination for a state not in it).
TERMINATIONS: dict[str, dict[str, str]] = {}


def _termination_fields(value: str) -> dict[str, str]:
    fields = {_TERMINATION_STATE: value}
    cause = _TERMINATION_CAUSE.get(value[:1])
    if cause:
        fields[TERMINATION_CAUSE] = cause
    phase = _TERMINATION_PHASE.get(value[1:2])
    if phase:
        fields[TERMINATION_PHASE] = phase
    if len(value) >= 4:
        client = _COOKIE_CLIENT.get(value[2])
        if client:
            fields[COOKIE_CLIENT] = client
        server = _COOKIE_SERVER.get(value[3])
        if server:
            fields[COOKIE_SERVER] = server
    return fields


def _capture(mapper: Naming, key: str, name: str, value: Any, doc: dict[str, Any],
             seen: Collected, http: bool) -> None:
    if type(value) is not str:
        return
    if mapper.raw_names:
        doc[name] = value
        return
    names = mapper.request_names if FIELDS[key][1] == CAPTURE_REQUEST else (
        mapper.response_names)
    if value[:1] == "{":
        value = value[1:-1] if value.endswith("}") else value[1:]
    if value in ("", "-"):
        return
    extra: list[str] = []
    for index, part in enumerate(value.split("|")):
        captured = unescape_hash(part)
        if index < len(names):
            if captured:
                doc[names[index]] = captured
        else:
            extra.append(captured)
    if any(extra):
        doc[name] = extra


def _tls_version(mapper: Naming, key: str, name: str, value: Any, doc: dict[str, Any],
                 seen: Collected, http: bool) -> None:
    if type(value) is not str or value in ("-", ""):
        return
    if mapper.raw_names:
        doc[name] = value
        return
    protocol, _, number = value.partition("v")
    if number:
        doc[name] = number
        doc[TLS_PROTOCOL] = protocol.lower()
    else:
        doc[name] = value


def _bool(mapper: Naming, key: str, name: str, value: Any, doc: dict[str, Any],
          seen: Collected, http: bool) -> None:
    if isinstance(value, bool):
        doc[name] = value
        return
    number = to_int(value)
    if number is not None:
        doc[name] = bool(number)


# kind -> the conversion of one value of that kind (the reference every fast path agrees with).
HANDLERS: dict[int, Handler] = {
    STR: _str, INT: _int, SRC_IP: _address, DST_IP: _address, DATE_MS: _date,
    DATE_OFFSET: _date, EPOCH: _date, FRONTEND: _frontend, STATUS: _status,
    REQUEST: _request, URI: _http_part, PATH: _http_part, QUERY: _http_part,
    VERSION: _http_part, METHOD: _http_part, TERMINATION: _termination,
    CAPTURE_REQUEST: _capture, CAPTURE_RESPONSE: _capture, TLS_VERSION: _tls_version,
    BOOL: _bool, BYTES_UPLOADED: _bytes, DURATION: _duration, LIST: _list,
}


def fill_from_request_line(line: str, doc: dict[str, Any]) -> None:
    """Fill method, url.* and http.version from `%r` where `%HM`/`%HU`/... did not."""
    if METHOD_FIELD in doc or VERSION_FIELD in doc or URL_ORIGINAL in doc or URL_PATH in doc \
            or URL_QUERY in doc:
        _fill_around(line, doc)
        return
    # Nothing of the request logged apart: the fields depend on the line alone, and lines
    # repeat (health checks, assets), so they are kept per line.
    fields = _REQUEST_LINES.get(line)
    if fields is None:
        usual = _USUAL_REQUEST.fullmatch(line)
        if usual is not None:  # what `_fill_around` makes of it, in one match
            method, uri, path, query, version = usual.groups()
            fields = {METHOD_FIELD: method, VERSION_FIELD: version, URL_ORIGINAL: uri,
                      URL_PATH: path}
            if query:
                fields[URL_QUERY] = query
        else:
            fields = {}
            _fill_around(line, fields)
        if len(line) <= 512:  # long targets rarely repeat; 4,096 short ones hold ~4 MiB
            if len(_REQUEST_LINES) >= 4096:
                _REQUEST_LINES.clear()
            _REQUEST_LINES[line] = fields
    doc.update(fields)


_REQUEST_LINES: dict[str, dict[str, Any]] = {}
# The usual request line, `GET /path?query HTTP/1.1`: a method, an origin-form target without
# `#XX` escapes (nothing to decode) and a version; `_fill_around` gives the same fields for it
# (tests/parse/test_whole_events.py holds the two equal).
_USUAL_REQUEST = re.compile(r"([^ <][^ ]*+) ((/[^ #?]*+)(?:\?([^ #]*+))?) HTTP/([^ ]*+)")


def _fill_around(line: str, doc: dict[str, Any]) -> None:
    """`fill_from_request_line` keeping what `doc` already has."""
    if line[:1] == "<":  # <BADREQ>
        return
    method, space, rest = line.partition(" ")
    if not space:
        return
    doc.setdefault(METHOD_FIELD, method)
    uri, space, version = rest.rpartition(" ")
    if space and version.startswith("HTTP/"):
        doc.setdefault(VERSION_FIELD, version[5:])
    else:
        uri = rest  # cut by tune.http.logurilen, or HTTP/0.9: no version
    if uri and URL_ORIGINAL not in doc:
        had_path = doc.get(URL_PATH)
        had_query = doc.get(URL_QUERY)
        split_uri(uri, doc, method)
        if had_path is not None:
            doc[URL_PATH] = had_path
        if had_query is not None:
            doc[URL_QUERY] = had_query


_TYPES = {
    STR: "keyword", INT: "long", SRC_IP: "keyword + ip", DST_IP: "keyword + ip",
    DATE_MS: "-> @timestamp", DATE_OFFSET: "-> @timestamp", EPOCH: "-> @timestamp",
    FRONTEND: "keyword", STATUS: "long", REQUEST: "keyword (+ split)", URI: "keyword",
    PATH: "keyword", QUERY: "keyword", VERSION: "keyword", METHOD: "keyword",
    TERMINATION: "keyword (+ split)", CAPTURE_REQUEST: "keyword(s)",
    CAPTURE_RESPONSE: "keyword(s)", TLS_VERSION: "keyword", BOOL: "boolean",
    BYTES_UPLOADED: "long", DURATION: "long (+ event.duration ns)",
    LIST: "keyword(s)",
}


def field_reference() -> str:
    """A Markdown table of every known log-format variable and its document field."""
    lines = ["| variable | field (ecs) | type | meaning |", "|---|---|---|---|"]
    for key, (name, kind) in FIELDS.items():
        meaning = DESCRIPTIONS.get(key, "")
        if key in ALIASES:
            meaning = f"same as `{ALIASES[key]}`"
        lines.append(f"| `{key}` | `{name}` | {_TYPES[kind]} | {meaning} |")
    return "\n".join(lines)
