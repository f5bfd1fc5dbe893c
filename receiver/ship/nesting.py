"""A flat document (`{"haproxy.connections.active": 1}`) as the nested objects `_source` carries
(`{"haproxy": {"connections": {"active": 1}}}`): each shared prefix written once.

The parser and the spool keep documents flat (dotted names: what the field table, the metrics
and `haproxy-receiver parse` speak); Elasticsearch indexes both forms alike, so nesting happens
once, when a document becomes bulk-body bytes (receiver/ship/encode.py), to save its repeated
prefixes (a third of an httplog document's bytes).

`nest` is the definition. `NestedEncoder` gives the same bytes faster: documents of one log
format share their names in the same order, so the nested layout is worked out once per name
sequence (a *plan*). Where the package was built with its compiled writer
(`receiver/ship/_nested.c`, built at install wherever a C compiler is), a plan is a list of
steps (`steps`: the literal bytes of keys and braces, then the position of the value that
follows) and the writer appends them and the values' JSON in one call: 0.7 µs for the seed
line's document, against 2.0 for the Python way. Without it (no compiler at install: it is
optional, and the package works the same), the plan's objects are made once, a function
generated from it stores a document's values into them by position, and orjson encodes that.
tests/ship/test_nesting.py holds both outputs equal to `orjson.dumps(nest(document))`.
(Measured and left, in Python: building the dicts for each document, twice the cost; cutting
orjson's flat output at the names and joining the pieces in nested order, more still: any
per-name bytes operation in Python costs more.)

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

try:  # the compiled writer (see above); optional at install
    from receiver.ship import _nested
except ImportError:  # pragma: no cover - exercised where no C compiler was found at install
    _nested = None  # type: ignore[assignment]

COMPILED = _nested is not None  # whether `NestedEncoder` writes with the compiled writer
VALUE_NAME = "_value"  # where a value goes when its name is also an object's
# Name sequences remembered (senders choose JSON keys: stay bounded; each plan holds the values
# of the last document it encoded until the next, so at most this many documents).
_PLANS_KEPT = 256
# A document's values, in its names' order -> its nested objects (see `_plan`)
Plan = Callable[[Iterable[Any]], dict[str, Any]]
# The compiled writer's plan: (literal bytes, position of the value after it or -1) per step
Steps = tuple[tuple[bytes, int], ...]

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


def bulk_item(head: bytes, offset: int, end: bytes, source: bytes) -> bytes:
    """What `NestedEncoder.append` (and the compiled `append`) adds to a bulk body: `head`, the
    offset in hex and `end` when offset >= 0 (an action line's id tail), `source`, a newline."""
    return b"%b%b%b\n" % (head, b"%x%b" % (offset, end) if offset >= 0 else b"", source)


def _remembered(table: dict[tuple[str, ...], Any], names: tuple[str, ...],
                make: Callable[[tuple[str, ...]], Any]) -> Any:
    """`table[names]`, made by `make` the first time (the table is cleared when it holds
    _PLANS_KEPT: senders choose JSON keys)."""
    found = table.get(names)
    if found is None:
        if len(table) >= _PLANS_KEPT:
            table.clear()
        found = table[names] = make(names)
    return found


def steps(names: Sequence[str]) -> Steps:
    """The compiled writer's plan for documents with these names, in this order: `nest` of
    their positions, written out as JSON with each value's place marked by its position."""
    made: list[tuple[bytes, int]] = []
    pending = bytearray()

    def write(node: dict[str, Any]) -> None:
        nonlocal pending
        pending += b"{"
        for number, (key, value) in enumerate(node.items()):
            pending += b'%s%s:' % (b"," if number else b"", orjson.dumps(key))
            if type(value) is _Object:
                write(value)
            else:
                made.append((bytes(pending), value))
                pending = bytearray()
        pending += b"}"

    write(nest(dict(zip(names, range(len(names)), strict=True))))
    made.append((bytes(pending), -1))
    return tuple(made)


class NestedEncoder:
    """`orjson.dumps(nest(document))`, faster (one per encoding thread: plans are cached).
    `compiled`: write with the compiled writer (where it was built; tests switch it off)."""

    def __init__(self, compiled: bool = COMPILED) -> None:
        if compiled and _nested is None:
            raise RuntimeError("the compiled nesting writer was not built with this package")
        self._compiled = compiled
        self._plans: dict[tuple[str, ...], Plan] = {}
        self._steps: dict[tuple[str, ...], Steps] = {}
        # The last plan used, by its names: consecutive documents mostly share theirs, and
        # comparing the tuples (the same name objects: `is` per name) costs less than hashing one
        self._last_names: tuple[str, ...] = ()
        self._last_plan: Plan = _plan(())
        self._last_steps: Steps = steps(())

    def encode(self, document: dict[str, Any]) -> bytes:
        """Nested JSON of `document` (raises what orjson raises: TypeError, ValueError)."""
        if self._compiled:
            # None: the document's names are not the last plan's (checked in the writer)
            written = _nested.write(self._last_steps, self._last_names, document, orjson.dumps)
            if written is None:
                names, found = self._new_steps(document)
                written = _nested.write(found, names, document, orjson.dumps)
                assert written is not None  # the names were just taken from the document
            return written
        names = tuple(document)
        if names != self._last_names:
            self._last_names = names
            self._last_plan = _remembered(self._plans, names, _plan)
        return orjson.dumps(self._last_plan(document.values()))

    def append(self, buffer: bytearray, head: bytes, offset: int, end: bytes,
               document: dict[str, Any]) -> None:
        """`buffer += head + (offset in hex + end, when offset >= 0) + encode(document) + b"\n"`:
        a bulk item (encode.py); nothing is appended when encoding raises."""
        if not self._compiled:
            buffer += bulk_item(head, offset, end, self.encode(document))
            return
        done = _nested.append(buffer, head, offset, end, self._last_steps, self._last_names,
                              document, orjson.dumps)
        if done == 2:  # equal names, other objects (the plan came from a document written
            # another way): the next documents likely share these, compared by identity then
            self._last_names = tuple(document)
        elif done == 0:
            names, found = self._new_steps(document)
            done = _nested.append(buffer, head, offset, end, found, names, document,
                                  orjson.dumps)
            assert done == 1  # the names were just taken from the document

    def _new_steps(self, document: dict[str, Any]) -> tuple[tuple[str, ...], Steps]:
        """The compiled writer's plan for `document`'s names, made the last one used."""
        names = tuple(document)
        found: Steps = _remembered(self._steps, names, steps)
        self._last_names, self._last_steps = names, found
        return names, found
