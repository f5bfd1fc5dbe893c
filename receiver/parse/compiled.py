"""Straight-line mapping code generated from the field table, once per key layout.

A HAProxy log-format is fixed per deployment, so the keys of its bodies arrive in the same
order message after message (and a text line's tokens always fill the same variables). For
each distinct key layout (a "shape") this module generates, from `fields.FIELDS`, one Python
function that unpacks the values in a single step and maps each one with the conversion for its
kind written inline (type checks, renames, the accept date, the duration, the query, the request
line's fill-in), calling the kind's handler from `fields.HANDLERS` for the unusual value (text
where a number was expected, `-`, `#XX` escapes, absolute URIs). The result is exactly what
`mapper.FieldMapper.map_generic` (plus its `finish`) produces; tests hold the two equal.

Names and keys are embedded with `repr()`, so any key text is safe. Everything the generated
code calls is public in `fields`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from receiver.parse import fields as f
from receiver.parse.names import DEFAULT as DEFAULT_NAMES
from receiver.parse.names import ContentNames

if TYPE_CHECKING:
    from receiver.parse.fields import Collected, Naming

try:  # the compiled check and write phases of whole events; optional at install
    from receiver.parse import _whole
except ImportError:  # pragma: no cover - exercised where no C compiler was found at install
    _whole = None  # type: ignore[assignment]

COMPILED = _whole is not None  # whether whole-event functions run compiled steps by default

MAX_SHAPES = 256
MAX_KEYS = 128

Compiled = Callable[[Iterable[Any], dict[str, Any], "Collected", "Naming", bool], None]

_DATE_KINDS = f.DATE_KINDS


def _first_address(keys: tuple[str, ...], key: str) -> bool:
    """No address-kind key comes before `key`: `related.ip` cannot exist yet."""
    return not any(f.FIELDS.get(other, ("", -1))[1] in (f.SRC_IP, f.DST_IP)
                   for other in keys[: keys.index(key)])


def _checked_number(key: str, kind: int, v: str, n: str) -> list[str]:
    """A number-kind variable whose value is checked integer text: what its handler does,
    with a bare `int()`."""
    if kind == f.INT:
        return [f"    doc[{n}] = int({v})"]
    if kind == f.BOOL:
        return [f"    doc[{n}] = int({v}) != 0"]
    lines = [f"    {v} = int({v})"]
    if kind == f.DURATION:
        condition = "True" if key == "Tt" else "seen.duration_ms is None"
        lines += [f"    doc[{n}] = {v}",
                  f"    if {v} >= 0 and {condition}: seen.duration_ms = {v}"]
    elif kind == f.STATUS:
        lines += [f"    if {v} >= 0:", f"        doc[{n}] = {v}", f"        seen.status = {v}"]
    else:  # BYTES_UPLOADED
        lines += [f"    doc[{n} if http else {f.TCP_BYTES_UPLOADED!r}] = {v}"]
    return lines


def _date_preference(keys: list[str]) -> list[str]:
    """The date keys in the order the generic loop would prefer them: `t` first, then by kind
    (ms date, zoned date, epoch), then by position."""
    dated = [k for k in keys if k in f.FIELDS and f.FIELDS[k][1] in _DATE_KINDS]
    return sorted(dated, key=lambda k: (k != "t", f.FIELDS[k][1], keys.index(k)))


_NUMBERS = frozenset((f.INT, f.DURATION, f.STATUS, f.BYTES_UPLOADED, f.BOOL))


def compile_shape(keys: tuple[str, ...], text: bool = False,
                  content_names: ContentNames = DEFAULT_NAMES) -> Compiled:
    """Generate the mapping function for bodies whose keys are exactly `keys`, in order.

    `text`: the values come from a text line's reader (`traffic.py`, `clf.py`), which hands
    every number-kind variable as integer text it has checked (`[+-]?` and at most 18 digits,
    within a `long`): converted with a bare `int()`. `content_names`: where a key the table does not
    name goes (`names.py`)."""
    lines = ["def mapped(values, doc, seen, mapper, http):"]
    names = [f"v{i}" for i in range(len(keys))]
    if len(keys) == 1:
        lines.append(f"    {names[0]}, = values")
    elif keys:
        lines.append(f"    {', '.join(names)} = values")
    env: dict[str, Any] = {"H": f.HANDLERS, "IPS": f.IP_SEEN, "IS_IP": f.is_ip,
                           "FILL": f.fill_from_request_line, "TERMINATIONS": f.TERMINATIONS,
                           "RECORD": f.record_termination, "RELATED": f.add_related_ip}
    for key, v in zip(keys, names, strict=True):
        spec = f.FIELDS.get(key)
        k = repr(key)
        if spec is None:
            lines.append(f"    if {v} is not None and {v} != '-': doc[{content_names.name(key)!r}] = {v}")
            continue
        name, kind = spec
        n = repr(name)
        call = f"H[{kind}](mapper, {k}, {n}, {v}, doc, seen, http)"
        if text and kind in _NUMBERS:
            lines += _checked_number(key, kind, v, n)
            continue
        if kind in (f.DURATION, f.STATUS, f.BYTES_UPLOADED):
            # Text lines (httplog, tcplog, CLF) give numbers as text: convert inline.
            lines += [
                f"    if type({v}) is str and 0 < len({v}) < 19:",
                "        try:",
                f"            {v} = int({v})",
                "        except ValueError:",
                "            pass",
            ]
        if kind == f.INT:
            # Up to 18 characters always fits a `long`; longer text goes through to_int.
            lines += [
                f"    if type({v}) is int and -{2**63} <= {v} < {2**63}: doc[{n}] = {v}",
                f"    elif type({v}) is str and len({v}) < 19:",
                "        try:",
                f"            doc[{n}] = int({v})",
                "        except ValueError:",
                "            pass",
                f"    elif {v} is not None: {call}",
            ]
        elif kind == f.STR:
            lines += [
                f"    if type({v}) is str:",
                f"        if {v} and {v} != '-': doc[{n}] = {v}",
                f"    elif {v} is not None: {call}",
            ]
        elif kind in _DATE_KINDS:
            continue  # handled after the loop, in preference order
        elif kind == f.SRC_IP or kind == f.DST_IP:
            ip_name = repr(f.SOURCE_IP if kind == f.SRC_IP else f.DESTINATION_IP)
            lines += [
                f"    if type({v}) is str and (IPS.get({v}) or IS_IP({v})):",
                f"        doc[{n}] = {v}",
                f"        doc[{ip_name}] = {v}",
                f"        doc[{f.RELATED_IP!r}] = [{v}]" if _first_address(keys, key)
                else f"        RELATED({v}, doc)",
                f"    elif {v} is not None: {call}",
            ]
        elif kind == f.FRONTEND:
            lines += [
                f"    if type({v}) is str and {v} and {v} != '-':",
                f"        doc[{n}] = {v}",
                f"        if {v}[-1] == '~': doc[{f.FRONTEND_TRANSPORT!r}] = 'ssl'",
                f"    elif {v} is not None: {call}",
            ]
        elif kind == f.TERMINATION:
            # The split of each state is kept (fields.TERMINATIONS); a new one goes through
            # record_termination, which keeps it.
            lines += [
                f"    if type({v}) is str and {v}:",
                f"        split = TERMINATIONS.get({v})",
                f"        if split is None: RECORD({v}, doc, seen)",
                "        else:",
                "            doc.update(split)",
                f"            seen.termination = {v}",
                f"    elif {v} is not None: {call}",
            ]
        elif kind == f.DURATION:
            condition = "True" if key == "Tt" else "seen.duration_ms is None"
            lines += [
                f"    if type({v}) is int and -{2**63} <= {v} < {2**63}:",
                f"        doc[{n}] = {v}",
                f"        if {v} >= 0 and {condition}: seen.duration_ms = {v}",
                f"    elif {v} is not None: {call}",
            ]
        elif kind == f.STATUS:
            lines += [
                f"    if type({v}) is int and 0 <= {v} < {2**63}:",
                f"        doc[{n}] = {v}",
                f"        seen.status = {v}",
                f"    elif {v} is not None: {call}",
            ]
        elif kind == f.REQUEST:
            lines += [
                f"    if type({v}) is str and {v} and {v} != '-':",
                f"        doc[{n}] = {v}",
                f"        seen.request_line = {v}",
            ]
        elif kind == f.METHOD:
            lines += [
                f"    if type({v}) is str and {v} and {v} != '-' and {v} != '<BADREQ>': "
                f"doc[{n}] = {v}",
            ]
        elif kind == f.PATH:
            lines += [
                f"    if type({v}) is str and {v}[:1] == '/' and '#' not in {v}: doc[{n}] = {v}",
                f"    elif {v} is not None: {call}",
            ]
        elif kind == f.URI:
            lines += [
                f"    if type({v}) is str and {v}[:1] == '/': doc[{n}] = {v}",
                f"    elif {v} is not None: {call}",
            ]
        elif kind == f.QUERY:
            # `?id=5` without `#XX` escapes: the handler would only drop the `?`.
            lines += [
                f"    if type({v}) is str and {v}[:1] == '?' and {v} != '?' and '#' not in {v}: "
                f"doc[{n}] = {v}[1:]",
                f"    elif {v} and {v} != '?' and {v} is not None: {call}",
            ]
        elif kind == f.VERSION:
            lines += [
                f"    if type({v}) is str and {v}[:5] == 'HTTP/': doc[{n}] = {v}[5:]",
                f"    elif {v} is not None: {call}",
            ]
        elif kind == f.BYTES_UPLOADED:
            lines += [
                f"    if type({v}) is int and -{2**63} <= {v} < {2**63}:",
                f"        doc[{n} if http else {f.TCP_BYTES_UPLOADED!r}] = {v}",
                f"    elif {v} is not None: {call}",
            ]
        else:
            lines.append(f"    if {v} is not None: {call}")
    for key in _date_preference(list(keys)):
        v = names[keys.index(key)]
        kind = f.FIELDS[key][1]
        lines += [
            f"    if seen.date is None and type({v}) is str and {v} and {v} != '-':",
            f"        seen.date = {v}",
            f"        seen.date_kind = {kind}",
        ]
        if kind == f.EPOCH:  # `%Ts` may come as a JSON number
            lines += [
                f"    elif seen.date is None and type({v}) in (int, float):",
                f"        seen.date = {v}",
                f"        seen.date_kind = {kind}",
            ]
    if any(f.FIELDS[key][1] == f.REQUEST for key in keys if key in f.FIELDS):
        # `FieldMapper.finish`, inline (without a request line it has nothing to do).
        needed = " and ".join(f"{name!r} in doc" for name in (
            f.VERSION_FIELD, f.URL_ORIGINAL, f.METHOD_FIELD))
        lines += [
            "    line = seen.request_line",
            f"    if line is not None and not ({needed}): FILL(line, doc)",
        ]
    lines.append("    return None")
    code = compile("\n".join(lines), f"<haproxy-receiver shape of {len(keys)} keys>", "exec")
    exec(code, env)  # generated from the field table; keys and names are embedded via repr()
    mapped: Compiled = env["mapped"]
    return mapped


# -- whole events ------------------------------------------------------------------------------
# `compile_event` goes one step further than `compile_shape` for the usual event of a shape: it
# checks every value first (each one is either written the plain way or dropped as "no value";
# the date is a `%t`-style date), and only then writes the whole document in the order the
# general path writes it, with the event's time (a date outside the receive-time window passed
# over for the receive time, as `Parser._stamp` does), duration, outcome and categories written
# inline: no `Collected`, no handler call, no per-key method call. An event with anything
# unusual (a text number in JSON, a unix-socket client, a `#XX` escape, a new termination
# state, a date that names no moment) is left untouched (LEFT) and goes the general way
# (`Parser._parse`, `compile_shape`). tests/parse/test_whole_events.py holds the two equal, key
# order included, on the corpus.
#
# Where the package was built with receiver/parse/_whole.c, the check and write phases run as
# compiled steps, one per key (`_event_key` gives each kind's Python lines and its step side by
# side): 2.2 -> 1.5 µs for the seed line's 21 keys, 2.9 -> 2.0 for httplog's 24. The tests also
# hold the steps equal to the lines, on the corpus and on random values of every kind.

EventFunction = Callable[[Iterable[Any], dict[str, Any], float, Any, "Naming", bool], int]
LEFT = 0  # what an event function answers: the event is unusual, the document untouched
WRITTEN = 1  # the document is written
# ... and its date, outside the receive-time window, was passed over for the receive time and
# kept as `haproxy.claimed_time` (the caller tags it)
WRITTEN_CLAIMED = 2

# Kinds whose handler never reads or writes `seen`: called as they are from the write phase.
_SEEN_FREE = frozenset((f.CAPTURE_REQUEST, f.CAPTURE_RESPONSE, f.TLS_VERSION, f.LIST))
# JSON values come from orjson, whose integers are never below INT64_MIN (a smaller number is
# read as a float): only the upper end of Elasticsearch's `long` needs checking (its u64 range).
_INT_RANGE = f"{{v}} <= {f.INT64_MAX}"


# A step of the compiled check and write phases (receiver/parse/_whole.c): (its code's name,
# flag, field name, other object, key); each `_event_key` branch gives the step doing what its
# Python lines do.
Step = tuple[str, int, str | None, Any, str | None]


def _event_key(key: str, v: str, kind: int, text: bool, first_address: bool
               ) -> tuple[str | None, list[str], Step] | None:
    """(the check its value must pass or None, the lines writing it, the compiled step doing
    the same) for one known key; None when the kind is not handled here (the shape then has no
    event function)."""
    name = f.FIELDS[key][0]
    n = repr(name)
    int_range = _INT_RANGE.format(v=v)
    optional_int = f"((type({v}) is int and {int_range}) or {v} is None)"
    tt = int(key == "Tt")  # `%Tt` is the duration whatever came before
    if text and kind in _NUMBERS:  # checked integer text (see `compile_shape`)
        if kind == f.INT:
            return None, [f"    doc[{n}] = int({v})"], ("TEXT_INT", 0, name, None, None)
        if kind == f.BOOL:
            return None, [f"    doc[{n}] = int({v}) != 0"], ("TEXT_BOOL", 0, name, None, None)
        if kind == f.BYTES_UPLOADED:
            return (None, [f"    doc[{n} if http else {f.TCP_BYTES_UPLOADED!r}] = int({v})"],
                    ("TEXT_BYTES_UPLOADED", 0, name, f.TCP_BYTES_UPLOADED, None))
        if kind == f.STATUS:  # -1: no status, the general way
            return (f"({v} := int({v})) >= 0", [f"    doc[{n}] = status = {v}"],
                    ("TEXT_STATUS", 0, name, None, None))
        condition = "" if tt else " and duration is None"  # DURATION
        return None, [f"    {v} = int({v})", f"    doc[{n}] = {v}",
                      f"    if {v} >= 0{condition}: duration = {v}"], (
            "TEXT_DURATION", tt, name, None, None)
    if kind == f.STR:
        return (f"(type({v}) is str or {v} is None)", [f"    if {v} and {v} != '-': doc[{n}] = {v}"],
                ("STR", 0, name, None, None))
    if kind == f.INT:
        return (optional_int, [f"    if {v} is not None: doc[{n}] = {v}"],
                ("INT", 0, name, None, None))
    if kind == f.BYTES_UPLOADED:
        return (optional_int,
                [f"    if {v} is not None: doc[{n} if http else {f.TCP_BYTES_UPLOADED!r}] = {v}"],
                ("BYTES_UPLOADED", 0, name, f.TCP_BYTES_UPLOADED, None))
    if kind == f.DURATION:
        condition = "" if tt else " and duration is None"
        return (optional_int,
                [f"    if {v} is not None:", f"        doc[{n}] = {v}",
                 f"        if {v} >= 0{condition}: duration = {v}"],
                ("DURATION", tt, name, None, None))
    if kind == f.STATUS:
        return (f"((type({v}) is int and 0 <= {v} <= {f.INT64_MAX}) or {v} is None)",
                [f"    if {v} is not None: doc[{n}] = status = {v}"],
                ("STATUS", 0, name, None, None))
    if kind in (f.SRC_IP, f.DST_IP):
        ip_name = f.SOURCE_IP if kind == f.SRC_IP else f.DESTINATION_IP
        related = (f"    doc[{f.RELATED_IP!r}] = [{v}]" if first_address
                   else f"    RELATED({v}, doc)")
        return (f"type({v}) is str and (IPS.get({v}) or IS_IP({v}))",
                [f"    doc[{n}] = {v}", f"    doc[{ip_name!r}] = {v}", related],
                ("ADDRESS", int(first_address), name, ip_name, None))
    if kind == f.FRONTEND:
        return (f"(type({v}) is str or {v} is None)",
                [f"    if {v} and {v} != '-':", f"        doc[{n}] = {v}",
                 f"        if {v}[-1] == '~': doc[{f.FRONTEND_TRANSPORT!r}] = 'ssl'"],
                ("FRONTEND", 0, name, None, None))
    if kind == f.TERMINATION:
        return (f"((type({v}) is str and {v} in TERMINATIONS) or {v} is None or {v} == '')",
                [f"    if {v}:", f"        doc.update(TERMINATIONS[{v}])",
                 f"        termination = {v}"],
                ("TERMINATION", 0, name, None, None))
    if kind == f.REQUEST:
        return (f"(type({v}) is str or {v} is None)",
                [f"    if {v} and {v} != '-':", f"        doc[{n}] = {v}",
                 f"        request_line = {v}"],
                ("REQUEST", 0, name, None, None))
    if kind == f.METHOD:
        return (f"(type({v}) is str or {v} is None)",
                [f"    if {v} and {v} != '-' and {v} != '<BADREQ>': doc[{n}] = {v}"],
                ("METHOD", 0, name, None, None))
    if kind == f.PATH:
        return (f"((type({v}) is str and {v}[:1] == '/' and '#' not in {v}) or {v} is None)",
                [f"    if {v} is not None: doc[{n}] = {v}"], ("PATH", 0, name, None, None))
    if kind == f.URI:
        return (f"((type({v}) is str and {v}[:1] == '/') or {v} is None)",
                [f"    if {v} is not None: doc[{n}] = {v}"], ("URI", 0, name, None, None))
    if kind == f.QUERY:
        return (f"((type({v}) is str and (({v}[:1] == '?' and '#' not in {v}) or {v} == '' "
                f"or {v} == '?')) or {v} is None)",
                [f"    if {v} and {v} != '?': doc[{n}] = {v}[1:]"],
                ("QUERY", 0, name, None, None))
    if kind == f.VERSION:
        return (f"((type({v}) is str and {v}[:5] == 'HTTP/') or {v} is None)",
                [f"    if {v} is not None: doc[{n}] = {v}[5:]"],
                ("VERSION", 0, name, None, None))
    if kind in _DATE_KINDS:
        return None, [], ("SKIP", 0, None, None, None)  # only the chosen date counts, apart
    if kind in _SEEN_FREE or (kind == f.BOOL and not text):
        return (None,
                [f"    if {v} is not None: H[{kind}](mapper, {key!r}, {n}, {v}, doc, None, http)"],
                ("CALL", 0, name, f.HANDLERS[kind], key))
    return None


def compile_event(keys: tuple[str, ...], text: bool, content_names: ContentNames,
                  categories: dict[str, Any] | tuple[dict[str, Any], dict[str, Any]],
                  compiled_steps: bool | None = None) -> EventFunction | None:
    """The whole-event function for bodies whose keys are exactly `keys` (see above), or None
    when the shape has no `%t`-style date first in preference or a kind not handled here.

    `categories`: a text format's ECS categorisation (`Parser`'s table), or for JSON the pair
    (web, network): web when the event has a status or a request line. `compiled_steps`: the
    check and write phases run by the compiled steps (receiver/parse/_whole.c) rather than as
    generated Python lines (the same documents; default: where the module was built)."""
    if compiled_steps is None:
        compiled_steps = COMPILED
    dates = _date_preference(list(keys))
    if not dates or f.FIELDS[dates[0]][1] != f.DATE_MS or len(keys) > MAX_KEYS:
        return None
    names = [f"v{i}" for i in range(len(keys))]
    checks: list[str] = []
    writes: list[str] = []
    steps: list[Step] = []
    kinds = {f.FIELDS[key][1] for key in keys if key in f.FIELDS}
    for key, v in zip(keys, names, strict=True):
        spec = f.FIELDS.get(key)
        if spec is None:
            content_name = content_names.name(key)
            writes.append(f"    if {v} is not None and {v} != '-': doc[{content_name!r}] = {v}")
            steps.append(("CONTENT", 0, content_name, None, None))
            continue
        handled = _event_key(key, v, spec[1], text, _first_address(keys, key))
        if handled is None:
            return None
        check, lines, step = handled
        if check is not None:
            checks.append(check)
        writes += lines
        steps.append(step)
    date_at = keys.index(dates[0])
    date = names[date_at]
    lines = ["def event(values, doc, received_at, parser, mapper, http):"]
    if compiled_steps:  # only the date's value is needed before the steps run
        lines += ["    values = tuple(values)", f"    {date} = values[{date_at}]"]
    else:
        lines.append(f"    {', '.join(names)}{',' if len(names) == 1 else ''} = values")
        if checks:
            lines.append(f"    if not ({' and '.join(checks)}): return {LEFT}")
    lines += [
        f"    if type({date}) is not str: return {LEFT}",
        f"    stamp = parser.timestamps.haproxy_date({date})",
        "    window = parser._window",
        "    if stamp is None or not window[2] <= received_at < window[3]: return 0",
        "    claimed = not window[0] <= stamp <= window[1]",
    ]
    if compiled_steps:  # checks, then writes (None: a value is unusual, the document untouched)
        lines += [
            "    tail = RUN(PROGRAM, values, doc, mapper, http)",
            f"    if tail is None: return {LEFT}",
            "    duration, status, termination, request_line = tail",
        ]
    else:
        lines += ["    duration = status = termination = request_line = None", *writes]
    if f.REQUEST in kinds:  # `FieldMapper.finish`, inline
        needed = " and ".join(f"{name!r} in doc" for name in (
            f.VERSION_FIELD, f.URL_ORIGINAL, f.METHOD_FIELD))
        lines.append(f"    if request_line is not None and not ({needed}): FILL(request_line, doc)")
    # `Parser._parse`'s tail for an event read to its end, its date in the window.
    lines += [
        "    if claimed:",  # `Parser._stamp`: the receive time, the date kept as logged
        "        doc['@timestamp'] = parser.timestamps.epoch(received_at)",
        f"        doc[{f.CLAIMED_TIME!r}] = {date}",
        "    else:",
        "        doc['@timestamp'] = stamp",
        "    if duration is not None and duration < 9_000_000_000_000:",
        f"        doc[{f.EVENT_DURATION!r}] = duration * 1_000_000",
        "    if status is not None or termination is not None:",
        f"        doc[{f.EVENT_OUTCOME!r}] = 'failure' if (status is not None and status >= 400)"
        " or (termination and termination[0] not in '-L') else 'success'",
    ]
    if isinstance(categories, tuple):
        lines += ["    doc.update(WEB if status is not None or request_line else NETWORK)"]
    else:
        lines += [f"    doc[{name!r}] = {value!r}" for name, value in categories.items()]
    lines.append(f"    return {WRITTEN_CLAIMED} if claimed else {WRITTEN}")
    env: dict[str, Any] = {"H": f.HANDLERS, "IPS": f.IP_SEEN, "IS_IP": f.is_ip,
                           "FILL": f.fill_from_request_line, "TERMINATIONS": f.TERMINATIONS,
                           "RELATED": f.add_related_ip}
    if isinstance(categories, tuple):
        env["WEB"], env["NETWORK"] = categories
    if compiled_steps:
        env["RUN"], env["PROGRAM"] = _whole.run, _program(steps)
    code = compile("\n".join(lines), f"<haproxy-receiver event of {len(keys)} keys>", "exec")
    exec(code, env)  # generated from the field table; keys and names are embedded via repr()
    event: EventFunction = env["event"]
    return event


def _program(steps: list[Step]) -> Any:
    """The compiled steps of a shape (receiver/parse/_whole.c), with the tables they read."""
    return _whole.program(
        tuple((getattr(_whole, code), flag, name, other, key)
              for code, flag, name, other, key in steps),
        f.IP_SEEN, f.is_ip, f.TERMINATIONS, f.RELATED_IP, f.FRONTEND_TRANSPORT)
