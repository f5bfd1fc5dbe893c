"""A flat document (`{"haproxy.connections.active": 1}`) as the nested objects `_source` carries
(`{"haproxy": {"connections": {"active": 1}}}`): each shared prefix written once.

The parser and the spool keep documents flat (dotted names: what the field table, the metrics
and `haproxy-receiver parse` speak); Elasticsearch indexes both forms alike, so nesting happens
once, when a document becomes bulk-body bytes (receiver/ship/encode.py), to save its repeated
prefixes (a third of an httplog document's bytes).

`nest` is the definition. `NestedEncoder` gives the same bytes faster: documents of one log
format share their names in the same order, so the nested layout is worked out once per name
sequence (a *plan*), as a function generated from it that takes the values in order and
returns the nested dicts (`{"log": {"syslog": {"priority": v0, ...}}}`: one dict display per
object, no per-name work); orjson encodes that. tests/ship/test_nesting.py holds the output
equal to `orjson.dumps(nest(document))` (bytes cut and joined instead cost more here: any
per-name bytes operation in Python costs more than building the dicts).

A name cannot be both a value and an object (`a.b` = 1 beside `a.b.c` = 2; Elasticsearch
refuses such a document). The receiver's own names never do that (a test checks the field
table), but names chosen by senders (unknown JSON keys, structured-data ids, capture names)
can: then the value is kept inside the object under the first free name of `_value`,
`__value`, ... (`a.b._value` = 1), so nothing is lost and the document is accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

VALUE_NAME = "_value"  # where a value goes when its name is also an object's
_PLANS_KEPT = 1024  # name sequences remembered (senders choose JSON keys: stay bounded)

class _Object(dict[str, Any]):
    """An object made of dotted names (a value that is itself a dict stays a value)."""


def _free(node: dict[str, Any]) -> str:
    name = VALUE_NAME
    while name in node:
        name = "_" + name
    return name


def nest(document: dict[str, Any]) -> dict[str, Any]:
    """The definition: `document`'s dotted names as nested objects, in the order the names
    first appear; a value whose place is an object (or a value moved there first) goes inside
    it, under the first free name of `_value`, `__value`, ..."""
    tree = _Object()
    for name, value in document.items():
        *parents, leaf = name.split(".")
        node: dict[str, Any] = tree
        for part in parents:
            child = node.get(part)
            if type(child) is not _Object:
                made = _Object()
                if part in node:  # a value where an object must be: it moves inside
                    made[VALUE_NAME] = child
                node[part] = child = made
            node = child
        if leaf not in node:
            node[leaf] = value
        elif type(node[leaf]) is _Object:
            node[leaf][_free(node[leaf])] = value
        else:
            node[_free(node)] = value
    return tree


def _plan(names: Sequence[str]) -> Callable[..., dict[str, Any]]:
    """A function of the values of a document with these names, in this order, that returns
    `nest` of it (generated source: each object a dict display; names go in as constants)."""
    arguments = [f"v{i}" for i in range(len(names))]

    def layout(node: dict[str, Any]) -> str:
        return "{" + ", ".join(
            f"{key!r}: " + (layout(value) if type(value) is _Object else arguments[value])
            for key, value in node.items()) + "}"

    body = layout(nest(dict(zip(names, range(len(names)), strict=True))))
    namespace: dict[str, Any] = {}
    exec(f"def nested({', '.join(arguments)}):\n    return {body}\n", namespace)
    return namespace["nested"]  # type: ignore[no-any-return]


class NestedEncoder:
    """`orjson.dumps(nest(document))`, faster (one per encoding thread: plans are cached)."""

    def __init__(self) -> None:
        self._plans: dict[tuple[str, ...], Callable[..., dict[str, Any]]] = {}

    def encode(self, document: dict[str, Any]) -> bytes:
        """Nested JSON of `document` (raises what orjson raises: TypeError, ValueError)."""
        names = tuple(document)
        plan = self._plans.get(names)
        if plan is None:
            if len(self._plans) >= _PLANS_KEPT:
                self._plans.clear()
            plan = self._plans[names] = _plan(names)
        return orjson.dumps(plan(*document.values()))
