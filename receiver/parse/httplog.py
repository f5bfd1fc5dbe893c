"""HAProxy's standard HTTP log lines: `option httplog`, `option httpslog`, `option httplog clf`.

Owns: reading those lines by position into HAProxy's variable names (`ci`, `cp`, `t`, `ft`,
`b`, `s`, `TR`, `Tw`, `Tc`, `Tr`, `Ta`, `ST`, `B`, `CC`, `CS`, `tsc`, `ac`..`rc`, `sq`, `bq`,
`hr`, `hs`, `r`, and httpslog's TLS fetches), values left as text for `fields.FieldMapper`.
Also the shared start of traffic lines, `ci:cp [date] `, used to route to tcplog and to the
error line. Layouts (HAProxy 2.6 doc/configuration.txt 8.2.3-8.2.5):

    httplog:  %ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc %ac/%fc/%bc/%sc/%rc
              %sq/%bq %hr %hs %{+Q}r
    httpslog: httplog + %[fc_err]/%[ssl_fc_err,hex]/%[ssl_c_err]/%[ssl_c_ca_err]/
              %[ssl_fc_is_resumed] %[ssl_fc_sni]/%sslv/%sslc
    clf:      %{+Q}o %{-Q}ci - - [%trg] %r %ST %B "" "" %cp %ms %ft %b %s %TR %Tw %Tc %Tr %Ta %tsc
              %ac %fc %bc %sc %rc %sq %bq %{+Q}hr %{+Q}hs

A line cut by `len` keeps every token that is still whole and reports itself truncated.
"""

from __future__ import annotations

from typing import Any

from receiver.parse import tcplog
from receiver.parse.fields import (
    DATE_MS,
    Collected,
    FieldMapper,
    fill_from_request_line,
    is_ip,
    record_termination,
)

_HTTP_TOKENS = ("ft", "bs", "timers", "ST", "B", "CC", "CS", "tsc", "conns", "queues")
_TIMERS_HTTP = ("TR", "Tw", "Tc", "Tr", "Ta")
_TLS_ERRORS = ("fc_err", "ssl_fc_err", "ssl_c_err", "ssl_c_ca_err", "ssl_fc_is_resumed")
_CLF_TOKENS = (
    "ST", "B", "", "", "cp", "ms", "ft", "b", "s", "TR", "Tw", "Tc", "Tr", "Ta", "tsc",
    "ac", "fc", "bc", "sc", "rc", "sq", "bq",
)

TrafficLine = tuple[str, dict[str, Any], bool]  # (format, fields, truncated)


def split_client(client: str, raw: dict[str, Any]) -> None:
    """`127.0.0.1:5000`, `::1:5000`, `unix:1` -> ci, cp."""
    host, colon, port = client.rpartition(":")
    if colon and host:
        raw["ci"] = host
        raw["cp"] = port
    else:
        raw["ci"] = client


def client_and_date(body: str) -> tuple[int, int] | None:
    """Where a `ci:cp [date] ` start is: (the space before `[`, the index of `] `, -1 when the
    date is cut short); None when the line does not start that way."""
    space = body.find(" ")
    if space <= 0 or body[space + 1 : space + 2] != "[":
        return None
    return space, body.find("] ", space + 2, space + 40)


def parse_traffic(body: str, response_captures_only: bool) -> TrafficLine | None:
    """httplog/httpslog/tcplog/error line by their shared `ci:cp [date] ` start; None if not."""
    bounds = client_and_date(body)
    if bounds is None:
        return None
    space, close = bounds
    raw: dict[str, Any] = {}
    if close < 0:
        # Cut inside or right after the date: only the client is whole.
        if len(body) - space > 40 or ":" not in body[:space]:
            return None
        split_client(body[:space], raw)
        return "httplog", raw, True
    split_client(body[:space], raw)
    raw["t"] = body[space + 2 : close]
    rest = body[close + 2 :]
    first_end = rest.find(" ")
    first = rest[:first_end] if first_end >= 0 else rest
    if first.endswith(":"):
        return None  # the error line: messages.py
    parts = rest.split(" ", 10)
    if len(parts) >= 3 and parts[2].count("/") == 2:
        return tcplog.parse_rest(parts, raw)
    return _httplog(parts, raw, response_captures_only)


def _httplog(parts: list[str], raw: dict[str, Any], response_only: bool) -> TrafficLine:
    if len(parts) == 11:
        return _httplog_whole(parts, raw, response_only)
    return _httplog_cut(parts, raw)


def _httplog_whole(parts: list[str], raw: dict[str, Any], response_only: bool) -> TrafficLine:
    """The usual case, straight-line: every positional field is present."""
    frontend, backend_server, timers, status, size, cookie_in, cookie_out, state, conns, \
        queues, rest = parts
    raw["ft"] = frontend
    tcplog.put_backend_server(backend_server, raw)
    timer_values = timers.split("/")
    if len(timer_values) == 5:
        raw["TR"], raw["Tw"], raw["Tc"], raw["Tr"], raw["Ta"] = timer_values
    else:
        raw.update(zip(_TIMERS_HTTP, timer_values, strict=False))
    raw["ST"] = status
    raw["B"] = size
    raw["CC"] = cookie_in
    raw["CS"] = cookie_out
    raw["tsc"] = state
    conn_values = conns.split("/")
    if len(conn_values) == 5:
        raw["ac"], raw["fc"], raw["bc"], raw["sc"], raw["rc"] = conn_values
    else:
        raw.update(zip(tcplog.CONNS, conn_values, strict=False))
    server_queue, _, backend_queue = queues.partition("/")
    raw["sq"] = server_queue
    if backend_queue:
        raw["bq"] = backend_queue
    return _httplog_tail(rest, raw, response_only)


def _httplog_cut(parts: list[str], raw: dict[str, Any]) -> TrafficLine:
    """A line cut by `len` before the request: every token but the last is whole."""
    whole = len(parts) - 1
    for index in range(whole):
        name = _HTTP_TOKENS[index]
        token = parts[index]
        if index == 1:
            tcplog.put_backend_server(token, raw)
        elif index == 2:
            raw.update(zip(_TIMERS_HTTP, token.split("/"), strict=False))
        elif index == 8:
            raw.update(zip(tcplog.CONNS, token.split("/"), strict=False))
        elif index == 9:
            tcplog.put_queues(token, raw)
        else:
            raw[name] = token
    return "httplog", raw, True


def _httplog_tail(rest: str, raw: dict[str, Any], response_only: bool) -> TrafficLine:
    """Captures, the quoted request, and httpslog's TLS fields."""
    captures: list[str] = []
    while rest[:1] == "{":
        close = rest.find("}")
        if close < 0:
            return "httplog", raw, True
        captures.append(rest[: close + 1])
        rest = rest[close + 2 :]
    if len(captures) == 2:
        raw["hr"], raw["hs"] = captures
    elif captures:
        raw["hs" if response_only else "hr"] = captures[0]
    if rest[:1] != '"':
        return "httplog", raw, not rest
    close = rest.find('"', 1)
    if close < 0:
        partial = rest[1:]
        method, space, _ = partial.partition(" ")
        if space:
            raw["HM"] = method
        return "httplog", raw, True
    raw["r"] = rest[1:close]
    tail = rest[close + 1 :].strip()
    if not tail:
        return "httplog", raw, False
    return "httpslog", raw, _httpslog_tail(tail, raw)


def _httpslog_tail(tail: str, raw: dict[str, Any]) -> bool:
    """Fill the TLS fields; True when the tail was cut short."""
    errors, space, names = tail.partition(" ")
    values = errors.split("/")
    raw.update(zip(_TLS_ERRORS, values, strict=False))
    if not space:
        return True
    sni, _, rest = names.partition("/")
    if sni != "-":
        raw["ssl_fc_sni"] = sni
    version, slash, cipher = rest.partition("/")
    if version:
        raw["sslv"] = version
    if slash and cipher:
        raw["sslc"] = cipher
    return len(values) < 5 or not slash


def parse_clf(body: str, response_only: bool) -> TrafficLine | None:
    """`option httplog clf` lines; None when the body is not one."""
    marker = body.find(" - - [")
    if marker <= 0 or (" " in body[:marker] and not body.startswith('"')):
        return None
    raw: dict[str, Any] = {}
    client = body[:marker]
    # `%{+Q}o %{-Q}ci`: the client address may be preceded by quoted fields.
    raw["ci"] = client.rsplit(" ", 1)[-1].strip('"')
    close = body.find("]", marker)
    if close < 0:
        return "clf", raw, True
    date = body[marker + 6 : close]
    rest = body[close + 1 :].lstrip(" ")
    if rest[:1] != '"':
        return "clf", raw, True
    request_end = rest.find('"', 1)
    if request_end < 0:
        return "clf", raw, True
    raw["r"] = rest[1:request_end]
    tokens = rest[request_end + 1 :].strip(" ").split(" ", len(_CLF_TOKENS))
    truncated = len(tokens) <= len(_CLF_TOKENS)
    whole = len(tokens) - 1 if truncated else len(_CLF_TOKENS)
    for index in range(whole):
        name = _CLF_TOKENS[index]
        if name:
            raw[name] = tokens[index].strip('"')
    ms = raw.pop("ms", None)
    if len(date) >= 20:
        if isinstance(ms, str) and ms.isdigit() and len(ms) <= 3:
            raw["trg"] = f"{date[:20]}.{ms.zfill(3)}{date[20:]}"
        else:
            raw["trg"] = date
    if not truncated:
        captures = _quoted(tokens[-1])
        if len(captures) == 2:
            raw["hr"], raw["hs"] = captures
        elif len(captures) == 1:
            raw["hs" if response_only else "hr"] = captures[0]
    return "clf", raw, truncated


def _quoted(text: str) -> list[str]:
    """The `"..."` values of a space-separated tail (`"" ""`, `"{a|b}" "{c}"`)."""
    values: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        start = text.find('"', i)
        if start < 0:
            break
        end = text.find('"', start + 1)
        if end < 0:
            break
        values.append(text[start + 1 : end])
        i = end + 1
    return values


# -- fast path ---------------------------------------------------------------------------------
# The usual httplog/httpslog line in ECS mode, written straight into the document: no
# intermediate dict of variable names. Anything unusual (a cut line, `-` or `+` in a number,
# an unknown layout) returns None before touching the document, and the general path runs.


def fast_httplog(
    body: str, doc: dict[str, Any], mapper: FieldMapper, response_only: bool
) -> tuple[str, bool, Collected] | None:
    """(format, truncated, collected) for a whole standard line; None to use the general path."""
    bounds = client_and_date(body)
    if bounds is None or bounds[1] < 0:
        return None
    space, close = bounds
    parts = body[close + 2 :].split(" ", 10)
    if len(parts) != 11:
        return None
    frontend, backend_server, timers, status, size, cookie_in, cookie_out, state, conns, \
        queues, rest = parts
    timer_values = timers.split("/")
    conn_values = conns.split("/")
    queue_values = queues.split("/")
    if len(timer_values) != 5 or len(conn_values) != 5 or len(queue_values) != 2:
        return None
    # Under 19 characters, no value in a token can exceed a `long`; longer ones (rare) take
    # the general path, which checks each value.
    if len(timers) > 18 or len(conns) > 18 or len(queues) > 18 or len(size) > 18:
        return None
    host, colon, port_text = body[:space].rpartition(":")
    if not colon or not frontend or frontend[-1] == ":":
        return None
    try:
        port = int(port_text)
        request_ms, queue_ms, connect_ms, response_ms, active_ms = map(int, timer_values)
        status_code = int(status)
        read = int(size)
        active, frontend_conns, backend_conns, server_conns, retries = map(int, conn_values)
        server_queue, backend_queue = map(int, queue_values)
    except ValueError:
        return None
    if not (0 <= port < 65536 and len(status) < 6):
        return None
    seen = Collected()
    doc["source.address"] = host
    if is_ip(host):
        doc["source.ip"] = host
    doc["source.port"] = port
    if frontend[-1] == "~":
        doc["haproxy.frontend_transport"] = "ssl"
        frontend = frontend[:-1]
    doc["haproxy.frontend_name"] = frontend
    backend, _, server = backend_server.partition("/")
    doc["haproxy.backend_name"] = backend
    if server:
        doc["haproxy.server_name"] = server
    doc["haproxy.time_request_ms"] = request_ms
    doc["haproxy.time_queue_ms"] = queue_ms
    doc["haproxy.time_connect_ms"] = connect_ms
    doc["haproxy.time_response_ms"] = response_ms
    doc["haproxy.time_active_ms"] = active_ms
    if active_ms >= 0:
        seen.duration_ms = active_ms
    if status_code >= 0:
        doc["http.response.status_code"] = status_code
        seen.status = status_code
    doc["http.response.bytes"] = read
    if cookie_in != "-":
        doc["haproxy.http.request.captured_cookie"] = cookie_in
    if cookie_out != "-":
        doc["haproxy.http.response.captured_cookie"] = cookie_out
    doc["haproxy.connections.active"] = active
    doc["haproxy.connections.frontend"] = frontend_conns
    doc["haproxy.connections.backend"] = backend_conns
    doc["haproxy.connections.server"] = server_conns
    doc["haproxy.connections.retries"] = retries
    doc["haproxy.server_queue"] = server_queue
    doc["haproxy.backend_queue"] = backend_queue
    record_termination(state, doc, seen)
    seen.date = body[space + 2 : close]
    seen.date_kind = DATE_MS
    tail: dict[str, Any] = {}
    log_format, _, truncated = _httplog_tail(rest, tail, response_only)
    if len(tail) == 1 and "r" in tail:  # no captures, plain httplog
        line = tail["r"]
        if line and line != "-":
            doc["haproxy.http.request.raw_request_line"] = line
            seen.request_line = line
            fill_from_request_line(line, doc)
    elif tail:
        tail_seen = mapper.map(tail, doc, http=True)
        seen.request_line = tail_seen.request_line
    return log_format, truncated, seen
