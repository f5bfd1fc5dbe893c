"""HAProxy's Common Log Format lines: `option httplog clf` and `option tcplog clf` (3.1+).

Owns reading them into HAProxy's variable names, each token checked for the shape of its
place (a line that does not fit is not read as CLF at all). Layouts (src/log.c, `+Q` quotes
text values, `-Q` leaves the client bare):

    httplog clf: %{+Q}o %{-Q}ci - - [%trg] %r %ST %B "" "" %cp %ms %ft %b %s %TR %Tw %Tc %Tr
                 %Ta %tsc %ac %fc %bc %sc %rc %sq %bq %CC %CS %hrl %hsl
    tcplog clf:  %{+Q}o %{-Q}ci - - [%T] "TCP " 000 %B "" "" %cp %ms %ft %b %s %Th %Tw %Tc %Tt
                 %U %ts-- %ac %fc %bc %sc %rc %sq %bq "" ""

The date has no milliseconds; `%ms` is merged into it. The header captures (`%hrl`, `%hsl`:
one quoted value per `capture` line) can only be told apart with the names configured in
`parse.capture_request_headers`/`capture_response_headers`; without them they are kept under
`haproxy.extra_tokens`. A line cut by `len` keeps its whole tokens.

Shorter CLF (custom formats): a line that ends right after `%B` is the common log format's own
end and is read whole; one whose tokens after the request stop fitting the layout keeps the
common part (`%ci [%trg] %r %ST %B`, each in its shape) when only quoted values follow `%B`
(a custom format's `%{+Q}` values: referrer, user agent...), those kept unnamed in
`haproxy.extra_tokens`. A bare token after `%B` is not read: it may be an insertion that
shifted the status and bytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from receiver.parse.traffic import (
    BYTES,
    DATE,
    DATE_MS,
    FRONTEND,
    SERVER_NAME,
    STATUS,
    TERMINATION_HTTP,
    TERMINATION_TCP,
    TrafficLine,
    matcher,
)

_SIGNED = r"[+-]?\d{1,18}"  # timers and byte counts (-1 when unknown)
_UNSIGNED = r"\+?\d{1,18}"  # connection counts and queues
_MS_DIGITS = r"\d{1,3}"
_NUM = matcher(_SIGNED)
_COUNT = matcher(_UNSIGNED)
_PORT = matcher(r"\d{1,18}|-")
_MS = matcher(_MS_DIGITS)
_NAME = matcher(SERVER_NAME)
_DATE = matcher(DATE)  # `[%trg]`, or `[%tr]` in a custom format
_CHECKS: dict[str, Callable[[str], Any]] = {
    "ST": matcher(STATUS), "B": matcher(BYTES),
    "ft": matcher(FRONTEND), "b": _NAME, "s": _NAME, "cp": _PORT, "ms": _MS,
    "tsc": matcher(TERMINATION_HTTP),
    "ts": matcher(TERMINATION_TCP + "--"),
    "": lambda token: token == "",
}
# After the request: the place of each token (`""`: a literal empty quoted value).
_HTTP = ("ST", "B", "", "", "cp", "ms", "ft", "b", "s", "TR", "Tw", "Tc", "Tr", "Ta", "tsc",
         "ac", "fc", "bc", "sc", "rc", "sq", "bq", "CC", "CS")
_TCP = ("000", "B", "", "", "cp", "ms", "ft", "b", "s", "Th", "Tw", "Tc", "Tt", "U", "ts",
        "ac", "fc", "bc", "sc", "rc", "sq", "bq", "", "")
# The places HAProxy quotes (`+Q`): a token quoted where it should not be, or bare where it
# should be quoted, means the tokens are not where the layout says.
_QUOTED = frozenset(("", "ft", "b", "s", "CC", "CS"))
_TIMERS_AND_COUNTS = frozenset(("TR", "Tw", "Tc", "Tr", "Ta", "Th", "Tt", "U"))
_CONNECTION_COUNTS = frozenset(("ac", "fc", "bc", "sc", "rc", "sq", "bq"))
_TOKEN = re.compile(r'"[^"]*"?|\S+')


def _plan(layout: tuple[str, ...]) -> list[tuple[str, bool, Callable[[str], Any] | None]]:
    """Each place of a layout: (variable, quoted by HAProxy, the check of its text)."""
    plan = []
    for slot in layout:
        check = _CHECKS.get(slot)
        if slot in _TIMERS_AND_COUNTS:
            check = _NUM
        elif slot in _CONNECTION_COUNTS:
            check = _COUNT
        elif slot in ("CC", "CS", "000"):
            check = None
        plan.append((slot, slot in _QUOTED, check))
    return plan


_HTTP_PLAN = _plan(_HTTP)
_TCP_PLAN = _plan(_TCP)
# The standard `option httplog clf` line, whole and without header captures, in one pattern
# built from the same checks: what the reading below gives for it.
_STANDARD = re.compile(
    rf'(?P<ci>[^ "]+) - - \[(?P<date>{DATE_MS} [+-]\d{{4}})\] "(?P<r>[^"]*)" (?P<ST>{STATUS})'
    rf' (?P<B>{BYTES}) "" "" (?P<cp>\d{{1,18}}) (?P<ms>{_MS_DIGITS}) "(?P<ft>{FRONTEND})"'
    rf' "(?P<b>{SERVER_NAME})" "(?P<s>{SERVER_NAME})" '
    + " ".join(rf"(?P<{key}>{_SIGNED})" for key in ("TR", "Tw", "Tc", "Tr", "Ta"))
    + rf" (?P<tsc>{TERMINATION_HTTP}) "
    + " ".join(rf"(?P<{key}>{_UNSIGNED})" for key in ("ac", "fc", "bc", "sc", "rc", "sq", "bq"))
    + r' "(?P<CC>[^"]*)" "(?P<CS>[^"]*)"',
    re.ASCII,
)
_STANDARD_KEYS = ("ci", "trg", "r", *(key for key in _HTTP if key not in ("", "ms")))


def read(body: str, request_captures: int, response_captures: int, standard: bool = True
         ) -> TrafficLine | None:
    """A CLF line's variables, or None when the body is not one. `request_captures` /
    `response_captures`: how many header captures each side has configured (-1: unknown).
    `standard`: try the one-pattern reading first (tests switch it off to compare)."""
    marker = body.find(" - - [")
    if marker <= 0:
        return None
    fast = _STANDARD.fullmatch(body) if standard else None
    if fast is not None and fast["ST"] != "000":  # `"TCP " 000`: tcplog clf, read below
        groups = fast.groups()
        date, ms = groups[1], groups[6]
        return "clf", _STANDARD_KEYS, [groups[0], f"{date[:20]}.{ms.zfill(3)}{date[20:]}",
                                       *groups[2:6], *groups[7:]], False
    if " " in body[:marker] and not body.startswith('"'):
        return None
    keys: list[str] = ["ci"]
    # `%{+Q}o %{-Q}ci`: the client address may be preceded by quoted fields.
    values: list[Any] = [body[:marker].rsplit(" ", 1)[-1].strip('"')]
    close = body.find("]", marker)
    if close < 0:
        return "clf", tuple(keys), values, True
    date = " ".join(body[marker + 6 : close].split())
    rest = body[close + 1 :].lstrip(" ")
    if rest[:1] != '"':
        return "clf", tuple(keys), values, True
    request_end = rest.find('"', 1)
    if request_end < 0:
        return "clf", tuple(keys), values, True
    request = rest[1:request_end]
    tokens = _TOKEN.findall(rest[request_end + 1 :])
    tcp = request == "TCP " and tokens[:1] == ["000"]
    layout = _TCP if tcp else _HTTP
    plan = _TCP_PLAN if tcp else _HTTP_PLAN
    last = tokens[-1] if tokens else ""
    last_cut = last[:1] == '"' and (len(last) == 1 or last[-1] != '"')
    if last_cut:
        tokens.pop()
    if not tcp and len(tokens) == 2 and not last_cut:
        return _short(keys, values, date, request, tokens, False)  # `%r %ST %B`: CLF's own end
    truncated = last_cut or len(tokens) < len(layout)
    # A line cut short: its last token may be cut too, unless a cut quote was already dropped.
    whole = tokens[: len(layout)] if not truncated or last_cut else tokens[:-1]
    placed: dict[str, Any] = {}
    for (slot, quoted, check), token in zip(plan, whole, strict=False):
        text = token[1:-1] if quoted else token
        if (token[:1] == '"') != quoted or (check is not None and not check(text)):
            return None if tcp else _short(keys, values, date, request, tokens, last_cut)
        if slot and slot != "000" and not (slot == "cp" and text == "-"):  # unix: no port
            placed[slot] = text[:2] if slot == "ts" else text
    ms = placed.pop("ms", None)
    if len(date) >= 20:
        if ms is not None:  # passed _MS
            date = f"{date[:20]}.{ms.zfill(3)}{date[20:]}"
        keys.append("T" if tcp else "trg")
        values.append(date)
    if not tcp:
        keys.append("r")
        values.append(request)
    keys += placed
    values += placed.values()
    trailing = tokens[len(layout) :]
    extra = [token.strip('"') for token in trailing]
    if extra and not tcp and all(token[:1] == '"' for token in trailing):
        extra = _captures(extra, request_captures, response_captures, keys, values)
    if extra:
        keys.append("extra_tokens")
        values.append(extra)
    return ("tcpclf" if tcp else "clf"), tuple(keys), values, truncated


def _short(keys: list[str], values: list[Any], date: str, request: str, tokens: list[str],
           truncated: bool) -> TrafficLine | None:
    """A shorter CLF (a custom format ending where the common log format ends, or putting its
    own quoted values after `%B`): the common part, `%ST %B` whole and bare, and what follows
    kept unnamed; None when a token after `%B` is not quoted (HAProxy's own layout broken
    further on, or a token inserted before it that would be taken for the bytes) or the
    common part is not whole."""
    if len(tokens) < 2 or not _CHECKS["ST"](tokens[0]) or not _CHECKS["B"](tokens[1]) or (
            _DATE(date) is None):
        return None
    if any(token[:1] != '"' for token in tokens[2:]):
        return None
    keys += ("trg" if " " in date else "tr", "r", "ST", "B")
    values += (date, request, tokens[0], tokens[1])
    if len(tokens) > 2:
        keys.append("extra_tokens")
        values.append([token.strip('"') for token in tokens[2:]])
    return "clf", tuple(keys), values, truncated


def _captures(quoted: list[str], requests: int, responses: int, keys: list[str],
              values: list[Any]) -> list[str]:
    """Place `%hrl %hsl` values when the configured capture counts say where the request's end;
    returns what could not be placed."""
    if requests < 0 and responses < 0:
        return quoted
    if requests < 0:
        requests = len(quoted) - responses
    if requests < 0 or (responses >= 0 and requests + responses != len(quoted)):
        return quoted
    if requests:
        keys.append("hrl")
        values.append("|".join(quoted[:requests]))
    if len(quoted) > requests:
        keys.append("hsl")
        values.append("|".join(quoted[requests:]))
    return []
