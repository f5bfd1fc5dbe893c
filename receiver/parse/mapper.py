"""`FieldMapper`: writes one body's variables into the document, by the table in `fields.py`.

Owns the choice between the two ways of applying that table: the generic loop (`map_generic`,
one lookup and one handler call per key: raw mode, unusual layouts, and the reference the other
way is tested against) and the straight-line function `compiled.py` generates once per key
layout (`map`, `map_values`). Both give the same document, key order included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from receiver.config import ParseSettings
from receiver.parse import compiled
from receiver.parse.fields import (
    FIELDS,
    HANDLERS,
    INT,
    INT64_MAX,
    INT64_MIN,
    METHOD_FIELD,
    STR,
    URL_ORIGINAL,
    VERSION_FIELD,
    Collected,
    Handler,
    fill_from_request_line,
    name_of,
)
from receiver.parse.names import ContentNames

_REQUEST_FIELDS = (VERSION_FIELD, URL_ORIGINAL, METHOD_FIELD)


class FieldMapper:
    """Maps log-format variables to fields under ECS or raw names."""

    def __init__(self, settings: ParseSettings) -> None:
        self.raw_names = settings.field_names == "raw"
        self.request_names = [self._capture_name(n, "request") for n in
                              settings.capture_request_headers]
        self.response_names = [self._capture_name(n, "response") for n in
                               settings.capture_response_headers]
        # Where a key the table does not name goes: never onto a name of the receiver's own
        # (`names.py`), including what these settings add.
        self.content_names = ContentNames(self.raw_names, (
            *settings.labels, *self.request_names, *self.response_names))
        # key -> (document name, kind, handler), resolved once.
        self._plan: dict[str, tuple[str, int, Handler]] = {
            key: (self.content_names.name(key) if self.raw_names else name, kind, HANDLERS[kind])
            for key, (name, kind) in FIELDS.items()
        }
        self._shapes: dict[tuple[str, ...], compiled.Compiled | None] = {}
        self._text_shapes: dict[tuple[str, ...], compiled.Compiled | None] = {}

    @staticmethod
    def _capture_name(name: str, side: str) -> str:
        """A configured name with a dot is used as given; a bare header name gets a place."""
        if "." in name:
            return name
        lowered = name.lower()
        if side == "request" and lowered == "user-agent":
            return name_of("ua")
        if side == "request" and lowered in ("referer", "referrer"):
            return name_of("referer")
        return f"haproxy.http.{side}.headers.{lowered.replace('-', '_')}"

    def map(self, raw: dict[str, Any], doc: dict[str, Any], http: bool) -> Collected:
        """Map every key of `raw` into `doc`; return what later steps need."""
        seen = Collected()
        if not self.raw_names:
            keys = tuple(raw)
            mapped = self._shapes.get(keys)
            if mapped is None and keys not in self._shapes:
                mapped = self._shape(keys, self._shapes, False, self.content_names)
            if mapped is not None:
                mapped(raw.values(), doc, seen, self, http)  # includes `finish`
                return seen
        self.map_generic(raw, doc, http, seen)
        self.finish(seen, doc)
        return seen

    def map_values(
        self, keys: tuple[str, ...], values: Sequence[Any], doc: dict[str, Any], http: bool
    ) -> Collected:
        """`map` for a text line's tokens, in the order of `keys` (no dict). The line's reader
        has checked every number-kind value to be integer text (see `compiled.compile_shape`)."""
        seen = Collected()
        mapped = self._text_shapes.get(keys)
        if mapped is None and not self.raw_names and keys not in self._text_shapes:
            mapped = self._shape(keys, self._text_shapes, True, self.content_names)
        if mapped is not None:
            mapped(values, doc, seen, self, http)
            return seen
        self.map_generic(dict(zip(keys, values, strict=True)), doc, http, seen)
        self.finish(seen, doc)
        return seen

    @staticmethod
    def _shape(keys: tuple[str, ...], shapes: dict[tuple[str, ...], compiled.Compiled | None],
               text: bool, names: ContentNames) -> compiled.Compiled | None:
        """The generated function for a key layout not in `shapes` yet (None past the bounds:
        use the loop)."""
        if len(shapes) >= compiled.MAX_SHAPES:
            return None
        mapped = compiled.compile_shape(keys, text, names) if len(keys) <= compiled.MAX_KEYS else None
        shapes[keys] = mapped
        return mapped

    def map_generic(
        self, raw: dict[str, Any], doc: dict[str, Any], http: bool, seen: Collected
    ) -> None:
        """The table-driven loop (raw mode, unusual shapes; the reference for `compiled`)."""
        plan = self._plan
        for key, value in raw.items():
            entry = plan.get(key)
            if entry is None:
                if value is not None and value != "-":
                    doc[self.content_names.name(key)] = value
                continue
            name, kind, handler = entry
            # The common cases inline: JSON already typed them.
            if (kind == INT and type(value) is int and INT64_MIN <= value <= INT64_MAX) or (
                kind == STR and type(value) is str and value and value != "-"
            ):
                doc[name] = value
            elif value is not None:
                handler(self, key, name, value, doc, seen, http)

    @staticmethod
    def finish(seen: Collected, doc: dict[str, Any]) -> None:
        """After the keys: fill what `%r` carries and `%HM`/`%HU`/`%HV` did not give."""
        line = seen.request_line
        if line is not None and not all(name in doc for name in _REQUEST_FIELDS):
            fill_from_request_line(line, doc)
