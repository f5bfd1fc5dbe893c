"""JSON bodies: the fast path, and the repair of what hand-built HAProxy templates produce."""

from __future__ import annotations

import orjson

from receiver.parse import TAG_FAILURE, TAG_REPAIRED, TAG_TRUNCATED
from receiver.parse.jsonbody import decode, repair
from tests.parse.helpers import parse

HEADER = "<134>Nov 25 18:21:18 haproxy[11604]: "


def test_valid_json_is_not_marked_repaired() -> None:
    result = decode('{"a":1,"b":"x"}')
    assert result.fields == {"a": 1, "b": "x"}
    assert result.repairs == [] and not result.truncated and result.error is None


def test_unescaped_backslashes_are_literal() -> None:
    body = ('{"r":"GET /q?path=C:\\dir\\file.txt&re=\\d+ HTTP/1.1", "HM":"GET", "HP":"/q",'
            ' "HQ":"?path=C:\\dir\\file.txt&re=\\d+"}')
    doc = parse(HEADER + body)
    assert doc["url.original"] == "/q?path=C:\\dir\\file.txt&re=\\d+"
    assert doc["url.query"] == "path=C:\\dir\\file.txt&re=\\d+"
    assert TAG_REPAIRED in doc["tags"]
    assert any("backslash" in repair for repair in doc["haproxy.repairs"])
    assert doc["event.original"] == body


def test_backslash_before_closing_quote() -> None:
    # `"HP":"/end\"` swallows the closing quote in strict JSON.
    body = ('{"cp":43804,"r":"GET /end\\ HTTP/1.1", "HM":"GET", "HP":"/end\\", "B":161,'
            ' "HQ":"", "HU":"/end\\", "HV":"HTTP/1.1"}')
    doc = parse(HEADER + body)
    assert doc["url.path"] == "/end\\"
    assert doc["url.original"] == "/end\\"
    assert doc["haproxy.bytes_read"] == 161
    assert doc["http.version"] == "1.1"
    assert doc["source.port"] == 43804


def test_hash_escapes_are_decoded() -> None:
    doc = parse(HEADER + '{"r":"GET /say/#22hello#22/caf#C3#A9 HTTP/1.1","HP":"/say/#22hello#22"}')
    assert doc["url.path"] == '/say/"hello"'
    assert doc["url.original"] == "/say/#22hello#22/caf#C3#A9"  # exactly as logged


def test_dash_and_plus_numbers() -> None:
    result = repair('{"Tw":-,"Tc":+12,"Tr":-1,"x":abc,"f":1.5}')
    assert result.fields == {"Tw": None, "Tc": 12, "Tr": -1, "x": "abc", "f": 1.5}
    assert result.error is None
    doc = parse(HEADER + '{"Tw":-,"Tc":+12,"Tr":-1,"ST":-}')
    assert doc["haproxy.time_connect_ms"] == 12
    assert doc["haproxy.time_response_ms"] == -1
    assert "haproxy.time_queue_ms" not in doc
    assert "http.response.status_code" not in doc


def test_truncated_line_keeps_whole_fields_only() -> None:
    body = '{"ci":"127.0.0.1","cp":56574,"ST":200,"r":"GET /status/200 HTTP/1.1", "HM":"GET", "HP":"/'
    doc = parse(HEADER + body)
    assert doc["source.port"] == 56574
    assert doc["http.request.method"] == "GET"
    assert doc["url.original"] == "/status/200"  # from the whole %r
    assert TAG_TRUNCATED in doc["tags"] and TAG_REPAIRED in doc["tags"]
    # A number at the very end may be cut (161 -> 16): dropped.
    cut = repair('{"a":"x","B":16')
    assert cut.fields == {"a": "x"} and cut.truncated


def test_truncated_json_converter_output_keeps_escapes() -> None:
    result = repair('{"HU":"\\/a\\/b","HP":"\\/a\\/b","ua":"x\\"y","HQ":"\\/cut')
    assert result.fields == {"HU": "/a/b", "HP": "/a/b", "ua": 'x"y'}
    assert result.truncated and result.error is None


def test_control_characters_and_invalid_utf8() -> None:
    doc = parse(HEADER.encode() + b'{"HP":"/a\x01b","HM":"GET","x":"\xff\xfe"}')
    assert doc["url.path"] == "/a\x01b"
    assert doc["haproxy.x"] == "\\xff\\xfe"  # undecodable bytes stay visible
    orjson.dumps(doc)


def test_unreadable_json_is_kept_as_message() -> None:
    doc = parse(HEADER + "{this is not json at all")
    assert doc["message"] == "{this is not json at all"
    assert TAG_FAILURE in doc["tags"]
    assert doc["error.message"]
    assert doc["haproxy.log_format"] == "text"


def test_json_array_body_is_a_failure_with_message() -> None:
    doc = parse(HEADER + "[1,2]")
    assert TAG_FAILURE in doc["tags"]
    assert doc["message"] == "[1,2]"


def test_nested_values_and_unknown_keys() -> None:
    doc = parse(HEADER + '{"cp":1,"extra":{"a":[1,2]},"my_field":"v","n":-}')
    assert doc["haproxy.extra"] == {"a": [1, 2]}
    assert doc["haproxy.my_field"] == "v"
    assert "haproxy.n" not in doc


def test_text_after_the_object_keeps_every_field() -> None:
    result = repair('{"a":1} trailing')
    assert result.fields == {"a": 1}
    assert result.repairs and result.trailing == "trailing" and not result.truncated
    doc = parse(HEADER + '{"ci":"10.0.0.1","ST":200,"r":"GET / HTTP/1.1"} extra')
    assert doc["source.ip"] == "10.0.0.1"
    assert doc["http.response.status_code"] == 200
    assert doc["url.path"] == "/"
    assert doc["haproxy.trailing_text"] == "extra"
    assert doc["tags"] == [TAG_REPAIRED]  # not cut: nothing was lost
    braces = parse(HEADER + '{"ci":"10.0.0.1","ST":200} {x} }')
    assert braces["http.response.status_code"] == 200
    assert braces["haproxy.trailing_text"] == "{x} }"
    # Needing the scanner too (a literal backslash), the text is still kept.
    scanned = parse(HEADER + '{"HP":"/a\\b","ST":-} tail')
    assert scanned["haproxy.trailing_text"] == "tail"


def test_json_converter_dash_is_no_value() -> None:
    doc = parse(HEADER + '{"HQ":"-","ua":"-","HM":"GET","HU":"\\/x"}')
    assert "url.query" not in doc
    assert "user_agent.original" not in doc
    assert doc["url.original"] == "/x"


def test_fast_cut_repair_agrees_with_the_scanner() -> None:
    """Every prefix of a seed body: the quick path for cut lines keeps the same fields."""
    from receiver.parse.jsonbody import _cut_short, _Scanner

    body = ('{"ci":"127.0.0.1","cp":56572,"t":"25/Nov/2026:18:21:08.761","ft":"fe_json",'
            '"Tw":0,"Tc":-1,"ST":200,"r":"GET /a,b HTTP/1.1", "HM":"GET", "HP":"/a,b", "B":161,'
            ' "HQ":"", "HU":"/a,b", "HV":"HTTP/1.1", "n":{"x":[1,2]}}')
    quick_used = 0
    for cut in range(1, len(body)):
        prefix = body[:cut]
        quick = _cut_short(prefix)
        scanned = _Scanner(prefix, literal=False).run()
        if quick is not None:
            quick_used += 1
            assert quick.fields == scanned.fields, prefix
            assert quick.truncated
    assert quick_used > len(body) // 2


def test_the_body_is_kept_only_on_tagged_events_by_default() -> None:
    clean = parse(b'<134>Nov 25 18:00:00 haproxy[1]: {"ci":"10.0.0.1","ST":200}', keep_original=False)
    assert "event.original" not in clean and clean["http.response.status_code"] == 200
    repaired_body = '{"ci":"10.0.0.1","ST":-}'
    repaired = parse(f"<134>Nov 25 18:00:00 haproxy[1]: {repaired_body}", keep_original=False)
    assert repaired["tags"] and repaired["event.original"] == repaired_body
    kept = parse(b'<134>Nov 25 18:00:00 haproxy[1]: {"ci":"10.0.0.1","ST":200}', keep_original=True)
    assert kept["event.original"] == '{"ci":"10.0.0.1","ST":200}'
