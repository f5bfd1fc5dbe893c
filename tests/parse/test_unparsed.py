"""What cannot be parsed is kept once, and a hostile datagram's document stays near its size.

Issue 17.3: 2,000 datagrams of `b"\\x01" * 65507` became 1.09 GB of spool: the body was stored
twice (`message` and `event.original`), each escaped (`\\u0001`: 6 bytes per byte)."""

from __future__ import annotations

import base64
import random

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.config import ParseSettings
from receiver.parse import TAG_FAILURE, Parser

RECEIVED = 1795631000.0
PARSERS = [Parser(ParseSettings()), Parser(ParseSettings(keep_original=True))]
UDP_MAX = 65507


def document_bytes(data: bytes, parser: Parser) -> int:
    return len(orjson.dumps(parser.parse(data, RECEIVED)))


def test_a_text_body_that_cannot_be_parsed_is_kept_once_as_message() -> None:
    body = "this is not a HAProxy line at all"
    for parser in PARSERS:
        doc = parser.parse(f"<134>Nov 25 18:00:00 haproxy[1]: {body}".encode(), RECEIVED)
        assert doc["tags"] == [TAG_FAILURE]
        assert doc["message"] == body
        assert "event.original" not in doc  # ECS: message is what a person reads and searches
        assert doc["event.kind"] == "pipeline_error"


def test_a_binary_datagram_is_kept_once_base64_in_event_original() -> None:
    data = b"\x01" * UDP_MAX
    for parser in PARSERS:
        doc = parser.parse(data, RECEIVED)
        assert doc["error.type"] == "binary"
        assert base64.b64decode(doc["event.original"]) == data
        assert data.decode() not in doc["message"]  # a short description, not the bytes
        assert len(doc["message"]) < 100


def test_document_bytes_per_received_byte_are_bounded() -> None:
    """Measured: 1.34 document bytes per byte for both 64 KiB datagrams (it was 12)."""
    rng = random.Random(17)
    noise = bytes(rng.randrange(256) for _ in range(UDP_MAX))
    for data in (b"\x01" * UDP_MAX, noise, b"<134>" + noise[:UDP_MAX - 5]):
        for parser in PARSERS:
            ratio = document_bytes(data, parser) / len(data)
            assert ratio < 1.4, (data[:20], ratio)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b'"', b"\\", b"\x01", b"\xff", b"\xc3\xa9", b"a", b" ", b"{",
                                 b"\x00", b"\t", b"#22"]), min_size=1, max_size=3000))
def test_no_body_costs_more_than_two_and_a_half_bytes_per_byte(pieces: list[bytes]) -> None:
    # Text is escaped (a quote or backslash costs 2 bytes in JSON); a body more than 1/8
    # control characters or not UTF-8 is base64 (4/3); below that share, escapes cost 6.
    data = b"".join(pieces)
    for parser in PARSERS:
        assert document_bytes(data, parser) <= 2.5 * len(data) + 1000
