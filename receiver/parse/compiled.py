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
