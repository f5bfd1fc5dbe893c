"""Small helpers for the parser tests."""

from __future__ import annotations

import calendar
from typing import Any

from receiver.config import ParseSettings
from receiver.parse import Parser
from receiver.parse.fields import Collected
from receiver.parse.mapper import FieldMapper


def epoch(text: str) -> float:
    """`2026-11-25T18:21:08` (UTC) -> epoch seconds."""
    return float(calendar.timegm(
        (int(text[0:4]), int(text[5:7]), int(text[8:10]),
         int(text[11:13]), int(text[14:16]), int(text[17:19]), 0, 0, 0)
    ))


def parse(message: bytes | str, received: str = "2026-11-25T18:30:00", **settings: Any
          ) -> dict[str, Any]:
    data = message.encode() if isinstance(message, str) else message
    settings.setdefault("keep_original", True)  # most tests look at the body too
    return Parser(ParseSettings(**settings)).parse(data, epoch(received))


def map_both(
    mapper: FieldMapper, raw: dict[str, Any]
) -> tuple[dict[str, Any], Collected, dict[str, Any], Collected]:
    """`raw` through the compiled shape (`map`) and through the reference loop (`map_generic`
    + `_finish`): (compiled document, what it saw, generic document, what that saw)."""
    compiled_doc: dict[str, Any] = {}
    seen_compiled = mapper.map(raw, compiled_doc, http=True)
    generic_doc: dict[str, Any] = {}
    seen_generic = Collected()
    mapper.map_generic(raw, generic_doc, True, seen_generic)
    mapper.finish(seen_generic, generic_doc)
    return compiled_doc, seen_compiled, generic_doc, seen_generic
