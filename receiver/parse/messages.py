"""Plain-text lines: the connection error line, the legacy "Connect from" line, and HAProxy's
own messages (servers going up/down, backends without servers, proxies stopping, alerts).

Owns recognising them and pulling out the names they carry. Everything here keeps the text as
`message`; a body that matches none of these and no other format is a parse failure (decided
by the caller).

    error line:   127.0.0.1:44842 [25/Nov/2026:18:23:38.397] fe_https/1: SSL handshake failure
    connect:      Connect from 10.0.0.1:5000 to 10.0.0.2:80 (fe_main/HTTP)
    server state: Server be_chk/s1 is DOWN, reason: Layer4 connection problem, ...
    backend:      backend be_chk has no server available!
    proxy:        Proxy fe_x stopped (cumulated conns: FE: 82, BE: 0).
"""

from __future__ import annotations

import re
from typing import Any

from receiver.parse.fields import name_of
from receiver.parse.traffic import CONNECTIONS, QUEUES, client_values, read_start, start_values

_SERVER_STATE = re.compile(
    r"^(?:Backup )?Server (?P<backend>[^/ ]+)/(?P<server>\S+) is (?P<state>(?:going )?"
    r"(?:UP|DOWN|NOLB|DRAIN|MAINT)(?:/READY)?(?: for maintenance)?)[ ,.(]"
)
_REASON = re.compile(r"reason: +(?P<reason>[^,]+)")
_CHECK_DURATION = re.compile(r"check duration: (?P<ms>\d{1,18})ms")
_NO_SERVER = re.compile(r"^backend (?P<backend>\S+) has no server available!")
_PROXY = re.compile(
    r"^(?:Proxy|Frontend|Backend) (?P<proxy>\S+) (?P<action>stopped|started|paused|resumed)"
    r"(?: \((?:cumulated conns: FE: (?P<fe>\d{1,18}), BE: (?P<be>\d{1,18})"
    r"|FE: (?P<fe_old>\d{1,18}) conns, BE: (?P<be_old>\d{1,18}) conns)\))?"
)
_CONNECT = re.compile(
    r"^Connect from (?P<client>\S+) to (?P<frontend_addr>\S+) +\((?P<proxy>[^/)]+)/(?P<mode>\w+)\)"
)
# Prefixes of other messages HAProxy writes to its log (startup, reload, health, resolvers).
_KNOWN_PREFIXES = (
    "Server ", "Backup Server ", "backend ", "Proxy ", "Frontend ", "Backend ", "Health check",
    "Stopping ", "Pausing ", "Resuming ", "Enabling ", "Disabling ", "Starting ", "Loading ",
    "[WARNING]", "[ALERT]", "[NOTICE]", "Some ", "Agent check", "<OCSP-UPDATE> ",
)
# An error line's message is prose; one that carries connection counts and queues is a
# traffic line with a token ending in `:` put in front of it, not an error line.
_TRAFFIC_INSIDE = re.compile(rf"(?:^| ){CONNECTIONS} {QUEUES}(?: |$)")
_BACKEND = name_of("b")
_SERVER_STATE_FIELD = "haproxy.server_state"
_SERVER = name_of("s")


def parse_error_line(body: str) -> tuple[dict[str, Any], str] | None:
    """`ci:cp [date] frontend/bind: message` -> (log-format variables, the message), or None
    if not one."""
    start = read_start(body)
    if start is None:
        return None
    client, date, at = start
    name, colon, message = body[at:].partition(": ")
    if not colon or " " in name or not name or _TRAFFIC_INSIDE.search(message):
        return None
    if message.partition(" ")[0].endswith(":"):
        return None  # `a/b: c/d: text`: which one is `frontend/bind`?
    keys: list[str] = []
    values: list[Any] = []
    start_values(client, date, keys, values)
    raw = dict(zip(keys, values, strict=True))
    frontend, _, bind = name.partition("/")
    raw["ft"] = frontend
    if bind:
        raw["bind_name"] = bind
    return raw, message


def parse_connect(body: str) -> dict[str, Any] | None:
    """The legacy `Connect from ci:cp to fi:fp (proxy/MODE)` line, or None."""
    match = _CONNECT.match(body)
    if match is None:
        return None
    keys: list[str] = []
    values: list[Any] = []
    client_values(match["client"], keys, values)
    raw = dict(zip(keys, values, strict=True))
    destination, _, port = match["frontend_addr"].rpartition(":")
    if destination:
        raw["fi"] = destination
        raw["fp"] = port
    raw["f"] = match["proxy"]
    raw["mode"] = match["mode"]
    return raw


def parse_message(body: str, doc: dict[str, Any]) -> bool:
    """HAProxy's own messages (fills `message` and the names they carry); True if one."""
    if not body.startswith(_KNOWN_PREFIXES):
        return False
    doc["message"] = body
    match = _SERVER_STATE.match(body)
    if match:
        doc[_BACKEND] = match["backend"]
        doc[_SERVER] = match["server"]
        doc[_SERVER_STATE_FIELD] = match["state"]
        reason = _REASON.search(body)
        if reason:
            doc["haproxy.check.reason"] = reason["reason"]
        duration = _CHECK_DURATION.search(body)
        if duration:
            doc["haproxy.check.duration_ms"] = int(duration["ms"])
        return True
    match = _NO_SERVER.match(body)
    if match:
        doc[_BACKEND] = match["backend"]
        doc[_SERVER_STATE_FIELD] = "NO_SERVER"
        return True
    match = _PROXY.match(body)
    if match:
        doc["haproxy.proxy_name"] = match["proxy"]
        doc["haproxy.proxy_state"] = match["action"]
        frontend_total = match["fe"] or match["fe_old"]
        if frontend_total is not None:
            doc["haproxy.connections.frontend_total"] = int(frontend_total)
            doc["haproxy.connections.backend_total"] = int(match["be"] or match["be_old"])
        return True
    return True
