"""The hot path's shortcuts give exactly what the general path gives, key order included:
the inline JSON branch of `Parser._parse`, the compiled mapper's inline query and address
checks and request-line fill-in, the IPv4 pattern, the whole-text date cache, and the RFC 5424
structured-data scan by search instead of by character, and the syslog header memo."""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.config import ParseSettings
from receiver.parse import TAG_REPAIRED, TAG_TRUNCATED, Parser, fields, syslog
from receiver.parse.fields import is_ip
from receiver.parse.mapper import FieldMapper
from receiver.parse.syslog import _parse_sd_escaped, _parse_sd_plain, _sd_end
from receiver.parse.timestamps import Timestamps
from tests.parse.corpus import RECEIVED_AT, all_frames, corpus_files, frames
from tests.parse.helpers import map_both

HEADER = b"<134>Nov 25 18:21:08 localhost haproxy[22]: "
BENCH_BODY = (
    b'{"ci":"10.0.1.2","cp":1029,"t":"25/Nov/2026:19:47:11.005","ft":"fe_http","b":"be_app",'
    b'"s":"app1","Tl":"-","Tw":0,"Tc":0,"Tr":0,"Tt":1,"ST":200,'
    b'"r":"GET /api/v1/items?id=5 HTTP/1.1", "HM":"GET", "HP":"/api/v1/items", "B":200, '
    b'"HQ":"?id=5", "HU":"/api/v1/items?id=5", "HV":"HTTP/1.1", "seq":5, "sent_us":17956}'
)
QUERIES = ["?id=5", "?", "", "-", "id=5", "?a#22b", "?#C3#A9", "??x", "#22", None, 5]


def variants() -> list[bytes]:
    """Bodies around the benchmark line: each query form, cut lines, invalid and non-object
    JSON, other client addresses and a shape without `HU`/`HV`."""
    bodies = [BENCH_BODY]
    for query in QUERIES:
        value = "null" if query is None else str(query) if isinstance(query, int) else (
            f'"{query}"')
        bodies.append(BENCH_BODY.replace(b'"?id=5"', value.encode()))
    for client in ("::1", "unix", "-", "", "256.1.1.1", "01.2.3.4", "1.2.3.4.5", "fe80::1"):
        bodies.append(BENCH_BODY.replace(b"10.0.1.2", client.encode()))
    bodies += [
        BENCH_BODY[:150], BENCH_BODY[:-1], BENCH_BODY.replace(b'"r":"GET', b'"r":"G\\ET'),
        b'{"ci":"1.2.3.4","r":"GET /x?y=1 HTTP/1.1","HQ":"?y=1"}', b"[1, 2]", b'"text"',
        b"{}", b"{", b'{"t":"25/Nov/2026:19:47:11.5"}', b'{"t":"25/Nov/2026:19:47:11"}',
        b'{"t":"bad date here, 24 ch"}', b'{"Ts":1795631000.25,"ST":"-"}',
    ]
    return [HEADER + body for body in bodies]


def items(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    return list(doc.items())


def test_inline_json_branch_agrees_with_the_general_path() -> None:
    for pinned in ("auto", "json"):
        fast = Parser(ParseSettings(format=pinned))
        general = Parser(ParseSettings(format=pinned))
        general.json_first = False  # every body through `_body` -> `_json`
        messages = [frame.message for frame in all_frames()] + variants()
        json_docs = repaired = 0
        for message in messages:
            fast_doc = fast.parse(message, RECEIVED_AT)
            assert items(fast_doc) == items(general.parse(message, RECEIVED_AT)), message
            json_docs += fast_doc.get("haproxy.log_format") == "json"
            repaired += TAG_REPAIRED in fast_doc.get("tags", ())
        assert json_docs > 500
        assert repaired > 20


def test_the_benchmark_line_is_mapped_in_full() -> None:
    doc = Parser(ParseSettings()).parse(HEADER + BENCH_BODY, RECEIVED_AT)
    assert doc["source.ip"] == "10.0.1.2"
    assert doc["url.query"] == "id=5"
    assert doc["url.original"] == "/api/v1/items?id=5"
    assert doc["@timestamp"] == "2026-11-25T19:47:11.005Z"
    assert doc["haproxy.seq"] == 5
    assert "tags" not in doc
    cut = Parser(ParseSettings()).parse(HEADER + BENCH_BODY[:150], RECEIVED_AT)
    assert TAG_TRUNCATED in cut["tags"]


def test_compiled_query_address_and_fill_in_agree_with_the_generic_loop() -> None:
    mapper = FieldMapper(ParseSettings())
    samples: list[dict[str, Any]] = []
    for query in QUERIES:
        samples.append({"ci": "10.1.2.3", "r": "GET /p?q=1 HTTP/1.1", "HQ": query})
        samples.append({"HQ": query, "HU": "/p?x#22", "HP": "/p"})
        samples.append({"r": "GET http://h:81/p?z HTTP/1.0", "HM": "GET", "HQ": query})
    for client in ("10.0.0.1", "::1", "unix", "-", "", "999.1.1.1", "1.2.3"):
        samples.append({"ci": client, "fi": client, "r": "-"})
    for raw in samples:
        compiled_doc, seen_compiled, generic_doc, seen_generic = map_both(mapper, raw)
        assert items(compiled_doc) == items(generic_doc), raw
        assert seen_compiled.request_line == seen_generic.request_line


def _ipaddress_says(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="0123456789.", max_size=16))
def test_ipv4_pattern_decides_as_ipaddress(text: str) -> None:
    fields.IP_SEEN.pop(text, None)  # decide afresh, not from the cache
    assert is_ip(text) == _ipaddress_says(text)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.integers(0, 300).map(str), min_size=4, max_size=4))
def test_dotted_quads_decide_as_ipaddress(octets: list[str]) -> None:
    for text in (".".join(octets), ".".join("0" + octet for octet in octets)):
        fields.IP_SEEN.pop(text, None)
        assert is_ip(text) == _ipaddress_says(text)


def test_whole_date_cache_returns_what_a_fresh_conversion_returns() -> None:
    texts = ["25/Nov/2026:19:47:11.005", "25/Nov/2026:19:47:11", "25/Nov/2026:19:47:11.5",
             "25/Nov/2026:19:47:11.123456", "25/Nov/2026:19:47:11,005", "31/Feb/2026:00:00:00.000",
             "25/Nov/2026:19:47:1x.005", "", "-"]
    cached = Timestamps()
    for _ in range(2):
        for text in texts:
            assert cached.haproxy_date(text) == Timestamps().haproxy_date(text), text
    assert cached.haproxy_date("25/Nov/2026:19:47:11.005") == "2026-11-25T19:47:11.005Z"
    zoned = Timestamps("Europe/Paris")
    assert zoned.haproxy_date("25/Nov/2026:19:47:11.005") == "2026-11-25T18:47:11.005Z"
    assert zoned.haproxy_date("25/Nov/2026:19:47:11.005") == "2026-11-25T18:47:11.005Z"


def _sd_end_by_character(text: str) -> int:
    """The character-at-a-time reference for `_sd_end`."""
    i = 0
    n = len(text)
    while i < n and text[i] == "[":
        i += 1
        in_quotes = False
        while i < n:
            c = text[i]
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_quotes = not in_quotes
            elif c == "]" and not in_quotes:
                break
            i += 1
        i += 1
    return min(i, n)


SD_SAMPLES = [
    '[corpus@32473 method="GET" uri="/" status=200 bytes=161] {"a":"\\/"}',
    '[a b="x]y" c=1][d e="2"]', '[a b="x', "[a b=", "[a", "[", '[a b="q\\"r"] tail', "[a ]x",
    '[a b=1 c="" d]', "[a][a x=1]", "[a  b=1]", '[x@1 k="v" ][y k=v]rest',
]


@settings(max_examples=3000, deadline=None)
@given(st.one_of(st.sampled_from(SD_SAMPLES), st.text(alphabet='[]" =ab\\{', max_size=24)))
def test_structured_data_search_agrees_with_the_character_scan(text: str) -> None:
    end = _sd_end(text)
    assert end == _sd_end_by_character(text)
    sd = text[:end]
    if "\\" not in sd:
        assert list(_parse_sd_plain(sd).items()) == list(_parse_sd_escaped(sd).items())


def test_structured_data_fields_of_a_corpus_frame() -> None:
    message = (b'<134>1 2026-11-25T18:23:08.199181+00:00 - haproxy 11604 - [corpus@32473 '
               b'method="GET" uri="/" status=200 bytes=161] {"ci":"127.0.0.1"}')
    doc = Parser(ParseSettings(keep_original=True)).parse(message, RECEIVED_AT)
    assert doc["log.syslog.structured_data.corpus@32473.method"] == "GET"
    assert doc["log.syslog.structured_data.corpus@32473.status"] == "200"
    assert doc["event.original"] == '{"ci":"127.0.0.1"}'


def _header(text: str) -> tuple[tuple[str, str, int, str], list[tuple[str, Any]]]:
    doc: dict[str, Any] = {}
    return syslog.parse_header(text, doc), items(doc)


def _forget_headers() -> None:
    syslog._last_header = None
    syslog._HEADER_CACHE.clear()


def test_header_memo_gives_what_a_cold_parse_gives() -> None:
    texts = [frame.message.decode("utf-8", "backslashreplace") for frame in all_frames()]
    local = "<134>Nov 25 18:21:08 haproxy[22]: "
    texts += [local, local + "{}", local[:-1], local[:-2] + ":x {}", "\0" + local,
              local.replace("haproxy[22]", "haproxy[23]") + "{}", local + ": {}", ""]
    cold = {}
    for text in texts:
        _forget_headers()
        cold[text] = _header(text)
    primers = [next(frames(path)).message.decode("utf-8", "backslashreplace")
               for path in corpus_files()] + [local, local + "{}"]
    try:
        for primer in primers:
            for _ in range(2):  # the second call hits the cache, and sets the memo
                _header(primer)
            for text in texts:
                assert _header(text) == cold[text], (primer, text)
                _header(primer)
    finally:
        _forget_headers()
