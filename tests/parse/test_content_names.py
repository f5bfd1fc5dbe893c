"""A body's key never lands on a name of the receiver's own (issue 27, item 8): every name the
index template types (aliases included) and every variable's field is taken, and a key that
would land on one, inside one or around one is kept as `haproxy.body.<key>`, by the generated
mapping and the generic loop alike."""

from __future__ import annotations

import time

from receiver.config import ParseSettings
from receiver.parse import Parser
from receiver.parse.fields import DERIVED_NAMES, FIELDS
from receiver.parse.names import ContentNames
from receiver.ship.template import load_template_file


def _template_names(properties: dict[str, object], prefix: str = "") -> list[str]:
    names: list[str] = []
    for key, spec in properties.items():
        assert isinstance(spec, dict)
        if "properties" in spec:
            names += _template_names(spec["properties"], f"{prefix}{key}.")
        else:
            names.append(prefix + key)
    return names


def test_every_name_of_the_receiver_is_taken() -> None:
    names = ContentNames()
    template = _template_names(load_template_file()["template"]["mappings"]["properties"])
    assert len(template) > 150
    own = [*template, *(name for name, _ in FIELDS.values()), *DERIVED_NAMES]
    assert [name for name in own if not names.taken(name)] == []
    # where a colliding key goes is nobody's
    assert [name for name in own if name.startswith("haproxy.body")] == []


def test_colliding_keys_are_kept_under_their_own_names_in_both_mappings() -> None:
    body = (b'{"ST":200,"log_format":"a","syslog_format":"b","repairs":"c","source":"d",'
            b'"termination":"e","termination.cause":"f","log_format.x":1,"zz":2,"body":3}')
    line = b"<134>Nov 25 18:21:18 haproxy[7]: " + body
    parser = Parser(ParseSettings())
    first = parser.parse(line, time.time())  # the generic loop builds the shape...
    second = parser.parse(line, time.time())  # ...then the generated function maps it
    for document in (first, second):
        assert document["haproxy.log_format"] == "json"
        assert document["haproxy.syslog_format"] == "local"
        assert {k: v for k, v in document.items() if k.startswith("haproxy.body")} == {
            "haproxy.body.log_format": "a", "haproxy.body.syslog_format": "b",
            "haproxy.body.repairs": "c", "haproxy.body.source": "d",
            "haproxy.body.termination": "e", "haproxy.body.termination.cause": "f",
            "haproxy.body.log_format.x": 1, "haproxy.body.body": 3}
        assert document["haproxy.zz"] == 2
    raw = Parser(ParseSettings(field_names="raw")).parse(
        line.replace(b'"zz"', b'"haproxy.log_format":"g","tags":["h"],"zz"'), time.time())
    assert (raw["haproxy.log_format"], raw["haproxy.body.haproxy.log_format"]) == ("json", "g")
    assert raw["haproxy.body.tags"] == ["h"] and raw["log_format"] == "a" and raw["zz"] == 2
