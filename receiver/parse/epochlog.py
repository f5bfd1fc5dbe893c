"""The epoch-stamped custom format: `[%pid] [%Ts.%ms] ...`, one published layout read by its
whole shape.

Owns reading lines of the custom log-format that logs TCP, TLS and HTTP on one line, stamped
with the epoch instead of a date (published with an AWS deployment guide and quoted in log
analysers' issues; the body of each line is the same up to the backend and server):

    [%pid] [%Ts.%ms] %ac/%fc/%bc/%bq/%sc/%sq/%rc %Tq/%Tw/%Tc/%Tr/%Tt %tsc %ci:%cp %fi:%fp
    %si:%sp %ft %sslc %sslv %{+Q}r %ST %b:%s ...

The part shown is read only when every token has the shape of its place (the seven counts,
the five timers, a termination state from HAProxy's alphabet, three `address:port`, a
frontend, a cipher and a TLS version or `-`, a whole quoted request, a status, `%b:%s` split
at its one colon, and no second token of that shape after it). What follows (captures, sizes,
a unique id: it differs between copies of the format) is kept in order, unnamed, under
`extra_tokens`. Anything else is not this format: None, and the next reader decides.
"""

from __future__ import annotations

import re
from typing import Any

from receiver.parse.traffic import (
    FRONTEND,
    STATUS,
    TERMINATION_HTTP,
    TLS_CIPHER,
    TLS_VERSION,
    TrafficLine,
    client_values,
    matcher,
)

_NUM = r"[+-]?\d{1,18}+"
_COUNT = r"\d{1,18}+"
_PORT = r"\d{1,18}+"
# An address as HAProxy writes `%ci:%cp` (IPv4, IPv6 without brackets, a unix socket).
_ADDRESS = rf"[0-9A-Za-z.:_-]+:{_PORT}"
# `%b:%s`: split at its one colon (a name holding one more is not read as this layout).
_NAME = r"[A-Za-z0-9_.-]++|<[A-Za-z0-9_.:-]+>"
# The head, up to the backend and server: a group per variable, in key order. The frontend is
# never shaped like an address (one more address inserted would shift the names).
_HEAD = re.compile(
    rf"\[(?P<pid>\d{{1,10}})\] \[(?P<Ts>\d{{9,11}}(?:\.\d{{3}})?)\] "
    rf"(?P<ac>{_COUNT})/(?P<fc>{_COUNT})/(?P<bc>{_COUNT})/(?P<bq>{_COUNT})/(?P<sc>{_COUNT})"
    rf"/(?P<sq>{_COUNT})/(?P<rc>\+?{_COUNT}) "
    rf"(?P<Tq>{_NUM})/(?P<Tw>{_NUM})/(?P<Tc>{_NUM})/(?P<Tr>{_NUM})/(?P<Tt>{_NUM}) "
    rf"(?P<tsc>{TERMINATION_HTTP}) (?P<client>{_ADDRESS}) (?P<frontend>{_ADDRESS}) "
    rf"(?P<server>{_ADDRESS}) (?!{_ADDRESS} )(?P<ft>{FRONTEND}) (?P<sslc>{TLS_CIPHER}) "
    rf"(?P<sslv>{TLS_VERSION}) \"(?P<r>[^\"]*+)\" (?P<ST>{STATUS}) "
    rf"(?P<b>{_NAME}):(?P<s>{_NAME})(?: |$)",
    re.ASCII,
)
_HEAD_KEYS = ("pid", "Ts", "ac", "fc", "bc", "bq", "sc", "sq", "rc", "Tq", "Tw", "Tc", "Tr",
              "Tt", "tsc")
_is_backend_server = matcher(rf"(?:{_NAME}):(?:{_NAME})")
# The tail's tokens: a quoted value, a `{capture}` (blanks inside), or a plain token.
_TAIL_TOKEN = re.compile(r'"[^"]*"|\{[^{}]*\}|\S+')


def read(body: str) -> TrafficLine | None:
    """The line's variables (format `httplog`: a custom format derived from it), or None when
    the body does not have this layout's whole head."""
    if body[:1] != "[":
        return None
    head = _HEAD.match(body)
    if head is None:
        return None
    keys: list[str] = list(_HEAD_KEYS)
    values: list[Any] = [head[key] for key in _HEAD_KEYS]
    client_values(head["client"], keys, values)
    for address, host_key, port_key in ((head["frontend"], "fi", "fp"),
                                        (head["server"], "si", "sp")):
        host, _, port = address.rpartition(":")
        keys += (host_key, port_key)
        values += (host, port)
    tail = _TAIL_TOKEN.findall(body, head.end())
    if tail and _is_backend_server(tail[0]):
        return None  # two `backend:server` tokens: which one is the real one?
    keys += ("ft", "sslc", "sslv", "r", "ST", "b", "s")
    values += (head["ft"], head["sslc"], head["sslv"], head["r"], head["ST"], head["b"],
               head["s"])
    extra = [token[1:-1] if token[:1] == '"' else token for token in tail]
    if extra:
        keys.append("extra_tokens")
        values.append(extra)
    return "httplog", tuple(keys), values, False
