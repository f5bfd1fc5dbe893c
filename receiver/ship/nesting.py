"""A flat document (`{"haproxy.connections.active": 1}`) as the nested objects `_source` carries
(`{"haproxy": {"connections": {"active": 1}}}`): each shared prefix written once.

The parser and the spool keep documents flat (dotted names: what the field table, the metrics
and `haproxy-receiver parse` speak); Elasticsearch indexes both forms alike, so nesting happens
once, when a document becomes bulk-body bytes (receiver/ship/encode.py), to save its repeated
prefixes (a third of an httplog document's bytes).

`nest` is the definition. `NestedEncoder` gives the same bytes faster: documents of one log
format share their names in the same order, so the nested layout is worked out once per name
sequence (a *plan*): its objects are made once, and a function generated from it stores a
document's values into them by position; orjson encodes that. tests/ship/test_nesting.py holds
the output equal to `orjson.dumps(nest(document))`. (Measured and left: building the dicts for
each document, twice the cost; cutting orjson's flat output at the names and joining the
pieces in nested order, more still: any per-name bytes operation in Python costs more.)

A name cannot be both a value and an object (`a.b` = 1 beside `a.b.c` = 2; Elasticsearch
refuses such a document). The receiver's own names never do that (a test checks the field
table), but names chosen by senders (unknown JSON keys, structured-data ids, capture names)
can: then the value is kept inside the object under the first free name of `_value`,
`__value`, ... (`a.b._value` = 1), so nothing is lost and the document is accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

VALUE_NAME = "_value"  # where a value goes when its name is also an object's
# Name sequences remembered (senders choose JSON keys: stay bounded; each plan holds the values
# of the last document it encoded until the next, so at most this many documents).
_PLANS_KEPT = 256
# A document's values, in its names' order -> its nested objects (see `_plan`)
Plan = Callable[[Iterable[Any]], dict[str, Any]]

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


def _plan(names: Sequence[str]) -> Plan:
    """A function of the values (`document.values()`) of a document with these names, in this
    order, that returns `nest` of it. Its objects are made once, here, and each call only
    stores the values into them (generated source: one `object[name] = value` per name;
    building the dicts for every document cost twice as much): what it returns is valid until
    the next call."""
    objects: list[dict[str, Any]] = []
    stores: list[str] = []

    def build(node: dict[str, Any]) -> dict[str, Any]:
        made: dict[str, Any] = {}
        number = len(objects)
        objects.append(made)
        for key, value in node.items():
            if type(value) is _Object:
                made[key] = build(value)
            else:  # a placeholder keeps the member's place in the object's order
                made[key] = None
                stores.append(f"o{number}[{key!r}] = v{value}")
        return made

    build(nest(dict(zip(names, range(len(names)), strict=True))))
    parameters = ["values"] + [f"o{i}=o{i}" for i in range(len(objects))]
    # The values unpacked in the function (no argument tuple: ~0.15 µs less than `*values`)
    unpack = f"{''.join(f'v{i}, ' for i in range(len(names)))}= values\n    " if names else ""
    namespace: dict[str, Any] = {f"o{i}": made for i, made in enumerate(objects)}
    exec(f"def nested({', '.join(parameters)}):\n    " + unpack
         + "".join(f"{store}\n    " for store in stores) + "return o0\n", namespace)
    return namespace["nested"]  # type: ignore[no-any-return]


class NestedEncoder:
    """`orjson.dumps(nest(document))`, faster (one per encoding thread: plans are cached)."""

    def __init__(self) -> None:
        self._plans: dict[tuple[str, ...], Plan] = {}
        # The last plan used, by its names: consecutive documents mostly share theirs, and
        # comparing the tuples (the same name objects: `is` per name) costs less than hashing one
        self._last_names: tuple[str, ...] = ()
        self._last_plan: Plan = _plan(())

    def encode(self, document: dict[str, Any]) -> bytes:
        """Nested JSON of `document` (raises what orjson raises: TypeError, ValueError)."""
        names = tuple(document)
        if names == self._last_names:
            return orjson.dumps(self._last_plan(document.values()))
        plan = self._plans.get(names)
        if plan is None:
            if len(self._plans) >= _PLANS_KEPT:
                self._plans.clear()
            plan = self._plans[names] = _plan(names)
        self._last_names, self._last_plan = names, plan
        return orjson.dumps(plan(document.values()))
