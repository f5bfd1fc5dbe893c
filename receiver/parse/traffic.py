"""HAProxy's traffic lines, `ci:cp [date] ...`: httplog, httpslog, tcplog, and custom formats
derived from them, read by their structure instead of by counting tokens.

Owns turning such a body into HAProxy's variable names and values (`ci`, `cp`, `t`, `ft`, `b`,
`s`, the timers, `ST`, `B`, `CC`, `CS`, `tsc`/`ts`, the connection counts, the queues, the
captures `hr`/`hs`, the request `r` and httpslog's TLS fetches), handed as one key layout and
its values to `mapper.FieldMapper.map_values`. Layouts (doc/configuration.txt 8.2.2-8.2.4):

    tcplog:   %ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq
    httplog:  %ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc
              %ac/%fc/%bc/%sc/%rc %sq/%bq %hr %hs %{+Q}r
    httpslog: httplog + %[fc_err]/%[ssl_fc_err,hex]/%[ssl_c_err]/%[ssl_c_ca_err]/
              %[ssl_fc_is_resumed] %[ssl_fc_sni]/%sslv/%sslc

How a line is read (`read`): the connection counts followed by the queues (`1/1/0/0/0 0/0`) are
the anchor; from there the termination state, the cookies, bytes, status and timers are
fixed by position and each must have its shape (a 4-letter state from HAProxy's alphabet,
five timers, a 3-digit status...). Before the timers come the frontend and `backend/server`;
any other token there, after the queues, or after the request, is kept in order under
`extra_tokens` (`haproxy.extra_tokens`), never given a name. Runs of blanks count as one. When
a part cannot be placed without guessing (two candidate anchors, two `backend/server`-shaped
tokens, a token before the frontend, a token shaped like timers or queues beside the real
ones), the body is not read as a traffic line at all: the caller keeps it whole and tags it.
A line cut by `len` keeps every token that is still whole and in its place, and says it was
cut. Every number-kind value handed on is integer text checked here (`[+-]?`, at most 18
digits), which lets the mapper convert it with a bare `int()`.

The standard layouts are matched first by one pattern each (`_STANDARD_HTTP`,
`_STANDARD_TCP`), composed of the same token shapes with a group per variable, which yields
exactly what the structural reading yields for them (tests compare the two on every line).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

# -- token shapes (the one definition every reading here uses) -------------------------------
# Possessive (`{1,18}+`, `++`) where what follows can never be part of the run: the same
# matches, without keeping backtracking points (the standard pattern runs 8 % faster).
_NUM = r"[+-]?\d{1,18}+"  # timers: -1 = phase not reached, + = logasap
_COUNT = r"\d{1,18}+"
_NAME = r"[A-Za-z0-9_.:-]++"  # proxy and server names (HAProxy's invalid_char())
_SPECIAL = r"<[A-Za-z0-9_.:-]+>"  # applets and internal proxies: <NOSRV>, <STATS>, <OCSP-UPDATE>
FRONTEND = rf"(?:{_NAME}~?|{_SPECIAL})"
SERVER_NAME = rf"(?:{_NAME}|{_SPECIAL})"  # a backend or a server
BACKEND_SERVER = rf"{SERVER_NAME}/{SERVER_NAME}"
# Slash-separated tokens, part by part (the standard pattern below names each part).
TIMERS_HTTP_KEYS = ("TR", "Tw", "Tc", "Tr", "Ta")
TIMERS_TCP_KEYS = ("Tw", "Tc", "Tt")
CONNECTION_KEYS = ("ac", "fc", "bc", "sc", "rc")
QUEUE_KEYS = ("sq", "bq")
TLS_ERROR_KEYS = ("fc_err", "ssl_fc_err", "ssl_c_err", "ssl_c_ca_err", "ssl_fc_is_resumed")
TLS_NAME_KEYS = ("ssl_fc_sni", "sslv", "sslc")
_PARTS = {
    **dict.fromkeys(("TR", "Tw", "Tc", "Tr", "Ta", "Tt"), _NUM),
    **dict.fromkeys(("ac", "fc", "bc", "sc", "sq", "bq"), _COUNT),
    "rc": rf"\+?{_COUNT}",  # + = redispatch
    "fc_err": r"\d{1,10}+", "ssl_fc_err": r"[0-9A-Fa-f]{1,16}+", "ssl_c_err": r"\d{1,10}+",
    "ssl_c_ca_err": r"\d{1,10}+", "ssl_fc_is_resumed": "[01]",
    "ssl_fc_sni": r"[^/ ]*", "sslv": r"(?:TLS|SSL|DTLS)v[0-9.]{1,4}|-",
    "sslc": r"[A-Z0-9][A-Za-z0-9_-]*|-",
}


def _slashed(keys: tuple[str, ...], named: bool = False) -> str:
    """The pattern of a token made of these parts, each in a group named after it or not."""
    return "/".join(f"(?P<{key}>{_PARTS[key]})" if named else f"(?:{_PARTS[key]})"
                    for key in keys)


TIMERS_HTTP = _slashed(TIMERS_HTTP_KEYS)
TIMERS_TCP = _slashed(TIMERS_TCP_KEYS)
CONNECTIONS = _slashed(CONNECTION_KEYS)
QUEUES = _slashed(QUEUE_KEYS)
TLS_ERRORS = _slashed(TLS_ERROR_KEYS)
TLS_NAMES = _slashed(TLS_NAME_KEYS)
TLS_VERSION = _PARTS["sslv"]  # `%sslv` and `%sslc` alone (a custom format's tokens)
TLS_CIPHER = _PARTS["sslc"]
STATUS = r"-1|\d{3}"
BYTES = r"\+?\d{1,18}+"
# HAProxy's alphabets (log.c: sess_term_cond, sess_fin_state, sess_cookie, sess_set_cookie).
TERMINATION_TCP = r"[-LcCsSPRIDKU][-RCHDLQT]"
TERMINATION_HTTP = rf"{TERMINATION_TCP}[-NIDVEOU7][-NPDIRU67]"
DATE_MS = r"\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?"
DATE = rf"{DATE_MS}(?: [+-]\d{{4}})?"  # `[%T]` in a custom format carries a zone
PORT = r"\d{1,18}+"


def matcher(pattern: str) -> Callable[[str], Any]:
    """A whole-token check for `pattern` (ASCII: HAProxy writes ASCII digits)."""
    return re.compile(pattern, re.ASCII).fullmatch


_is_frontend = matcher(FRONTEND)
_is_backend_server = matcher(BACKEND_SERVER)
_is_timers_http = matcher(TIMERS_HTTP)
_is_timers_tcp = matcher(TIMERS_TCP)
_is_status = matcher(STATUS)
_is_bytes = matcher(BYTES)
_is_termination_tcp = matcher(TERMINATION_TCP)
_is_termination_http = matcher(TERMINATION_HTTP)
_is_connections = matcher(CONNECTIONS)
_is_queues = matcher(QUEUES)
_is_tls_errors = matcher(TLS_ERRORS)
_is_tls_names = matcher(TLS_NAMES)
_is_date = matcher(DATE)

_is_port = matcher(PORT)
# Positions, from the timers on, of the two standard middles (cookies are any token).
_HTTP_MIDDLE = ("timers", "ST", "B", "CC", "CS", "tsc")
_TCP_MIDDLE = ("timers", "B", "ts")

# (format, keys, values, truncated): what `read` hands to `FieldMapper.map_values`. Every
# number-kind value in it is checked integer text (see `compiled.compile_shape`).
TrafficLine = tuple[str, tuple[str, ...], Sequence[Any], bool]


# -- the start: `ci:cp [date] ` ----------------------------------------------------------------

def read_start(body: str) -> tuple[str | None, str, int] | None:
    """(client token or None, date text, offset after `] `) for a body that starts with
    `ci:cp [date]` (or `[date]`: a format without the client); None otherwise."""
    if body[:1] == "[":
        client = None
        open_at = 0
    else:
        space = body.find(" ")
        if space <= 0 or body[space + 1 : space + 2] != "[" or ":" not in body[:space]:
            return None
        client = body[:space]
        open_at = space + 1
    close = body.find("]", open_at + 1, open_at + 40)
    if close < 0:
        return None
    date = body[open_at + 1 : close]
    if _is_date(date) is None:
        return None
    after = close + 1
    if body[after : after + 1] == " ":
        after += 1
    elif after < len(body):
        return None
    return client, date, after


def start_values(client: str | None, date: str, keys: list[str], values: list[Any]) -> None:
    """`ci`/`cp` (when there is a client) and the date, appended to `keys`/`values`."""
    if client is not None:
        client_values(client, keys, values)
    keys.append("T" if " " in date else "t")  # `[%T]` in a custom format carries a zone
    values.append(date)


def client_values(client: str, keys: list[str], values: list[Any]) -> None:
    """`127.0.0.1:5000`, `::1:5000`, `unix:1` -> `ci` and `cp`, appended to `keys`/`values`."""
    host, colon, port = client.rpartition(":")
    if colon and host:
        keys.append("ci")
        values.append(host)
        if _is_port(port):  # `-:-`, a redacted `xx`: no port
            keys.append("cp")
            values.append(port)
    else:
        keys.append("ci")
        values.append(client)


_DATE_START = re.compile(r"\[\d{0,2}(?:/[A-Za-z]{0,3}(?:/\d{0,4}(?::[\d:.]*)?)?)?", re.ASCII)


def cut_in_date(body: str) -> TrafficLine | None:
    """A line cut inside the date (`ci:cp [25/Nov/20`): only the client is whole."""
    space = body.find(" ")
    if space <= 0 or len(body) - space > 40 or "]" in body[space:]:
        return None
    host, colon, port = body[:space].rpartition(":")
    if not (colon and host and (_is_port(port) or port == "-")):
        return None
    if _DATE_START.fullmatch(body, space + 1) is None:
        return None
    if port == "-":
        return "httplog", ("ci",), [host], True
    return "httplog", ("ci", "cp"), [host, port], True


# -- the standard layouts, in one pattern each -------------------------------------------------
# The whole line, a group per variable in key order: the groups that matched are the values.

_STANDARD_START = rf"(?P<ci>\S+):(?P<cp>{PORT}) \[(?P<t>{DATE_MS})\] "
_STANDARD_NAMES = (
    rf"(?P<ft>{FRONTEND}) (?P<b>{SERVER_NAME})/(?P<s>{SERVER_NAME}) "
)
_STANDARD_HTTP = re.compile(
    _STANDARD_START + _STANDARD_NAMES
    + rf"{_slashed(TIMERS_HTTP_KEYS, True)} (?P<ST>{STATUS}) (?P<B>{BYTES}) "
    + r"(?P<CC>[^ {\"]\S*+) (?P<CS>[^ {\"]\S*+) "
    + rf"(?P<tsc>{TERMINATION_HTTP}) {_slashed(CONNECTION_KEYS, True)} "
    + _slashed(QUEUE_KEYS, True)
    # Possessive (`*+`): a cut request is seen at once, not backtracked over character by
    # character (a 1 KiB line cut inside its URI took 15 µs to fail, now 2).
    + r"(?: (?P<hr>\{[^{}]*+\}))?(?: (?P<hs>\{[^{}]*+\}))? \"(?P<r>[^\"]*+)\""
    + rf"(?: {_slashed(TLS_ERROR_KEYS, True)} {_slashed(TLS_NAME_KEYS, True)})?",
    re.ASCII,
)
_STANDARD_TCP = re.compile(
    _STANDARD_START + _STANDARD_NAMES
    + rf"{_slashed(TIMERS_TCP_KEYS, True)} (?P<B>{BYTES}) (?P<ts>{TERMINATION_TCP}) "
    + rf"{_slashed(CONNECTION_KEYS, True)} {_slashed(QUEUE_KEYS, True)}",
    re.ASCII,
)
_TCP_KEYS = tuple(_STANDARD_TCP.groupindex)
_HTTP_HEAD_KEYS = tuple(_STANDARD_HTTP.groupindex)[: _STANDARD_HTTP.groupindex["hr"] - 1]
# (captures, response captures only, TLS fields) -> the key layout of a standard HTTP line.
_HTTP_KEYS = {
    (captures, response_only, tls): (
        *_HTTP_HEAD_KEYS,
        *(("hr", "hs") if captures == 2 else ("hs",) if captures and response_only
          else ("hr",) if captures else ()),
        "r",
        *((*TLS_ERROR_KEYS, *TLS_NAME_KEYS) if tls else ()),
    )
    for captures in (0, 1, 2) for response_only in (False, True) for tls in (False, True)
}


def _standard(body: str, response_only: bool) -> TrafficLine | None:
    """The whole standard httplog/httpslog/tcplog layout, or None (the structural reading
    then decides): exactly what the structural reading gives for it."""
    match = _STANDARD_HTTP.fullmatch(body)
    if match is not None:
        groups = match.groups()
        # groups: 23 up to the queues, hr, hs, r, then the 8 TLS fields (all or none).
        tls = groups[26] is not None
        if groups[23] is None:
            values = groups[:23] + groups[25:] if tls else groups[:23] + groups[25:26]
            captures = 0
        elif groups[24] is None:
            values = groups[:24] + groups[25:] if tls else groups[:24] + groups[25:26]
            captures = 1
        else:
            values = groups if tls else groups[:26]
            captures = 2
        keys = _HTTP_KEYS[(captures, response_only, tls)]
        return ("httpslog" if tls else "httplog"), keys, values, False
    match = _STANDARD_TCP.fullmatch(body)
    if match is not None:
        return "tcplog", _TCP_KEYS, match.groups(), False
    return None


def _put_captures(captures: list[str], keys: list[str], values: list[Any],
                  response_only: bool) -> None:
    if len(captures) == 2:
        keys += ("hr", "hs")
        values += captures
    elif captures:
        keys.append("hs" if response_only else "hr")
        values.append(captures[0])


# -- the structural reading --------------------------------------------------------------------

def read(body: str, response_only: bool, standard: bool = True) -> TrafficLine | None:
    """A traffic line's variables, or None when the body is not one that can be placed.
    `standard`: try the one-pattern reading of the standard layouts first (it gives what the
    structural reading gives; tests switch it off to compare)."""
    space = body.find(" ")
    if space < 0 or (body.find(":", 0, space) < 0 and body[:1] != "["):
        return None  # neither `ci:cp ` nor `[date]` first: not a traffic line, even cut
    if standard:
        line = _standard(body, response_only)
        if line is not None:
            return line
    start = read_start(body)
    if start is None:
        return cut_in_date(body)
    client, date, at = start
    rest = body[at:]
    first = rest[: rest.find(" ")] if " " in rest else rest
    if first.endswith(":"):
        return None  # `frontend/bind: message`: the error line (messages.py)
    keys: list[str] = []
    values: list[Any] = []
    start_values(client, date, keys, values)
    return _structural(rest, keys, values, response_only)


_TAIL_START = re.compile(r'(?:^| )[{"]')


def _structural(rest: str, keys: list[str], values: list[Any], response_only: bool
                ) -> TrafficLine | None:
    found = _TAIL_START.search(rest)
    head_end = len(rest) if found is None else found.start()
    tokens = rest[:head_end].split()
    tail = rest[head_end:].strip(" ")
    anchor = _anchor(tokens)
    if anchor is None:
        return None if tail else _cut_head(tokens, keys, values)
    http, timers_at, conns_at = anchor
    extra: list[str] = []
    if not _names(tokens[:timers_at], keys, values, extra):
        return None
    middle = tokens[timers_at : conns_at]
    if http:
        timers, status, size, cookie_in, cookie_out, state = middle
        keys += (*TIMERS_HTTP_KEYS, "ST", "B", "CC", "CS", "tsc")
        values += (*timers.split("/"), status, size, cookie_in, cookie_out, state)
    else:
        timers, size, state = middle
        keys += (*TIMERS_TCP_KEYS, "B", "ts")
        values += (*timers.split("/"), size, state)
    keys += (*CONNECTION_KEYS, *QUEUE_KEYS)
    values += (*tokens[conns_at].split("/"), *tokens[conns_at + 1].split("/"))
    after = tokens[conns_at + 2 :]
    if after and _is_queues(after[0]):
        return None  # `counts queues X/Y`: which of the two pairs is the queues?
    extra += after
    log_format = "httplog" if http else "tcplog"
    truncated = False
    if http:
        log_format, truncated = _tail(tail, keys, values, extra, response_only)
    elif tail:
        extra.append(tail)  # tcplog has no captures or request: keep what follows as is
    if extra:
        keys.append("extra_tokens")
        values.append(extra)
    return log_format, tuple(keys), values, truncated


def _anchor(tokens: list[str]) -> tuple[bool, int, int] | None:
    """(http, index of the timers, index of the connection counts) of the one place where the
    counts and queues are preceded by a whole, well-shaped middle; None if none or several."""
    found: tuple[bool, int, int] | None = None
    for at in range(2, len(tokens) - 1):
        token = tokens[at]
        if token.count("/") != 4 or _is_connections(token) is None or _is_queues(
                tokens[at + 1]) is None:
            continue
        for http, middle, timers_ok, state_ok in (
            (True, _HTTP_MIDDLE, _is_timers_http, _is_termination_http),
            (False, _TCP_MIDDLE, _is_timers_tcp, _is_termination_tcp),
        ):
            timers_at = at - len(middle)
            if timers_at < 0 or state_ok(tokens[at - 1]) is None:
                continue
            if timers_ok(tokens[timers_at]) is None:
                continue
            if http and not (_is_status(tokens[timers_at + 1]) and _is_bytes(tokens[timers_at + 2])):
                continue
            if not http and _is_bytes(tokens[timers_at + 1]) is None:
                continue
            if found is not None:
                return None  # two readings: do not guess
            found = (http, timers_at, at)
    return found


def _names(head: list[str], keys: list[str], values: list[Any], extra: list[str]) -> bool:
    """Frontend and `backend/server` from the tokens before the timers: the one token shaped
    `backend/server`, and at most one token (the frontend) before it; later ones are extra
    (without a `backend/server`, the one token there, if any, is extra too).
    False when that cannot be decided (an extra shaped like timers may be the real timers,
    with the token taken for them an insertion)."""
    placed = [i for i, token in enumerate(head) if "/" in token and _is_backend_server(token)]
    if not placed and len(head) <= 1 and not any(
            _is_timers_http(token) or _is_timers_tcp(token) for token in head):
        # A custom format without `%b/%s`: the one name before the timers may be the
        # frontend or the backend; it is kept, unnamed, with the extra tokens.
        extra += head
        return True
    if len(placed) != 1 or placed[0] > 1:
        return False
    for token in head[placed[0] + 1 :]:
        if _is_timers_http(token) or _is_timers_tcp(token):
            return False
    at = placed[0]
    if at == 1:
        if _is_frontend(head[0]) is None:
            return False
        keys.append("ft")
        values.append(head[0])
    backend, _, server = head[at].partition("/")
    keys += ("b", "s")
    values += (backend, server)
    extra += head[at + 1 :]
    return True


def _tail(tail: str, keys: list[str], values: list[Any], extra: list[str],
          response_only: bool) -> tuple[str, bool]:
    """Captures, the quoted request, httpslog's TLS fields; (format, truncated)."""
    items = _tail_items(tail)
    request_at = next((i for i, (kind, _) in enumerate(items) if kind in ('"', "cut")), None)
    # No request: the line was cut before it (or after whole captures).
    before = items if request_at is None else items[:request_at]
    if all(kind == "{" for kind, _ in before) and len(before) <= 2:
        _put_captures([text for _, text in before], keys, values, response_only)
    else:
        extra += [text for kind, text in before if kind != "cut{"]
    if request_at is None:
        return "httplog", True
    kind, request = items[request_at]
    if kind == "cut":
        # Cut inside the request line: the method, and the target as far as it goes (a
        # version cut short is dropped; the tag says the line is cut).
        method, space, rest = request[1:].partition(" ")
        if space:
            target = rest.partition(" ")[0]
            keys.append("r")
            values.append(f"{method} {target}" if target else method)
            if not target:
                keys.append("HM")
                values.append(method)
        return "httplog", True
    keys.append("r")
    values.append(request[1:-1])
    after = [text for _, text in items[request_at + 1 :]]
    log_format = "httplog"
    # httpslog's two tokens, both whole and in order (one alone could be anything), and no
    # third of their shapes after them (which pair would be the real one?).
    if len(after) >= 2 and _is_tls_errors(after[0]) and _is_tls_names(after[1]) and not any(
            _is_tls_errors(token) or _is_tls_names(token) for token in after[2:]):
        log_format = "httpslog"
        keys += (*TLS_ERROR_KEYS, *TLS_NAME_KEYS)
        values += (*after[0].split("/"), *after[1].split("/"))
        after = after[2:]
    extra += after
    return log_format, False


def _tail_items(tail: str) -> list[tuple[str, str]]:
    """The tail as (kind, text) items: `{` a whole capture, `"` a whole quoted value, `cut` a
    quoted value cut short, `cut{` a capture cut short, `` a plain token (anything else up to
    the next blank)."""
    items: list[tuple[str, str]] = []
    i = 0
    n = len(tail)
    while i < n:
        c = tail[i]
        if c == " ":
            i += 1
            continue
        if c in '{"':
            end = tail.find("}" if c == "{" else '"', i + 1)
            if end < 0:
                items.append(("cut" if c == '"' else "cut{", tail[i:]))
                break
            # HAProxy writes `{` inside a capture as #7B: one there ends no capture.
            if c == '"' or tail.find("{", i + 1, end) < 0:
                items.append((c, tail[i : end + 1]))
                i = end + 1
                continue
        end = tail.find(" ", i)
        if end < 0:
            end = n
        items.append(("", tail[i:end]))
        i = end
    return items


def _cut_head(tokens: list[str], keys: list[str], values: list[Any]) -> TrafficLine | None:
    """A line cut by `len` before the request: every token but the last (which may be cut)
    must be whole and in its standard place, and the timers among them (without them a few
    name-shaped tokens prove nothing: only the client and the date are kept); None when a
    token is not what its place holds."""
    whole = tokens[:-1]
    if len(whole) < 3 or not (_is_timers_http(whole[2]) or _is_timers_tcp(whole[2])):
        return "httplog", tuple(keys), values, True
    http = _is_timers_tcp(whole[2]) is None
    layout = ("ft", "bs", "timers", "ST", "B", "CC", "CS", "tsc", "conns", "queues") if http \
        else ("ft", "bs", "timers", "B", "ts", "conns", "queues")
    if len(whole) >= len(layout):
        return None
    checks = {
        "ft": _is_frontend, "bs": _is_backend_server, "B": _is_bytes, "ST": _is_status,
        "timers": _is_timers_http if http else _is_timers_tcp, "conns": _is_connections,
        "tsc": _is_termination_http, "ts": _is_termination_tcp, "queues": _is_queues,
    }
    for slot, token in zip(layout, whole, strict=False):
        check = checks.get(slot)
        if check is not None and check(token) is None:
            return None
        if slot == "bs":
            backend, _, server = token.partition("/")
            keys += ("b", "s")
            values += (backend, server)
        elif slot == "timers":
            keys += TIMERS_HTTP_KEYS if http else TIMERS_TCP_KEYS
            values += token.split("/")
        elif slot == "conns":
            keys += CONNECTION_KEYS
            values += token.split("/")
        else:
            keys.append(slot)
            values.append(token)
    return ("httplog" if http else "tcplog"), tuple(keys), values, True
