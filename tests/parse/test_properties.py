"""Property tests: log-format values with quotes, backslashes, unicode, empties and huge values
never make the parser raise, never lose the original, and always give serialisable documents."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.config import ParseSettings
from receiver.parse import TAG_FAILURE, Parser

PARSER = Parser(ParseSettings(capture_request_headers=["Host", "User-Agent"], keep_original=True))
RAW_PARSER = Parser(ParseSettings(field_names="raw", keep_original=True))
HEADERS = [
    "<134>Nov 25 18:21:08 haproxy[11604]: ",
    "<134>Nov 25 18:21:08 localhost haproxy[11604]: ",
    "<134>1 2026-11-25T18:21:08.763602+00:00 - haproxy 11604 - - ",
    "<6>",
    "",
]
NASTY = st.sampled_from(['"', "\\", "\\\"", "#22", "{", "}", "|", "\x00", "\n", "é", "☃", "-",
                         "+1", " ", "\\u00", "<BADREQ>", "]"])
VALUES = st.one_of(
    st.text(max_size=40),
    st.lists(NASTY, max_size=8).map("".join),
    st.text(min_size=2000, max_size=5000),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.just(""),
)
KEYS = st.sampled_from(["ci", "cp", "t", "ft", "b", "s", "Tw", "Tt", "ST", "r", "HM", "HP", "HQ",
                        "HU", "HV", "B", "tsc", "hr", "Tl", "ua", "zz"])


def kept_body(document: dict[str, Any]) -> str:
    """The body as the document keeps it: `message` when it could not be parsed (once),
    `event.original` otherwise (with keep_original)."""
    if TAG_FAILURE in document.get("tags", ()) and document["error.type"] != "binary":
        body: str = document["message"]
        assert "event.original" not in document
        return body
    original: str = document["event.original"]
    return original


def check(document: dict[str, Any], body: str) -> None:
    if document.get("error.type") != "binary":
        assert kept_body(document) == body
    assert len(document["@timestamp"]) == 24 and document["@timestamp"].endswith("Z")
    assert document["haproxy.log_format"]
    orjson.dumps(document)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=12), st.sampled_from(HEADERS),
       st.booleans(), st.integers(min_value=0, max_value=400))
def test_hand_built_json_never_raises(
    fields: dict[str, str], header: str, quote_numbers: bool, cut: int
) -> None:
    # Built like HAProxy does: values pasted between quotes without escaping.
    parts = []
    for key, value in fields.items():
        if not quote_numbers and value.lstrip("-").isdigit():
            parts.append(f'"{key}":{value}')
        else:
            parts.append(f'"{key}":"{value}"')
    body = "{" + ",".join(parts) + "}"
    if cut:
        body = body[:cut]
    for parser in (PARSER, RAW_PARSER):
        document = parser.parse((header + body).encode("utf-8", "surrogatepass"), 1795631000.0)
        expected = body.rstrip("\n\r\0 \t").lstrip(" \t")
        if header == "<134>1 2026-11-25T18:21:08.763602+00:00 - haproxy 11604 - - ":
            expected = expected.removeprefix("\ufeff")
        check(document, expected)


@settings(max_examples=300, deadline=None)
@given(st.lists(VALUES, min_size=0, max_size=20), st.sampled_from(HEADERS))
def test_httplog_like_lines_never_raise(values: list[str], header: str) -> None:
    body = "127.0.0.1:1 [25/Nov/2026:18:21:08.761] " + " ".join(values)
    document = PARSER.parse((header + body).encode("utf-8", "surrogatepass"), 1795631000.0)
    check(document, body.rstrip("\n\r\0 \t"))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_never_raise(data: bytes) -> None:
    document = PARSER.parse(data, 1795631000.0)
    assert document["@timestamp"]
    assert isinstance(kept_body(document), str)
    orjson.dumps(document)


class _BrokenParser(Parser):
    """A parser whose body stage fails, standing in for a bug not yet found."""

    def _body(self, body: str, doc: dict[str, Any], tags: list[str], traffic_tried: bool = False
              ) -> Any:
        raise RuntimeError("boom")


def test_a_bug_in_a_stage_still_returns_the_event() -> None:
    document = _BrokenParser(ParseSettings()).parse(b"<134>Nov 25 18:00:00 haproxy[1]: x\xff",
                                                    1795631000.0)
    assert document["error.type"] == "internal"
    assert "boom" in document["error.message"]
    assert document["message"] == "<134>Nov 25 18:00:00 haproxy[1]: x\\xff"
    assert "event.original" not in document  # kept once
    assert document["@timestamp"] == "2026-11-25T18:23:20.000Z"
    orjson.dumps(document)
