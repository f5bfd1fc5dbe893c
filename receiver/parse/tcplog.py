"""HAProxy's `option tcplog` lines, read by position into HAProxy's variable names.

Owns the part after `ci:cp [date] ` (split by `httplog.parse_traffic`, which routes here when
the timers field has three parts). Layout (doc/configuration.txt 8.2.2):

    %ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq

e.g. `127.0.0.1:34668 [25/Nov/2026:18:15:41.188] fe_tcp be_tcp/t1 1/0/1 162 -- 1/1/0/0/0 0/0`.
"""

from __future__ import annotations

from typing import Any

_TIMERS = ("Tw", "Tc", "Tt")
CONNS = ("ac", "fc", "bc", "sc", "rc")


def put_backend_server(token: str, raw: dict[str, Any]) -> None:
    """`%b/%s` (shared with httplog): the server only when there is one."""
    backend, _, server = token.partition("/")
    raw["b"] = backend
    if server:
        raw["s"] = server


def put_queues(token: str, raw: dict[str, Any]) -> None:
    """`%sq/%bq` (shared with a cut httplog line): `bq` only when the `/` is there."""
    queue = token.split("/")
    raw["sq"] = queue[0]
    if len(queue) > 1:
        raw["bq"] = queue[1]


def parse_rest(parts: list[str], raw: dict[str, Any]) -> tuple[str, dict[str, Any], bool]:
    """`parts`: the line after the date split on spaces; fills `raw`, returns the line."""
    count = len(parts)
    truncated = count < 7
    whole = count - 1 if truncated else 7
    for index in range(whole):
        token = parts[index]
        if index == 0:
            raw["ft"] = token
        elif index == 1:
            put_backend_server(token, raw)
        elif index == 2:
            raw.update(zip(_TIMERS, token.split("/"), strict=False))
        elif index == 3:
            raw["B"] = token
        elif index == 4:
            raw["ts"] = token
        elif index == 5:
            raw.update(zip(CONNS, token.split("/"), strict=False))
        else:
            put_queues(token, raw)
    if count > 7 and parts[7:] != [""]:
        raw["extra"] = " ".join(parts[7:])
    return "tcplog", raw, truncated
