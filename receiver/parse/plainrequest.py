"""Traffic lines whose request is written unquoted: `... [%tr] %HM %HU %HV %ST %B {%hr}`.

Owns reading a custom format that writes the request's method, target and version as three
bare tokens after the date (a layout shared on a Q&A site for log analysers and quoted in their
issues, as `%fi:%fp %ci [%tr] %HM %HU %HV %ST %B %hr`), then the status and the bytes:

    CLIENT [DATE] METHOD TARGET HTTP/x.y STATUS BYTES [{captures}] ...
    ADDRESS:PORT CLIENT [DATE] METHOD TARGET HTTP/x.y STATUS BYTES [{captures}] ...

Read only when every token has its place's shape: the client (an IP address, with a port when
it stands alone, without one after an `address:port`, which is kept unnamed: whose address it
is the line does not say), the date, an upper-case method, a target without blanks, an HTTP
version, a status of three digits, the bytes, then a `{capture}` or nothing (a bare token
there may have shifted the status and bytes: not read). What follows the captures is kept,
unnamed, in `extra_tokens`.
"""

from __future__ import annotations

import re
from typing import Any

from receiver.parse.fields import is_ip
from receiver.parse.traffic import BYTES, DATE_MS, STATUS, TrafficLine, client_values, start_values

_PORT = r"\d{1,5}"
_LINE = re.compile(
    rf"(?:(?P<address>\S+:{_PORT}) (?P<bare>[^\s\[]+)"
    rf"|(?P<client>\S+):(?P<port>{_PORT})) "
    rf"\[(?P<date>{DATE_MS})\] (?P<method>[A-Z]{{3,10}}) (?P<target>[^\s\"{{}}]+) "
    rf"(?P<version>HTTP/\d(?:\.\d)?) (?P<status>{STATUS}) (?P<bytes>{BYTES})(?: |$)",
    re.ASCII,
)
# The tail's tokens: a `{capture}` (blanks inside), a quoted value, or a plain token.
_TAIL_TOKEN = re.compile(r'\{[^{}]*\}|"[^"]*"|\S+')


def read(body: str, response_only: bool) -> TrafficLine | None:
    """The line's variables (format `httplog`: a custom format derived from it), or None."""
    match = _LINE.match(body)
    if match is None:
        return None
    keys: list[str] = []
    values: list[Any] = []
    extra: list[str] = []
    if match["address"] is not None:
        if not is_ip(match["bare"]):
            return None
        extra.append(match["address"])
        keys.append("ci")
        values.append(match["bare"])
        start_values(None, match["date"], keys, values)
    else:
        if not is_ip(match["client"]):
            return None
        client_values(f"{match['client']}:{match['port']}", keys, values)
        start_values(None, match["date"], keys, values)
    keys += ("r", "ST", "B")
    values += (f"{match['method']} {match['target']} {match['version']}", match["status"],
               match["bytes"])
    tail = _TAIL_TOKEN.findall(body, match.end())
    if tail and tail[0][:1] != "{":
        return None
    captures = [token for token in tail[:2] if token[:1] == "{"]
    if len(captures) == 2:
        keys += ("hr", "hs")
    elif captures:
        keys.append("hs" if response_only else "hr")
    values += captures
    extra += tail[len(captures) :]
    if extra:
        keys.append("extra_tokens")
        values.append(extra)
    return "httplog", tuple(keys), values, False
