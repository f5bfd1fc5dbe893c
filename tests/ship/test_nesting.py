"""`_source` as nested objects: the definition (`nest`), the fast encoder held equal to it, the
rule for a name that is both a value and an object, and the receiver's own names never being
both."""

from __future__ import annotations

import json
import random
import shutil
import sysconfig
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.config import ParseSettings
from receiver.parse import Parser
from receiver.parse.fields import DERIVED_NAMES, FIELDS
from receiver.parse.names import ECS_NAMES, OWN_PREFIXES
from receiver.ship import nesting
from receiver.ship.nesting import NestedEncoder, nest
from tests.support import flatten

REAL_LINES = Path(__file__).resolve().parents[1] / "parse" / "data" / "real_lines.jsonl"
SEED = (b'<134>Nov 25 18:21:08 haproxy[1]: {"ci":"10.0.0.1","cp":4000,"ST":503,"ft":"web",'
        b'"r":"GET /a?b=1 HTTP/1.1","t":"25/Nov/2026:18:21:08.123"}')


def real_documents() -> list[dict[str, Any]]:
    parser = Parser(ParseSettings())
    documents = []
    for text in REAL_LINES.read_text().splitlines():
        record = json.loads(text)
        received = datetime.fromisoformat(record["received"].replace("Z", "+00:00")).timestamp()
        documents.append(parser.parse(record["line"].encode(), received))
    return documents


def test_nest_writes_each_prefix_once_in_first_appearance_order() -> None:
    document = {"log.syslog.priority": 134, "log.level": "info", "log.syslog.facility.code": 16,
                "host.name": "h", "related.ip": ["10.0.0.1"], "source.geo.location":
                {"lat": 1.5, "lon": 2.5}, "@timestamp": "t"}
    assert nest(document) == {
        "log": {"syslog": {"priority": 134, "facility": {"code": 16}}, "level": "info"},
        "host": {"name": "h"}, "related": {"ip": ["10.0.0.1"]},
        "source": {"geo": {"location": {"lat": 1.5, "lon": 2.5}}}, "@timestamp": "t"}
    assert list(nest(document)) == ["log", "host", "related", "source", "@timestamp"]


def test_a_value_whose_name_is_also_an_object_goes_inside_it_under_value() -> None:
    # Either order; a name that already says `_value` keeps it, the moved value takes the next.
    assert nest({"a.b": 1, "a.b.c": 2}) == {"a": {"b": {"_value": 1, "c": 2}}}
    assert nest({"a.b.c": 2, "a.b": 1}) == {"a": {"b": {"c": 2, "_value": 1}}}
    assert nest({"a.b.c": 2, "a.b._value": 3, "a.b": 1}) == {
        "a": {"b": {"c": 2, "_value": 3, "__value": 1}}}
    assert nest({"a.b": 1, "a.b.c": 2, "a.b._value": 3}) == {
        "a": {"b": {"_value": 1, "c": 2, "__value": 3}}}
    # A value that is itself a dict is a value, not an object to merge into.
    assert nest({"x": {"y": 1}, "x.z": 2}) == {"x": {"_value": {"y": 1}, "z": 2}}
    every_value = sorted(map(str, flatten(nest({"a.b": 1, "a.b.c": 2, "a.b._value": 3,
                                                "a": 0})).values()))
    assert every_value == ["0", "1", "2", "3"]  # nothing lost


def test_the_receivers_own_names_are_never_both_a_value_and_an_object() -> None:
    names = set(ECS_NAMES) | {name for name, _ in FIELDS.values()} | set(DERIVED_NAMES)
    both = sorted(a for a in names if any(b.startswith(a + ".") for b in names))
    assert both == []
    # ... nor a family the receiver fills with names of its own making (`source.geo.*`).
    assert sorted(n for n in names if any(p.startswith(n + ".") for p in OWN_PREFIXES)) == []


# Both ways of `NestedEncoder`: the compiled writer (where it was built) and the Python plans.
WAYS = [pytest.param(True, id="compiled"), pytest.param(False, id="python")]


def test_the_compiled_writer_is_built_wherever_a_compiler_is() -> None:
    # It is optional at install (the package works without it, slower): where a C compiler and
    # Python's headers are, as here and in CI, a missing build is a fault to see, not to skip.
    headers = Path(sysconfig.get_paths()["include"], "Python.h").exists()
    if shutil.which("cc") and headers:
        assert nesting.COMPILED, "receiver/ship/_nested.c was not built: reinstall the package"


@pytest.fixture(params=WAYS)
def compiled(request: pytest.FixtureRequest) -> bool:
    if request.param and not nesting.COMPILED:
        pytest.skip("the compiled writer was not built here")
    return bool(request.param)


def test_the_fast_encoder_writes_what_nest_defines(compiled: bool) -> None:
    documents = [*real_documents(), Parser(ParseSettings()).parse(SEED, 1764094868.0)]
    weird: list[dict[str, Any]] = [
        {"a.b": 1, "a.b.c": 2, "a.b._value": 3}, {"a": 1},
        {'q"uote.x': "\"\\", "back\\slash.y": "\x01", "per%cent.s": "%s", "ünï.cödé": "ü"},
        {"x": {"y": 1, "z": [1, {"a.b": 2}]}, "x.w": None, "e": [], "f": 1.5, "t": True},
        {".lead": 1, "trail.": 2, "dou..ble": 3, "": 4},
    ]
    encoder = NestedEncoder(compiled)
    rng = random.Random(7)
    for document in documents + weird + [dict(rng.sample(list(d.items()), len(d)))
                                         for d in documents[:20]]:
        for _ in range(2):  # the plan is made once, then used
            assert encoder.encode(document) == orjson.dumps(nest(document)), document


def test_the_last_plan_and_the_remembered_ones_write_what_nest_defines(compiled: bool) -> None:
    """Layouts interleaved, repeated, and more of them than are remembered (the table is
    cleared while the last plan stays in use): every output is `orjson.dumps(nest(...))`."""
    a: dict[str, Any] = {"a.b": 1, "a.c": "x"}
    b: dict[str, Any] = {"a.c": "y", "a.b": 2}  # the same names in another order: another layout
    many: list[dict[str, Any]] = [{f"n{i}.v": i, "n.w": i} for i in range(300)]
    encoder = NestedEncoder(compiled)
    for document in [a, a, b, a, b, b, *many, a, many[-1], many[-1], {}, a, {"a": 3}, a]:
        assert encoder.encode(document) == orjson.dumps(nest(document)), document


def test_every_value_kind_is_written_as_orjson_writes_it(compiled: bool) -> None:
    """Each kind of value the writer writes itself (strings with every escape, the edges of
    64-bit integers, arrays) or hands to orjson (floats, dicts, subclasses, deep arrays)."""
    class Text(str):
        pass

    deep: Any = 1
    for _ in range(100):  # deeper than the writer goes itself, within orjson's limit
        deep = [deep]
    values: list[Any] = [
        "", "plain", '"', "\\", "".join(map(chr, range(32))) + "\x7f ünï€😀", "\u2028",
        0, -1, 2**63 - 1, -(2**63), 2**64 - 1, True, False, None, [], (), ["a", 1, [None, 2.5]],
        ("web",), 1.5, 1e16, -0.0, {"a": {"b": [1]}}, Text("sub"), [[[[[[[[[["deep"]]]]]]]]]],
        deep,
    ]
    encoder = NestedEncoder(compiled)
    for value in values:
        document = {"a.b": value, "a.c": 1, "d": value}
        assert encoder.encode(document) == orjson.dumps(nest(document)), value


def test_what_json_cannot_carry_fails_as_orjson_fails(compiled: bool) -> None:
    # encode.py turns these into an `unencodable` document: the same errors either way
    encoder = NestedEncoder(compiled)
    too_deep: Any = 1
    for _ in range(300):  # beyond orjson's recursion limit
        too_deep = [too_deep]
    for value in [2**64, -(2**63) - 1, "\ud800", [2**64], {1: 2}, object(), too_deep]:
        with pytest.raises(TypeError):
            encoder.encode({"a.b": value})
        with pytest.raises(TypeError):
            orjson.dumps(nest({"a.b": value}))


# Any value a document may hold (and some it never does): every string, integers of any size,
# floats, nested arrays and objects; names with dots, empty parts and odd characters.
_TEXT = st.text(st.characters(exclude_categories=()))  # lone surrogates too
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner)
    | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=12)
_NAMES = st.lists(st.text(alphabet="ab.é_\"\\", max_size=6), max_size=12, unique=True)


@given(names=_NAMES, values=st.lists(_VALUES, min_size=12, max_size=12))
@settings(max_examples=300, deadline=None)
def test_any_document_is_written_as_nest_defines_or_fails_alike(
        names: list[str], values: list[Any]) -> None:
    document = dict(zip(names, values, strict=False))
    try:
        expected: bytes | None = orjson.dumps(nest(document))
    except TypeError:
        expected = None
    for way in (True, False) if nesting.COMPILED else (False,):
        encoder = NestedEncoder(way)
        for _ in range(2):  # a new plan, then the same plan again
            if expected is None:
                with pytest.raises(TypeError):
                    encoder.encode(document)
            else:
                assert encoder.encode(document) == expected


def test_nested_documents_hold_the_same_fields_and_are_smaller() -> None:
    encoder = NestedEncoder()
    for document in real_documents():
        encoded = encoder.encode(document)
        assert flatten(json.loads(encoded)) == json.loads(orjson.dumps(document))
        if len(document) >= 25:  # a short one (a text line) may take a few bytes more
            assert len(encoded) < len(orjson.dumps(document)) - 150


def test_a_senders_keys_that_would_make_a_name_both_are_kept_whole() -> None:
    # JSON keys `x` and `x.y`: `haproxy.x` = 1 beside `haproxy.x.y` = 2. Flat, Elasticsearch
    # refused such a document (a dead letter); nested, the 1 is kept inside as `_value`.
    line = b'<134>Nov 25 18:21:18 haproxy[7]: {"ci":"10.0.0.1","x":1,"x.y":2}'
    document = Parser(ParseSettings()).parse(line, 1764094878.0)
    assert (document["haproxy.x"], document["haproxy.x.y"]) == (1, 2)
    encoded = json.loads(NestedEncoder().encode(document))
    assert encoded["haproxy"]["x"] == {"_value": 1, "y": 2}


def test_append_writes_an_item_as_encode_does(compiled: bool) -> None:
    """`append` = head, the hex offset and its end (offset >= 0), `encode`, a newline; nothing on
    an error; names equal to the last plan's but other objects (a plan made from a document
    written another way) are taken, and still give the same bytes."""
    def fresh(name: str) -> str:  # an equal str that is another object
        return "".join(list(name))

    documents: list[dict[str, Any]] = [
        {"a.b": 1, "a.c": "x"}, {fresh("a.b"): 2, fresh("a.c"): "y"}, {"a.b": 3, "a.c": "z"},
        {"d": [1, "é"]}, {}, {fresh("d"): None},
    ]
    encoder = NestedEncoder(compiled)
    expected_buffer = bytearray()
    buffer = bytearray()
    for number, document in enumerate(documents):
        for offset in (-1, 0, 255, 2**40 + number):
            encoder.append(buffer, b"head", offset, b"!end\n", document)
            tail = b"%x!end\n" % offset if offset >= 0 else b""
            expected_buffer += b"head" + tail + orjson.dumps(nest(document)) + b"\n"
        assert buffer == expected_buffer
    with pytest.raises(TypeError):
        encoder.append(buffer, b"head", 1, b"!", {"a.b": 2**64})
    assert buffer == expected_buffer  # nothing appended
