"""No column shifts: an extra token or blank inserted anywhere into a line (between its tokens,
outside quoted requests and `{captures}`; between a JSON object's members) never gives a field a
value the clean line does not give it. The document may lose fields (the line is then tagged,
or the token kept under `haproxy.extra_tokens`), never gain a wrong one.

Every real line and every corpus frame is tried at every boundary with tokens shaped like each
part of a traffic line (a status, a byte count, timers, a termination state, counts, an
address...), and hypothesis adds random tokens at random boundaries."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.config import ParseSettings
from receiver.parse import TAG_FAILURE, Parser
from tests.parse.corpus import RECEIVED_AT, all_frames
from tests.parse.real_lines import real_lines

PARSER = Parser(ParseSettings(keep_original=True, capture_request_headers=["Host"]))
# Shaped like the parts of a traffic line, and like the values custom formats add.
TOKENS = ["x", "-", "0", "200", "404", "+5", "-1", "a/b", "fe~", "be/srv", "1/2", "1/2/3",
          "-1/-1/5", "1/2/3/4/5", "0/0/0/0/0", "----", "--", "CD", "LR--", "site.domain.com",
          "10.0.0.1:80", "<NOSRV>", "0/0/0/0/1", "1wt.eu/TLSv1.3/TLS_AES_256_GCM_SHA384"]
# Fields that describe the reading rather than the event.
_ABOUT_THE_READING = frozenset((
    "tags", "event.original", "message", "error.type", "error.message", "haproxy.repairs",
    "haproxy.extra_tokens", "haproxy.trailing_text", "haproxy.log_format", "event.kind",
    "event.category", "event.type", "haproxy.claimed_time",
))


def boundaries(body: str) -> list[int]:
    """Where a token may go: between tokens outside quotes and braces (text lines); after
    `{` or `,` and before `}` outside strings (JSON, valid JSON only: its escapes are known)."""
    json_body = body[:1] == "{"
    if json_body:
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError:
            return []
    found = [0, len(body)]
    quote = brace = escaped = False
    for i, c in enumerate(body):
        if quote:
            if escaped:
                escaped = False
            elif c == "\\" and json_body:
                escaped = True
            elif c == '"':
                quote = False
            continue
        if c == '"':
            quote = True
        elif c == "{" and not json_body:
            brace = True
        elif c == "}" and not json_body:
            brace = False
        elif not brace:
            if json_body and c in ",{":
                found.append(i + 1)
            elif (json_body and c == "}") or (not json_body and c == " "):
                found.append(i)
    return sorted(set(found))


def header_only(prefix: str, received: float) -> dict[str, Any]:
    """The document of the same header with a body that reads as nothing: its `@timestamp`
    is the fallback a document that lost its own date may have."""
    return PARSER.parse((prefix + "\x01").encode(), received)


def check_insertion(clean: dict[str, Any], prefix: str, body: str, at: int, token: str,
                    received: float, fallback: dict[str, Any]) -> None:
    if at == 0 and body[:1] == "[" and ":" in token:
        return  # `host:port` before a line without one makes a whole line, not a shifted one
    if token:
        inserted = body[:at] + (" " if at else "") + token + ("" if at else " ") + body[at:]
    else:
        inserted = body[:at] + " " + body[at:]
    doc = PARSER.parse((prefix + inserted).encode(), received)
    for key, value in doc.items():
        if key in _ABOUT_THE_READING:
            continue
        if key == "@timestamp" and value != clean[key]:
            assert value == fallback[key], (inserted, key, value, clean[key])
            continue
        assert key in clean and clean[key] == value, (
            f"{inserted!r}\n  {key} = {value!r}, clean: {clean.get(key)!r}")


def split(message: bytes, received: float) -> tuple[dict[str, Any], str, str] | None:
    """(clean document, header text, body) of a message the parser reads as a log line
    (HAProxy's own messages are prose: a word inserted into them is part of their text)."""
    clean = PARSER.parse(message, received)
    if TAG_FAILURE in clean.get("tags", ()) or clean["haproxy.log_format"] == "text":
        return None
    body: str = clean["event.original"]
    text = message.decode("utf-8", "backslashreplace").rstrip("\n\r\0 \t")
    at = text.rfind(body)
    if at < 0:
        return None
    return clean, text[:at], body


def insert_at_one_boundary(message: bytes, received: float, token: str,
                           pick: Callable[[list[int]], int]) -> bool:
    """Insert `token` at the boundary `pick` chooses and check the document; False when the
    message has no body to insert into (nothing was tried)."""
    parts = split(message, received)
    if parts is None:
        return False
    clean, prefix, body = parts
    places = boundaries(body)
    if not places:
        return False
    check_insertion(clean, prefix, body, pick(places), token, received,
                    header_only(prefix, received))
    return True


def test_real_lines_at_every_boundary_with_every_token() -> None:
    tried = 0
    for line in real_lines():
        parts = split(line.line.encode(), line.received)
        if parts is None:
            continue
        clean, prefix, body = parts
        fallback = header_only(prefix, line.received)
        for at in boundaries(body):
            for token in ["", *TOKENS]:
                check_insertion(clean, prefix, body, at, token, line.received, fallback)
                tried += 1
    assert tried > 30_000


_FRAMES = [frame.message for frame in all_frames()]


def test_corpus_frames_at_every_boundary() -> None:
    tried = 0
    for message in _FRAMES[::7]:
        parts = split(message, RECEIVED_AT)
        if parts is None:
            continue
        clean, prefix, body = parts
        fallback = header_only(prefix, RECEIVED_AT)
        for at in boundaries(body):
            for token in ("", "x", "200", "1/2/3/4/5", "----", "be/srv"):
                check_insertion(clean, prefix, body, at, token, RECEIVED_AT, fallback)
                tried += 1
    assert tried > 10_000


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(_FRAMES), st.integers(min_value=0), st.one_of(
    st.sampled_from(TOKENS),
    st.text(alphabet="0123456789/-+.:~abcSCDLR<>", min_size=1, max_size=12)))
def test_any_corpus_frame_any_token(message: bytes, where: int, token: str) -> None:
    insert_at_one_boundary(message, RECEIVED_AT, token, lambda places: places[where % len(places)])


def test_random_tokens_at_random_places() -> None:
    """A seeded sweep wider than hypothesis' examples: random tokens of the characters
    traffic lines are made of, at random boundaries of every real line and corpus frame. (An
    opening brace, not a closing one: a whole `{capture}` put where there was none makes a
    whole line, as a whole quoted request would.)"""
    rng = random.Random(20261130)
    alphabet = "0123456789/-+.:~abcSCDLR<>TLSv{"
    sources = [(line.line.encode(), line.received) for line in real_lines()]
    sources += [(message, RECEIVED_AT) for message in _FRAMES]
    tried = 0
    for _ in range(30_000):
        message, received = rng.choice(sources)
        token = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 14)))
        tried += insert_at_one_boundary(message, received, token, rng.choice)
    assert tried > 15_000
