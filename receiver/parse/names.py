"""Where a log-format key the receiver does not know is put in the document.

The receiver writes fields of its own (`haproxy.log_format`, `haproxy.syslog_format`,
`haproxy.repairs`, the header's `log.syslog.*`, `@timestamp`, `tags`...); the metrics read some
of them as labels, and the index template types them. A body's key must never land on one of
them: it would overwrite the receiver's value (a JSON key `log_format` made every distinct value
a new metric series), be overwritten by it (lost), or make Elasticsearch refuse the document (a
string in a `long`, a write to an alias, `haproxy.log_format.x` beside the keyword
`haproxy.log_format`). So an unknown key `k` becomes `haproxy.k` (raw names: `k`) only when
that name is nobody's: neither one of the receiver's names, nor an object holding one, nor
inside one; otherwise it is kept, under its own name, in `haproxy.body.k` (a namespace the
receiver writes nothing else into).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from importlib import resources
from typing import Any

from receiver.parse.fields import DERIVED_NAMES, FIELDS, UNKNOWN_PREFIX

CONTENT_PREFIX = "haproxy.body."  # where a key that would collide is kept


def _template_names() -> tuple[dict[str, str], dict[str, str]]:
    """Every field the index template types, with its type (`alias` included); and every
    alias with the field it names."""
    text = resources.files("receiver.ship").joinpath("index-template.json").read_text("utf-8")
    found: dict[str, str] = {}
    aliases: dict[str, str] = {}

    def walk(properties: dict[str, Any], prefix: str) -> None:
        for key, spec in properties.items():
            if "properties" in spec:
                walk(spec["properties"], f"{prefix}{key}.")
            else:
                found[prefix + key] = str(spec.get("type", "object"))
                if spec.get("type") == "alias":
                    aliases[prefix + key] = str(spec["path"])

    walk(json.loads(text)["template"]["mappings"]["properties"], "")
    return found, aliases


_TYPED, TEMPLATE_ALIASES = _template_names()
# The receiver's names, whatever `parse.field_names` says: the parser's own, the header's, the
# event's categorisation and errors (written under these names in both modes, all typed by the
# index template), and the template's aliases (Elasticsearch refuses a write to an alias).
_ALWAYS_OWN = ("@timestamp", "tags", "message", "ecs.", "event.", "error.", "log.", "haproxy.",
               "host.", "process.", "data_stream.", "input.")
PARSER_NAMES = frozenset(
    name for name, kind in _TYPED.items() if kind == "alias" or name.startswith(_ALWAYS_OWN))
# With Elastic Common Schema names also the variables' fields (`fields.FIELDS`), what they
# derive, and the rest of the schema the template types.
ECS_NAMES = PARSER_NAMES | frozenset(_TYPED) | frozenset(
    name for name, _ in FIELDS.values()) | frozenset(DERIVED_NAMES)
# Families of names the receiver fills with names of its own making.
OWN_PREFIXES = (
    "log.syslog.structured_data.", "source.geo.", "source.as.",
    "haproxy.http.request.headers.", "haproxy.http.response.headers.", CONTENT_PREFIX,
)


def _parents(name: str) -> Iterable[str]:
    """`a.b.c` -> `a`, `a.b`: the objects Elasticsearch makes of a dotted name."""
    start = 0
    while (dot := name.find(".", start)) >= 0:
        yield name[:dot]
        start = dot + 1


class ContentNames:
    """The document name of each unknown key (and, with raw names, of every key)."""

    def __init__(self, raw: bool = False, also_own: Iterable[str] = ()) -> None:
        """`raw`: `parse.field_names = "raw"` (every key keeps its name, no `haproxy.`);
        `also_own`: names the settings make the receiver write (labels, capture names)."""
        self.prefix = "" if raw else UNKNOWN_PREFIX
        self.own = (PARSER_NAMES if raw else ECS_NAMES) | frozenset(also_own)
        self.parents = frozenset(p for name in self.own for p in _parents(name))
        self.families = OWN_PREFIXES
        self._names: dict[str, str] = {}

    def taken(self, name: str) -> bool:
        """`name` is one of the receiver's, holds one, or lies inside one or in a family."""
        if name in self.own or name in self.parents or not name:
            return True
        if any(parent in self.own for parent in _parents(name)):
            return True
        dotted = name + "."
        return any(name.startswith(f) or dotted == f for f in self.families)

    def name(self, key: str) -> str:
        name = self._names.get(key)
        if name is None:
            name = self.prefix + key
            if self.taken(name):
                name = CONTENT_PREFIX + key
            if len(self._names) < 4096:  # a cache, bounded: keys come from senders
                self._names[key] = name
        return name


DEFAULT = ContentNames()
