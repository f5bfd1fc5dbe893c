"""Plain-text lines: the connection error line, the legacy "Connect from" line, and HAProxy's
own messages (servers going up/down, health checks, backends without servers, resolvers
changing a server's address, proxies starting and stopping, alerts), sent to its log or written
to its stderr (`[WARNING]  (301) : ...`, before HAProxy 2.4 `[ALERT] 035/080447 (1) : ...`).

Owns recognising them and pulling out the names and numbers they carry, typed, with their ECS
categorisation (`event.category`/`type`/`outcome`), the same whichever way they came. Everything
here keeps the text as `message`; a body that matches none of these and no other format is a
parse failure (decided by the caller).

    error line:   127.0.0.1:44842 [25/Nov/2026:18:23:38.397] fe_https/1: SSL handshake failure
    connect:      Connect from 10.0.0.1:5000 to 10.0.0.2:80 (fe_main/HTTP)
    server state: Server be_chk/s1 is DOWN, reason: Layer4 connection problem, ...
    check:        Health check for server be/s1 failed, reason: ..., status: 0/2 DOWN.
    backend:      backend be_chk has no server available!
    resolver:     be/s1 changed its IP from 10.0.0.1 to 10.0.0.2 by DNS cache.
    proxy:        Proxy fe_x stopped (cumulated conns: FE: 82, BE: 0).
    stderr:       [WARNING]  (301) : Server be/s1 is DOWN, ...
"""

from __future__ import annotations

import re
from typing import Any

from receiver.parse.fields import EVENT_CATEGORY, EVENT_OUTCOME, EVENT_TYPE, name_of
from receiver.parse.syslog import LEVEL
from receiver.parse.traffic import CONNECTIONS, QUEUES, client_values, read_start, start_values

_SERVER_STATE = re.compile(
    r"^(?:Backup )?Server (?P<backend>[^/ ]+)/(?P<server>\S+)(?: \('(?P<fqdn>[^']*)'\))? is "
    r"(?P<state>(?:going )?(?:UP|DOWN|NOLB|DRAIN|MAINT)(?:/READY)?(?: for maintenance)?)[ ,.(]"
)
# The other changes server.c reports, by their wording -> the state the server is then in.
_SERVER_CHANGE = re.compile(
    r"^(?:Backup )?Server (?P<backend>[^/ ]+)/(?P<server>\S+) (?P<change>was DOWN and now enters "
    r"maintenance|enters drain state|administratively READY|is leaving forced maintenance but "
    r"remains in maintenance|remains in drain mode)[ ,.(]")
_CHANGED_STATES = {"was DOWN and now enters maintenance": "MAINT",
                   "enters drain state": "DRAIN", "administratively READY": "READY",
                   "is leaving forced maintenance but remains in maintenance": "MAINT",
                   "remains in drain mode": "DRAIN"}
_REASON = re.compile(r"reason: +(?P<reason>[^,]+)")
_CHECK_DURATION = re.compile(r"check duration: (?P<ms>\d{1,18})ms")
_CHECK_INFO = re.compile(r', info: "(?P<info>[^"]*)"')
_CHECK_CODE = re.compile(r", code: (?P<code>\d{1,3})[,.]")
# What a state change says of the backend afterwards (server.c's messages).
_SERVERS_LEFT = re.compile(
    r"\. (?P<active>\d{1,9}) active and (?P<backup>\d{1,9}) backup servers (?:left|online)")
_SESSIONS_DOWN = re.compile(
    r" (?P<active>\d{1,18}) sessions active, (?P<requeued>\d{1,18}) requeued, "
    r"(?P<remaining>\d{1,18}) remaining in queue")
_SESSIONS_UP = re.compile(
    r" (?P<requeued>\d{1,18}) sessions requeued, (?P<total>\d{1,18}) total in queue")
# `Health check for [backup ]server B/S succeeded|failed, ..., status: 1/3 UP.` (check.c).
_CHECK = re.compile(
    r"^(?P<kind>Health|Agent) check for (?:backup )?server (?P<backend>[^/ ]+)/(?P<server>\S+) "
    r"(?P<result>succeeded|failed|conditionally succeeded)[,.]")
_CHECK_STATUS = re.compile(
    r", status: (?P<health>\d{1,9})/(?P<max>\d{1,9}) (?P<state>UP|DOWN|DRAIN)\.?$")
_NO_SERVER = re.compile(
    r"^(?:backend|proxy) (?:'(?P<quoted>[^']+)'|(?P<backend>\S+)) has no server available!")
# The resolvers giving a server another address (resolvers.c / server.c).
_IP_CHANGED = re.compile(
    r"^(?P<backend>[^/ ]+)/(?P<server>\S+) changed its IP from (?P<old>\S+) to (?P<new>\S+) "
    r"by (?P<by>.+?)\.?$")
_FQDN_CHANGED = re.compile(
    r"^(?P<backend>[^/ ]+)/(?P<server>\S+) changed its FQDN from (?P<old>\S+) to "
    r"(?P<new>[^\s.]\S*?)\.?$")
_PROXY = re.compile(
    r"^(?:Proxy|Frontend|Backend) (?P<proxy>\S+) (?P<action>stopped|started|paused|resumed)"
    r"(?: \((?:cumulated conns: FE: (?P<fe>\d{1,18}), BE: (?P<be>\d{1,18})"
    r"|FE: (?P<fe_old>\d{1,18}) conns, BE: (?P<be_old>\d{1,18}) conns)\))?"
)
# HAProxy's own stderr: `[WARNING]  (301) : text`; HAProxy before 2.4 put the day of the year
# and the time between (`[ALERT] 035/080447 (1) : `).
_STDERR = re.compile(
    r"\[(?P<level>EMERG|ALERT|CRIT|ERR|WARNING|NOTICE|INFO|DEBUG)\] +"
    r"(?:(?P<date>\d{3}/\d{6}) +)?\((?P<pid>\d{1,10})\) : ")
_CONNECT = re.compile(
    r"^Connect from (?P<client>\S+) to (?P<frontend_addr>\S+) +\((?P<proxy>[^/)]+)/(?P<mode>\w+)\)"
)
# Prefixes of other messages HAProxy writes to its log (startup, reload, health, resolvers).
_KNOWN_PREFIXES = (
    "Server ", "Backup Server ", "backend ", "Proxy ", "Frontend ", "Backend ", "Health check",
    "Stopping ", "Pausing ", "Resuming ", "Enabling ", "Disabling ", "Starting ", "Loading ",
    "[WARNING]", "[ALERT]", "[NOTICE]", "Some ", "Agent check", "<OCSP-UPDATE> ",
)
_LEVELS = {"EMERG": "emerg", "ALERT": "alert", "CRIT": "crit", "ERR": "err",
           "WARNING": "warning", "NOTICE": "notice", "INFO": "info", "DEBUG": "debug"}
# ECS categorisation of HAProxy's own messages (shared tuples: documents only read them).
_CATEGORY = EVENT_CATEGORY
_TYPE = EVENT_TYPE
_OUTCOME = EVENT_OUTCOME
_HOST_CHANGE = {_CATEGORY: ("host",), _TYPE: ("change",)}
_CHECK_INFO_EVENT = {_CATEGORY: ("network",), _TYPE: ("info",)}
_PROXY_TYPES = {"started": ("start",), "stopped": ("end",), "paused": ("change",),
                "resumed": ("change",)}
_LEVEL_FIELD = LEVEL
_PID = name_of("pid")
# An error line's message is prose; one that carries connection counts and queues is a
# traffic line with a token ending in `:` put in front of it, not an error line.
_TRAFFIC_INSIDE = re.compile(rf"(?:^| ){CONNECTIONS} {QUEUES}(?: |$)")
_BACKEND = name_of("b")
_SERVER_STATE_FIELD = "haproxy.server_state"
_SERVER = name_of("s")
_SERVER_IP = name_of("si")
_REQUEUED = "haproxy.sessions.requeued"
_FQDN = "haproxy.server_fqdn"


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
    """HAProxy's own messages, from its log or its stderr (fills `message`, the names and
    numbers they carry, and their ECS categorisation); True if one."""
    text = body
    stderr = _STDERR.match(body) if body[:1] == "[" else None
    if stderr is not None:
        # The header's level and pid, when there is one, are the same process's: kept.
        doc.setdefault(_LEVEL_FIELD, _LEVELS[stderr["level"]])
        doc.setdefault(_PID, int(stderr["pid"]))
        text = body[stderr.end() :]
    elif not body.startswith(_KNOWN_PREFIXES) and not (
            (body.startswith("proxy ") and _NO_SERVER.match(body))
            or (" changed its IP from " in body and _IP_CHANGED.match(body))
            or (" changed its FQDN from " in body and _FQDN_CHANGED.match(body))):
        return False
    doc["message"] = body
    if text.startswith(("Server ", "Backup Server ")):
        _server_state(text, doc)
    elif text.startswith(("Health check ", "Agent check ")):
        _check(text, doc)
    elif text.startswith(("backend ", "proxy ")):
        match = _NO_SERVER.match(text)
        if match:
            doc[_BACKEND] = match["quoted"] or match["backend"]
            doc[_SERVER_STATE_FIELD] = "NO_SERVER"
            doc.update(_HOST_CHANGE)
            doc[_OUTCOME] = "failure"
    elif text.startswith(("Proxy ", "Frontend ", "Backend ")):
        match = _PROXY.match(text)
        if match:
            doc["haproxy.proxy_name"] = match["proxy"]
            doc["haproxy.proxy_state"] = match["action"]
            frontend_total = match["fe"] or match["fe_old"]
            if frontend_total is not None:
                doc["haproxy.connections.frontend_total"] = int(frontend_total)
                doc["haproxy.connections.backend_total"] = int(match["be"] or match["be_old"])
            doc[_CATEGORY] = ("process",)
            doc[_TYPE] = _PROXY_TYPES[match["action"]]
    elif (match := _FQDN_CHANGED.match(text)) is not None:
        doc[_BACKEND] = match["backend"]
        doc[_SERVER] = match["server"]
        doc[_FQDN] = match["new"]
        doc.update(_HOST_CHANGE)
    else:
        match = _IP_CHANGED.match(text)
        if match:
            doc[_BACKEND] = match["backend"]
            doc[_SERVER] = match["server"]
            doc[_SERVER_IP] = match["new"]
            if match["old"] != "(none)":
                doc["haproxy.server_previous_ip"] = match["old"]
            doc["haproxy.resolved_by"] = match["by"]
            doc.update(_HOST_CHANGE)
    return True


def _server_state(text: str, doc: dict[str, Any]) -> None:
    """`Server B/S is DOWN, reason: ..., check duration: 0ms. 0 active and 0 backup servers
    left. 0 sessions active, 0 requeued, 0 remaining in queue.` and its UP/MAINT/DRAIN kin."""
    match = _SERVER_STATE.match(text)
    if not match:
        change = _SERVER_CHANGE.match(text)
        if change:
            doc[_BACKEND] = change["backend"]
            doc[_SERVER] = change["server"]
            doc[_SERVER_STATE_FIELD] = _CHANGED_STATES[change["change"]]
            doc.update(_HOST_CHANGE)
        return
    doc[_BACKEND] = match["backend"]
    doc[_SERVER] = match["server"]
    state = match["state"]
    doc[_SERVER_STATE_FIELD] = state
    if match["fqdn"]:
        doc[_FQDN] = match["fqdn"]
    _check_details(text, doc)
    servers = _SERVERS_LEFT.search(text)
    if servers:
        doc["haproxy.servers.active"] = int(servers["active"])
        doc["haproxy.servers.backup"] = int(servers["backup"])
    sessions = _SESSIONS_DOWN.search(text)
    if sessions:
        doc["haproxy.sessions.active"] = int(sessions["active"])
        doc[_REQUEUED] = int(sessions["requeued"])
        doc["haproxy.queue.remaining"] = int(sessions["remaining"])
    else:
        sessions = _SESSIONS_UP.search(text)
        if sessions:
            doc[_REQUEUED] = int(sessions["requeued"])
            doc["haproxy.queue.total"] = int(sessions["total"])
    doc.update(_HOST_CHANGE)
    if state.endswith("DOWN"):
        doc[_OUTCOME] = "failure"
    elif state.startswith("UP"):
        doc[_OUTCOME] = "success"


def _check(text: str, doc: dict[str, Any]) -> None:
    """`Health check for server B/S failed, reason: ..., check duration: 1ms, status: 0/2
    DOWN.`: the result, and how far the server is from changing state."""
    match = _CHECK.match(text)
    if not match:
        return
    doc[_BACKEND] = match["backend"]
    doc[_SERVER] = match["server"]
    doc["haproxy.check.type"] = match["kind"].lower()
    result = match["result"]
    doc["haproxy.check.result"] = result
    _check_details(text, doc)
    status = _CHECK_STATUS.search(text)
    if status:
        doc["haproxy.check.health"] = int(status["health"])
        doc["haproxy.check.health_max"] = int(status["max"])
        doc[_SERVER_STATE_FIELD] = status["state"]
    doc.update(_CHECK_INFO_EVENT)
    doc[_OUTCOME] = "failure" if result == "failed" else "success"


def _check_details(text: str, doc: dict[str, Any]) -> None:
    reason = _REASON.search(text)
    if reason:
        doc["haproxy.check.reason"] = reason["reason"]
    info = _CHECK_INFO.search(text)
    if info:
        doc["haproxy.check.info"] = info["info"]
    code = _CHECK_CODE.search(text)
    if code:
        doc["haproxy.check.code"] = int(code["code"])
    duration = _CHECK_DURATION.search(text)
    if duration:
        doc["haproxy.check.duration_ms"] = int(duration["ms"])
