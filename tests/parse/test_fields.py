"""Field names and types: raw mode, captures, labels, addresses, and that the compiled fast
path agrees with the generic loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from receiver.config import ParseSettings
from receiver.parse import Parser
from receiver.parse.fields import Collected, field_reference, unescape_hash
from receiver.parse.mapper import FieldMapper
from tests.parse.corpus import all_frames
from tests.parse.helpers import map_both, parse
from tests.parse.real_lines import real_lines

SEED = (
    '<134>Nov 25 18:21:08 haproxy[11604]: {"ci":"127.0.0.1","cp":56572,'
    '"t":"25/Nov/2026:18:21:08.761","ft":"fe_json","b":"be_app","s":"s1",'
    '"Tl":"25/Nov/2026:18:21:08 +0000","Tw":0,"Tc":0,"Tr":1,"Tt":1,"ST":200,'
    '"r":"GET /a?x=1 HTTP/1.1", "HM":"GET", "HP":"/a", "B":161, "HQ":"?x=1", "HU":"/a?x=1",'
    ' "HV":"HTTP/1.1"}'
)


def test_raw_mode_keeps_log_format_keys_typed() -> None:
    doc = parse(SEED, field_names="raw")
    assert doc["ci"] == "127.0.0.1"
    assert doc["cp"] == 56572
    assert doc["ST"] == 200
    assert doc["HQ"] == "?x=1"
    assert doc["r"] == "GET /a?x=1 HTTP/1.1"
    assert doc["@timestamp"] == "2026-11-25T18:21:08.761Z"
    assert doc["event.duration"] == 1_000_000
    assert doc["process.pid"] == 11604  # header fields stay ECS
    assert "source.ip" not in doc and "haproxy.ci" not in doc


def test_raw_mode_types_httplog_positions() -> None:
    doc = parse(
        "<134>Nov 25 18:21:38 haproxy[1]: 127.0.0.1:49360 [25/Nov/2026:18:21:38.683] fe be/s1"
        ' 0/0/0/+5/5 200 +161 - - ---- 1/1/0/0/0 0/0 "GET / HTTP/1.1"',
        field_names="raw",
    )
    assert doc["cp"] == 49360
    assert doc["Tr"] == 5 and doc["B"] == 161  # `+` (logasap) dropped
    assert doc["tsc"] == "----"


def test_captures_are_named_from_settings() -> None:
    line = (
        "<134>Nov 25 18:22:38 haproxy[1]: 127.0.0.1:39398 [25/Nov/2026:18:22:38.366] fe be/s1"
        " 0/0/1/0/2 200 161 - - ---- 1/1/0/0/0 0/0 {corpus.example|Mozilla #22q#22 #7Cp#7C|}"
        ' {application/json} "GET / HTTP/1.1"'
    )
    doc = parse(line, capture_request_headers=["Host", "User-Agent", "X-Forwarded-For"],
                capture_response_headers=["custom.content_type"])
    assert doc["haproxy.http.request.headers.host"] == "corpus.example"
    assert doc["user_agent.original"] == 'Mozilla "q" |p|'
    assert "haproxy.http.request.headers.x_forwarded_for" not in doc  # empty slot
    assert doc["custom.content_type"] == "application/json"
    unnamed = parse(line)
    assert unnamed["haproxy.http.request.captured_headers"] == [
        "corpus.example", 'Mozilla "q" |p|', ""]


def test_response_only_captures() -> None:
    doc = parse(
        "<134>Nov 25 18:22:38 haproxy[1]: 127.0.0.1:1 [25/Nov/2026:18:22:38.366] fe be/s1"
        ' 0/0/1/0/2 200 161 - - ---- 1/1/0/0/0 0/0 {text/html} "GET / HTTP/1.1"',
        capture_response_headers=["Content-Type"],
    )
    assert doc["haproxy.http.response.headers.content_type"] == "text/html"


def test_labels_added_as_given() -> None:
    doc = parse(SEED, labels={"labels.group": "web-asg", "service.name": "edge"})
    assert doc["labels.group"] == "web-asg"
    assert doc["service.name"] == "edge"


@pytest.mark.parametrize(
    ("client", "ip"),
    [("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("2001:db8::1", "2001:db8::1"),
     ("unix", None), ("x.x.x.x", None), ("999.1.1.1", None)],
)
def test_client_addresses(client: str, ip: str | None) -> None:
    doc = parse(
        f"<134>Nov 25 18:22:38 haproxy[1]: {client}:1234 [25/Nov/2026:18:22:38.366] fe be/s1"
        ' 0/0/1/0/2 200 161 - - ---- 1/1/0/0/0 0/0 "GET / HTTP/1.1"'
    )
    assert doc["source.address"] == client
    assert doc.get("source.ip") == ip
    assert doc["source.port"] == 1234


def test_absolute_uri_is_split() -> None:
    doc = parse(header_json('{"r":"GET http://abs.example:8080/p/q?x=1 HTTP/1.1"}'))
    assert doc["url.original"] == "http://abs.example:8080/p/q?x=1"
    assert doc["url.scheme"] == "http"
    assert doc["url.domain"] == "abs.example"
    assert doc["url.port"] == 8080
    assert doc["url.path"] == "/p/q"
    assert doc["url.query"] == "x=1"


def header_json(body: str) -> str:
    return "<134>Nov 25 18:21:08 haproxy[1]: " + body


def test_unescape_hash() -> None:
    assert unescape_hash("a#22b#C3#A9#zz#2") == 'a"bé#zz#2'
    assert unescape_hash("#FF") == "\\xff"


def test_compiled_shapes_agree_with_the_generic_loop() -> None:
    """Every corpus body, and odd values for each kind, map the same both ways."""
    settings = ParseSettings(capture_request_headers=["Host"])
    mapper = FieldMapper(settings)
    samples: list[dict[str, Any]] = []
    for frame in all_frames():
        text = frame.message.decode("utf-8", "backslashreplace")
        start = text.find("{")
        if start >= 0:
            try:
                value = orjson.loads(text[start:].rstrip("\n"))
            except orjson.JSONDecodeError:
                continue
            if isinstance(value, dict):
                samples.append(value)
    odd_values: list[Any] = ["-", "", "+5", "x", None, -1, 1.5, True, "#22", "~", "http://h/p",
                             "<BADREQ>", "HTTP/1.1", "{a|b}", 7, [1], {"a": 1}]
    for key in ["ci", "cp", "t", "Tl", "Ts", "ft", "b", "Ta", "Tt", "ST", "r", "HM", "HP", "HU",
                "HQ", "HV", "B", "U", "tsc", "hr", "sslv", "ssl_fc_is_resumed", "fi", "zz"]:
        for value in odd_values:
            samples.append({key: value, "t": "25/Nov/2026:18:21:08.761"})
            samples.append({"Tl": "25/Nov/2026:18:21:08 +0000", key: value})
    assert len(samples) > 500
    for raw in samples:
        compiled_doc, seen_compiled, generic_doc, seen_generic = map_both(mapper, raw)
        assert compiled_doc == generic_doc, raw
        for slot in Collected.__slots__:
            if slot != "date_is_t":
                assert getattr(seen_compiled, slot) == getattr(seen_generic, slot), (raw, slot)


def test_field_reference_lists_every_variable() -> None:
    reference = field_reference()
    for key in ("ci", "Tw", "Ta", "tsc", "hr", "sslv"):
        assert f"| `{key}` |" in reference



def test_standard_patterns_agree_with_the_structural_reading() -> None:
    settings = ParseSettings(capture_request_headers=["Host", "User-Agent"],
                             capture_response_headers=["Content-Type"])
    fast, general = Parser(settings), Parser(settings)
    general.fast_paths = False
    used = 0
    messages = [frame.message for frame in all_frames()]
    messages += [line.line.encode() for line in real_lines()]
    for message in messages:
        fast_doc = fast.parse(message, 1795631000.0)
        assert list(fast_doc.items()) == list(general.parse(message, 1795631000.0).items()), (
            message)
        used += fast_doc["haproxy.log_format"] in ("httplog", "httpslog", "tcplog")
    assert used > 900


def test_readme_carries_the_generated_field_reference() -> None:
    readme = Path(__file__).resolve().parents[2] / "README.md"
    assert field_reference() in readme.read_text()


def test_compiled_text_shapes_agree_with_the_generic_loop() -> None:
    """A text line's tokens (numbers as checked text) map the same through the code generated
    for text as through the table-driven loop."""
    from receiver.parse import traffic

    mapper = FieldMapper(ParseSettings(capture_request_headers=["Host"]))
    bodies = [line.line.split("]: ", 1)[-1] for line in real_lines()]
    bodies += [frame.message.decode("utf-8", "backslashreplace").split("]: ", 1)[-1].rstrip()
               for frame in all_frames()]
    read = 0
    for body in bodies:
        for standard in (True, False):
            line = traffic.read(body, False, standard)
            if line is None:
                continue
            read += 1
            _, keys, values, _ = line
            compiled_doc: dict[str, Any] = {}
            seen_compiled = mapper.map_values(keys, values, compiled_doc, True)
            generic_doc: dict[str, Any] = {}
            seen_generic = Collected()
            mapper.map_generic(dict(zip(keys, values, strict=True)), generic_doc, True,
                               seen_generic)
            mapper.finish(seen_generic, generic_doc)
            assert list(compiled_doc.items()) == list(generic_doc.items()), body
            for slot in ("date", "date_kind", "duration_ms", "status", "termination"):
                assert getattr(seen_compiled, slot) == getattr(seen_generic, slot), (body, slot)
    assert read > 1200
