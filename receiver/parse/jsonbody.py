"""JSON log-format bodies: strict decoding first, and repair of the JSON HAProxy really sends.

Owns: turning a body that starts with `{` into a flat dict of the log-format's keys, and saying
what had to be repaired. The fast path is one `orjson.loads`. Only when it fails does the
tolerant scanner run, in two modes:

- standard escapes (JSON as written by the `json()` converter or HAProxy 3.x `%{+json}o`): a
  line cut by `len` is read up to the last whole field;
- literal backslashes (hand-built `"r":"%r"` templates before 3.0): HAProxy writes `\\` bytes
  unescaped and writes `"` as `#22`, so inside a value a backslash is a plain character and
  the next `"` always ends the value (`"HP":"/end\\"` is `/end\\`).

Standard mode is tried first; if it meets an invalid escape or a structure error, the literal
mode is tried. Bare values are typed: numbers (with a `+` dropped), `true`/`false`/`null`, `-`
as null (HAProxy's "no value"), anything else as text. Fields cut by truncation are dropped:
only whole fields are kept.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

_WS = " \t\r\n"
_CONTROL = re.compile(r"[\x00-\x1f]")  # what JSON forbids raw inside a string
_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None, "-": None}


class JsonResult:
    """The decoded fields and how they were obtained (`trailing`: text after the object)."""

    __slots__ = ("error", "fields", "repairs", "trailing", "truncated")

    def __init__(
        self, fields: dict[str, Any], repairs: list[str], truncated: bool, error: str | None,
        trailing: str = "",
    ) -> None:
        self.fields = fields
        self.repairs = repairs
        self.truncated = truncated
        self.error = error
        self.trailing = trailing


class _Structure(Exception):
    """The text is not the shape of a JSON object in the current mode."""


def decode(body: str) -> JsonResult:
    """Decode a JSON object body, repairing it when needed. Never raises."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return repair(body)
    if isinstance(value, dict):
        return JsonResult(value, [], False, None)
    return not_an_object()


def not_an_object() -> JsonResult:
    """The verdict on valid JSON that is not an object (`[1]`, `"x"`, `3`)."""
    return JsonResult({}, [], False, "body is JSON but not an object")


def repair(body: str) -> JsonResult:
    """The tolerant scanner: standard escapes first, then literal backslashes."""
    followed = _followed_by_text(body)
    if followed is not None:
        return followed
    cut = _cut_short(body)
    if cut is not None:
        return cut
    standard = _Scanner(body, literal=False).run()
    if standard.error is None:
        return standard
    literal = _Scanner(body, literal=True).run()
    if literal.error is None:
        literal.repairs.insert(0, "backslashes taken literally (HAProxy does not escape them)")
        return literal
    best = literal if len(literal.fields) > len(standard.fields) else standard
    return best


def _followed_by_text(body: str) -> JsonResult | None:
    """A whole object followed by text (`{...} extra`, a log-format with something after the
    JSON): the object, and the text kept beside it. Tried at the last few `}` (the text
    may hold braces too)."""
    text = body.rstrip(_WS)
    if text[-1:] == "}" or text[:1] != "{":
        return None
    end = len(text)
    for _ in range(8):
        end = text.rfind("}", 0, end)
        if end < 0:
            return None
        try:
            fields = orjson.loads(text[: end + 1])
        except orjson.JSONDecodeError:
            continue
        if type(fields) is not dict:
            return None
        trailing = text[end + 1 :].strip(_WS)
        return JsonResult(fields, ["text after the closing brace kept in "
                                   "haproxy.trailing_text"], False, None, trailing)
    return None


def _cut_short(body: str) -> JsonResult | None:
    """The common repair, fast: a line cut by `len` with nothing else wrong. The longest
    prefix that ends at a field boundary and decodes once closed holds every whole field.
    Only for bodies without backslashes (escapes need the scanner's judgement)."""
    text = body.rstrip(_WS)
    if "\\" in text or text[-1:] == "}" or text[:1] != "{":
        return None
    # Ending on a quote, the last string may be whole; ending on a digit, it may be cut.
    ends = [len(text)] if text[-1:] == '"' else []
    position = len(text)
    for _ in range(16):
        position = text.rfind(",", 0, position)
        if position < 0:
            break
        ends.append(position)
    for end in ends:
        try:
            fields = orjson.loads(text[:end] + "}")
        except orjson.JSONDecodeError:
            continue
        if type(fields) is dict:
            return JsonResult(
                fields, [f"cut short: kept the {len(fields)} whole fields"], True, None
            )
        return None
    return None


class _Scanner:
    """Reads one flat JSON object, tolerating what HAProxy templates produce."""

    def __init__(self, text: str, literal: bool) -> None:
        self.text = text
        self.literal = literal
        self.i = 0
        self.fields: dict[str, Any] = {}
        self.repairs: list[str] = []
        self.trailing = ""

    def run(self) -> JsonResult:
        truncated = False
        error: str | None = None
        try:
            truncated = self._object()
        except _Structure as problem:
            error = str(problem)
        except (ValueError, IndexError, RecursionError) as problem:
            error = f"unreadable JSON: {problem}"
        if truncated:
            self.repairs.append(f"cut short: kept the {len(self.fields)} whole fields")
        return JsonResult(self.fields, self.repairs, truncated, error, self.trailing)

    def _skip_ws(self) -> None:
        text, i, n = self.text, self.i, len(self.text)
        while i < n and text[i] in _WS:
            i += 1
        self.i = i

    def _object(self) -> bool:
        """Read the object; True when the text ended before it closed."""
        text = self.text
        n = len(text)
        self._skip_ws()
        if self.i >= n or text[self.i] != "{":
            raise _Structure("body does not start with `{`")
        self.i += 1
        while True:
            self._skip_ws()
            if self.i >= n:
                return True
            c = text[self.i]
            if c == "}":
                self.i += 1
                self._skip_ws()
                if self.i < n:
                    self.trailing = text[self.i :].strip(_WS)
                    self.repairs.append("text after the closing brace kept in "
                                        "haproxy.trailing_text")
                return False
            if c == ",":
                self.i += 1
                continue
            if c != '"':
                raise _Structure(f"expected a quoted key at offset {self.i}")
            self.i += 1
            key = self._string()
            if key is None:
                return True
            self._skip_ws()
            if self.i >= n:
                return True
            if text[self.i] != ":":
                raise _Structure(f"expected `:` after key {key!r}")
            self.i += 1
            self._skip_ws()
            if self.i >= n:
                return True
            c = text[self.i]
            if c == '"':
                self.i += 1
                value = self._string()
                if value is None:
                    return True
            elif c in "{[":
                value = self._nested()
                if value is _CUT:
                    return True
            else:
                value = self._bare()
                if value is _CUT:
                    return True
            self._skip_ws()
            if self.i < n and text[self.i] not in ",}":
                raise _Structure(f"expected `,` or `}}` after the value of {key!r}")
            self.fields[key] = value

    def _string(self) -> str | None:
        """Read a string body after its opening quote; None when the text ends inside it."""
        text = self.text
        start = self.i
        if self.literal:
            end = text.find('"', start)
            if end < 0:
                return None
            self.i = end + 1
            raw = text[start:end]
            if _CONTROL.search(raw) is not None:
                self.repairs.append("control characters kept in a value")
            return raw
        search = start
        while True:
            end = text.find('"', search)
            if end < 0:
                return None
            backslashes = 0
            k = end - 1
            while k >= start and text[k] == "\\":
                backslashes += 1
                k -= 1
            if backslashes % 2 == 0:
                break
            search = end + 1
        self.i = end + 1
        raw = text[start:end]
        if "\\" not in raw and _CONTROL.search(raw) is None:
            return raw
        try:
            decoded: str = orjson.loads('"' + raw + '"')
            return decoded
        except orjson.JSONDecodeError:
            pass
        # Raw control characters are the only thing standard mode forgives.
        cleaned = "".join(
            ch if ord(ch) >= 0x20 else f"\\u{ord(ch):04x}" for ch in raw
        )
        try:
            decoded = orjson.loads('"' + cleaned + '"')
        except orjson.JSONDecodeError as problem:
            raise _Structure(f"invalid escape in a value at offset {start}") from problem
        self.repairs.append("control characters kept in a value")
        return decoded

    def _bare(self) -> Any:
        """An unquoted value up to `,` or `}`; typed. `_CUT` when the text ends first."""
        text = self.text
        n = len(text)
        start = self.i
        i = start
        while i < n and text[i] not in ",}":
            i += 1
        if i >= n:
            return _CUT
        self.i = i
        token = text[start:i].strip(_WS)
        if token in _LITERALS:
            if token == "-":
                self.repairs.append("`-` taken as no value")
            return _LITERALS[token]
        number = _number(token)
        if number is not None:
            if token[:1] == "+":
                self.repairs.append("`+` sign dropped from a number")
            elif not _is_json_number(token):
                self.repairs.append(f"number {token!r} normalised")
            return number
        self.repairs.append(f"unquoted value {token[:40]!r} kept as text")
        return token

    def _nested(self) -> Any:
        """A nested object/array: kept decoded when valid, else as its text."""
        text = self.text
        n = len(text)
        start = self.i
        depth = 0
        in_string = False
        i = start
        while i < n:
            c = text[i]
            if in_string:
                if c == "\\" and not self.literal:
                    i += 1
                elif c == '"':
                    in_string = False
            elif c == '"':
                in_string = True
            elif c in "{[":
                depth += 1
            elif c in "}]":
                depth -= 1
                if depth == 0:
                    self.i = i + 1
                    chunk = text[start : i + 1]
                    try:
                        return orjson.loads(chunk)
                    except orjson.JSONDecodeError:
                        self.repairs.append("invalid nested value kept as text")
                        return chunk
            i += 1
        return _CUT


_CUT: Any = object()


def _number(token: str) -> int | float | None:
    if not token or len(token) > 40:
        return None
    body = token[1:] if token[0] in "+-" else token
    if body.isdigit() and body.isascii():
        number = int(token)
        if -(2**63) <= number < 2**63:
            return number
        return float(number)  # beyond a `long`: orjson cannot encode the int
    if "_" in token:
        return None
    try:
        value = float(token)
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return value


def _is_json_number(token: str) -> bool:
    try:
        orjson.loads(token)
    except orjson.JSONDecodeError:
        return False
    return True
