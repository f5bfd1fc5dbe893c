"""The whole-event functions (`compiled.compile_event`, used by `Parser._parse` for the usual
JSON and traffic-line event) give exactly the document the general way gives, key order
included, and leave an unusual event to it untouched."""

from __future__ import annotations

import shutil
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.config import ParseSettings
from receiver.parse import Parser, compiled, fields
from receiver.parse.names import DEFAULT
from tests.parse.corpus import RECEIVED_AT, all_frames
from tests.parse.real_lines import real_lines
from tests.parse.test_fast_paths import HEADER, variants

HTTPLOG = (b"<134>Nov 25 19:47:11 localhost haproxy[11604]: 10.0.1.2:49494 "
           b"[25/Nov/2026:19:47:11.315] fe_httplog be_app/s1 0/0/0/0/0 404 161 - - ---- "
           b'1/1/0/0/0 0/0 "GET /status/404?ref=home&page=2 HTTP/1.1"')
BENCH_RECEIVED = 1795636031.5  # 2026-11-25T19:47:11.5Z: the variants' dates are in the window


def httplog_variants() -> list[bytes]:
    """The README's httplog line, and each of its parts made unusual: what the whole-event
    function must leave to the general way, or write as the general way does."""
    replacements = [
        (b"10.0.1.2:", b"unix:"), (b"10.0.1.2:", b"::1:"), (b" 404 ", b" -1 "),
        (b" 404 ", b" 503 "), (b" 404 ", b" 400 "), (b" 404 ", b" 399 "),
        (b" 0/0/0/0/0 ", b" -1/0/0/-1/-1 "), (b" 0/0/0/0/0 ", b" 5/+3/0/2/9 "),
        (b" ---- ", b" CD-- "), (b" ---- ", b" LR-- "), (b" ---- ", b" sQ-- "),
        (b" ---- ", b" --NI "), (b" - - ", b" abc=1 - "), (b"fe_httplog ", b"fe_https~ "),
        (b"GET /status", b"<BADREQ>"), (b"/status/404?ref=home&page=2", b"http://x.test:81/a?b"),
        (b"?ref=home&page=2", b"?a#22b"), (b"?ref=home&page=2", b""), (b" HTTP/1.1", b""),
        (b".315]", b"]"), (b"25/Nov/2026:19:47:11.315", b"25/Nov/2020:19:47:11.315"),
        (b' "GET', b' {host.test|agent} "GET'),
    ]
    return [HTTPLOG] + [HTTPLOG.replace(old, new) for old, new in replacements]


def messages() -> list[tuple[bytes, float]]:
    corpus = [(frame.message, RECEIVED_AT) for frame in all_frames()]
    real = [(record.line.encode(), record.received) for record in real_lines()]
    # At the variants' time, and ten days later (their dates passed over, kept as claimed).
    bench = [(message, received) for received in (BENCH_RECEIVED, BENCH_RECEIVED + 864_000)
             for message in (*variants(), *httplog_variants())]
    return corpus + real + bench


def count_events(parser: Parser) -> list[int]:
    """Wrap the parser's whole-event functions: [events written whole, events left]."""
    counts = [0, 0]

    def counting(event: compiled.EventFunction) -> compiled.EventFunction:
        def call(*args: Any) -> int:
            done = event(*args)
            counts[0 if done else 1] += 1
            return done
        return call

    parser._events = {key: None if event is None else counting(event)
                      for key, event in parser._events.items()}
    return counts


def agree(settings: Callable[[], ParseSettings], compiled_steps: bool) -> list[int]:
    fast = Parser(settings())
    fast.compiled_steps = compiled_steps
    general = Parser(settings())
    general.whole_events = False
    for message, received in messages():  # the first pass makes the functions
        fast.parse(message, received)
    counts = count_events(fast)
    for message, received in messages():
        fast_doc = fast.parse(message, received)
        general_doc = general.parse(message, received)
        assert list(fast_doc.items()) == list(general_doc.items()), message
    return counts


# Both ways of a whole-event function's checks and writes: the compiled steps (where they
# were built) and the generated Python lines.
@pytest.fixture(params=[pytest.param(True, id="compiled"), pytest.param(False, id="python")])
def compiled_steps(request: pytest.FixtureRequest) -> bool:
    if request.param and not compiled.COMPILED:
        pytest.skip("the compiled steps were not built here")
    return bool(request.param)


def test_the_compiled_steps_are_built_wherever_a_compiler_is() -> None:
    headers = Path(sysconfig.get_paths()["include"], "Python.h").exists()
    if shutil.which("cc") and headers:
        assert compiled.COMPILED, "receiver/parse/_whole.c was not built: reinstall the package"


def test_whole_events_agree_with_the_general_way(compiled_steps: bool) -> None:
    written, left = agree(ParseSettings, compiled_steps)
    assert written > 500  # most corpus events are usual ones
    assert left > 30  # and the unusual ones were left alone


def test_whole_events_agree_with_other_settings(compiled_steps: bool) -> None:
    for make in (
        lambda: ParseSettings(keep_original=True, labels={"env": "test"}),
        lambda: ParseSettings(capture_request_headers=["Host", "User-Agent"]),
        lambda: ParseSettings(capture_response_headers=["Content-Type"]),
        lambda: ParseSettings(format="json"),
    ):
        agree(make, compiled_steps)


# Values of every kind a JSON body gives, including the unusual ones each check must refuse.
_JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False), st.lists(st.integers(), max_size=2),
    st.sampled_from(["", "-", "?", "/", "/a#b", "?a", "?a#b", "HTTP/1.1", "HTTP", "<BADREQ>",
                     "GET /a?b HTTP/1.1", "10.0.0.1", "::1", "unix", "fe~", "----", "CD--",
                     "LR", "25/Nov/2026:19:47:11.005", "x"]),
    st.text(alphabet="/?#-~ HTP1.0:a", max_size=6),
)
# Every JSON key the steps handle (with unknown ones), the date first so a function exists.
_KEYS = ["ci", "cp", "fi", "fp", "ft", "b", "s", "Tw", "Tc", "Tr", "Tt", "Ta", "ST", "B", "U",
         "r", "HM", "HP", "HQ", "HU", "HV", "ts", "tsc", "hr", "hs", "sslv", "rc", "seq", "zz"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_KEYS), min_size=1, max_size=10, unique=True),
       st.lists(_JSON_VALUES, min_size=10, max_size=10), st.booleans())
def test_the_compiled_steps_write_what_the_python_lines_write(
        keys: list[str], values: list[Any], http: bool) -> None:
    if not compiled.COMPILED:
        return
    both_ways_agree(("t", *keys), False, ("25/Nov/2026:19:47:11.005", *values[: len(keys)]),
                    http)


def both_ways_agree(shape: tuple[str, ...], text: bool, row: tuple[Any, ...], http: bool) -> None:
    """The shape's function with compiled steps and with Python lines: the same answer, and
    the same document in the same order."""
    parser = Parser(ParseSettings())
    parser.parse(variants()[0], BENCH_RECEIVED)  # sets the receive-time window
    categories: Any = {"web": 1} if text else ({"web": 1}, {"network": 1})
    ways = [compiled.compile_event(shape, text, DEFAULT, categories, way) for way in (True, False)]
    if ways[0] is None or ways[1] is None:
        assert ways[0] is ways[1] is None
        return
    docs: list[dict[str, Any]] = [{}, {}]
    answers = [way(row, doc, BENCH_RECEIVED, parser, parser.mapper, http)
               for way, doc in zip((ways[0], ways[1]), docs, strict=True)]
    assert answers[0] == answers[1]
    assert list(docs[0].items()) == list(docs[1].items())


def test_raw_names_go_the_general_way() -> None:
    assert not Parser(ParseSettings(field_names="raw")).whole_events


def test_the_benchmark_lines_are_written_whole() -> None:
    parser = Parser(ParseSettings())
    for message in (HEADER + variants()[0][len(HEADER):], HTTPLOG):
        parser.parse(message, BENCH_RECEIVED)
    counts = count_events(parser)
    parser.parse(variants()[0], BENCH_RECEIVED)
    parser.parse(HTTPLOG, BENCH_RECEIVED)
    assert counts == [2, 0]


_TEXT_KEYS = ["ci", "cp", "ft", "b", "s", "TR", "Tw", "Tc", "Tr", "Ta", "Tt", "ST", "B", "U",
              "ts", "tsc", "ac", "fc", "bc", "sc", "rc", "sq", "bq", "hr", "hs", "r", "HM"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_TEXT_KEYS), min_size=1, max_size=12, unique=True),
       st.data(), st.booleans())
def test_the_compiled_steps_read_text_lines_as_the_python_lines_do(
        keys: list[str], data: st.DataObject, http: bool) -> None:
    """A text line's reader hands number-kind variables as checked integer text."""
    if not compiled.COMPILED:
        return
    numbers = st.from_regex(r"[+-]?[0-9]{1,18}", fullmatch=True)
    row: list[Any] = ["25/Nov/2026:19:47:11.005"]
    for key in keys:
        number = fields.FIELDS[key][1] in compiled._NUMBERS
        row.append(data.draw(numbers if number else st.one_of(st.none(), _JSON_VALUES)))
    both_ways_agree(("t", *keys), True, tuple(row), http)


def test_an_unusual_value_leaves_the_document_untouched(compiled_steps: bool) -> None:
    keys = ("ci", "cp", "t", "ST")
    event = compiled.compile_event(keys, False, DEFAULT, ({"web": 1}, {"network": 1}),
                                   compiled_steps)
    assert event is not None
    parser = Parser(ParseSettings())
    parser.parse(variants()[0], BENCH_RECEIVED)  # sets the receive-time window
    doc: dict[str, Any] = {}
    usual = ("10.0.0.1", 1, "25/Nov/2026:19:47:11.005", 200)
    for unusual in (("unix", 1, usual[2], 200), ("10.0.0.1", "1", usual[2], 200),
                    ("10.0.0.1", 1, "25/Nov/2026:19:47:61.005", 200),
                    ("10.0.0.1", 1, usual[2], -1), ("10.0.0.1", 2**64, usual[2], 200)):
        assert not event(unusual, doc, BENCH_RECEIVED, parser, parser.mapper, True)
        assert doc == {}
    assert event(usual, doc, BENCH_RECEIVED, parser, parser.mapper, True) == compiled.WRITTEN
    assert doc["source.ip"] == "10.0.0.1"
    assert doc["@timestamp"] == "2026-11-25T19:47:11.005Z"
    assert doc["web"] == 1
    old = ("10.0.0.1", 1, "25/Nov/2020:19:47:11.005", 200)
    doc = {}
    assert event(old, doc, BENCH_RECEIVED, parser, parser.mapper, True) == (
        compiled.WRITTEN_CLAIMED)
    assert doc["@timestamp"] == "2026-11-25T19:47:11.500Z"
    assert doc["haproxy.claimed_time"] == old[2]


def test_json_integers_below_a_long_arrive_as_floats_and_go_the_general_way() -> None:
    # The generated check of a JSON integer tests only the upper end of a `long`: orjson never
    # gives an int below it. If it ever did, this fails before a document could carry one.
    line = (b'<134>Nov 25 19:47:11 haproxy[1]: {"ci":"10.0.0.1","cp":-9223372036854775809,'
            b'"t":"25/Nov/2026:19:47:11.005","ST":200}')
    assert type(orjson.loads(line.split(b": ", 1)[1])["cp"]) is float
    fast = Parser(ParseSettings())
    general = Parser(ParseSettings())
    general.whole_events = False
    fast.parse(line, BENCH_RECEIVED)  # makes the shape's function
    counts = count_events(fast)
    document = fast.parse(line, BENCH_RECEIVED)
    assert counts == [0, 1]  # left to the general way
    assert list(document.items()) == list(general.parse(line, BENCH_RECEIVED).items())


def test_shapes_without_a_millisecond_date_have_no_event_function() -> None:
    assert compiled.compile_event(("ci", "Tl"), False, DEFAULT, ({}, {})) is None
    assert compiled.compile_event(("ci",), False, DEFAULT, ({}, {})) is None
    assert compiled.compile_event(("t", "zz"), False, DEFAULT, ({}, {})) is not None


_PART = st.text(alphabet="/?#< GETa1.%\t\u00e9", max_size=8)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_PART, st.sampled_from(["GET", "/", "?", "HTTP/", "HTTP/1.1", " "])),
                max_size=7))
def test_the_usual_request_line_reads_as_the_general_way(parts: list[str]) -> None:
    line = " ".join(parts)
    fields._REQUEST_LINES.clear()
    fast: dict[str, Any] = {}
    fields.fill_from_request_line(line, fast)
    general: dict[str, Any] = {}
    fields._fill_around(line, general)
    assert list(fast.items()) == list(general.items())


def test_usual_request_lines() -> None:
    for line in ("GET /a?b=1 HTTP/1.1", "GET /a? HTTP/1.1", "GET /a?b?c HTTP/2.0", "GET / HTTP/",
                 "OPTIONS /x#22?y HTTP/1.1", "GET /x?y#41 HTTP/1.1", "<BADREQ>",
                 "GET http://h:8/x?y HTTP/1.1", "CONNECT h:443 HTTP/1.1", "GET  /x HTTP/1.1",
                 "GET /a b HTTP/1.1", "GET /a HTTP/1.1 x", " /a HTTP/1.1"):
        fields._REQUEST_LINES.clear()
        fast: dict[str, Any] = {}
        fields.fill_from_request_line(line, fast)
        general: dict[str, Any] = {}
        fields._fill_around(line, general)
        assert list(fast.items()) == list(general.items()), line
    assert fields._USUAL_REQUEST.fullmatch("GET /a?b=1 HTTP/1.1") is not None


@settings(max_examples=2000, deadline=None)
@given(st.one_of(
    st.text(alphabet="0123456789.", max_size=17),
    st.builds(lambda parts: ".".join(parts), st.lists(
        st.one_of(st.integers(0, 300).map(str), st.sampled_from(["00", "01", "255", "256", ""])),
        min_size=3, max_size=5)),
    st.text(max_size=16)))
def test_the_compiled_steps_read_an_ipv4_address_as_the_field_table_does(text: str) -> None:
    if not compiled.COMPILED:
        return
    from receiver.parse import _whole

    assert _whole.dotted_quad(text) == (fields._IPV4.fullmatch(text) is not None)
