"""Real HAProxy lines from public sources, fed as published (log-file lines without `<PRI>`,
relay headers, bare tags, custom formats): every key field right, no value under a wrong name,
and what nobody can read kept whole and tagged. The same lines behind every other header a
relay, a log file or the journal puts in front of them give the same key fields."""

from __future__ import annotations

import re

import pytest

from receiver.config import ParseSettings
from receiver.parse import Parser
from tests.parse.real_lines import RealLine, real_lines, wrong_fields

LINES = real_lines()
PARSER = Parser(ParseSettings())


def test_the_collection_is_large_and_says_where_each_line_comes_from() -> None:
    assert len(LINES) >= 130
    origins = {line.where.split("@")[0] for line in LINES}
    assert len(origins) >= 20
    for line in LINES:
        assert line.origin.get("url") or (
            line.origin["repo"] and line.origin["path"] and len(line.origin["commit"]) == 40)
        assert not line.line.startswith("<") or line.line[1].isdigit()


def test_every_key_field_of_every_line_is_right() -> None:
    wrong = {}
    for line in LINES:
        problems = wrong_fields(line, PARSER.parse(line.line.encode(), line.received))
        if problems:
            wrong[line.line] = problems
    right = len(LINES) - len(wrong)
    assert not wrong, f"{right}/{len(LINES)} right; wrong:\n" + "\n".join(
        f"{line}\n  {problems}" for line, problems in wrong.items())


# The header of each line as published: `[<PRI>]Mmm dd hh:mm:ss [host] haproxy[pid]: `
# (an ingress controller's tag shown as `ingress 40 - - ` or without its colon).
_PUBLISHED_HEADER = re.compile(
    r"(?:<\d+>1? ?)?(?:(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d |\d{4}-\d\d-\d\dT\S+ )"
    r"(?:\S+ )?)?(?:haproxy\[\d+\]: |ingress \d+ - - |ingress\[\d+\] )")
HEADERS = {
    "<134>1 {iso} lb1 haproxy 4242 - - ": "rfc5424",
    "<134>{bsd} lb1 haproxy[4242]: ": "rfc3164",
    "<134>{bsd} haproxy[4242]: ": "local",
    "{bsd} lb1 haproxy[4242]: ": "file",
    "{iso} lb1 haproxy[4242]: ": "iso-file",
    "{iso_micro} lb1 haproxy[4242]: ": "iso-file",
    "{iso_journal} lb1 haproxy[4242]: ": "iso-file",
    "<134>{iso_ms} lb1 haproxy[4242]: ": "forward",
    "haproxy[4242]: ": "tag",
    "<134>haproxy[4242]: ": "tag",
    "<134>{iso_ms} ": "timed",
    "{iso} ": "iso",
    "": "raw",
}


def _stamps(received: float) -> dict[str, str]:
    import time

    moment = time.gmtime(received)
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", moment)
    return {
        "iso": iso + "+00:00", "iso_micro": iso + ".123456Z", "iso_journal": iso + "+0000",
        "iso_ms": iso + ".123+00:00",
        "bsd": time.strftime("%b ", moment) + f"{moment.tm_mday:2d}" + time.strftime(
            " %H:%M:%S", moment),
    }


def _bodies() -> list[tuple[RealLine, str]]:
    found = []
    for line in LINES:
        header = _PUBLISHED_HEADER.match(line.line)
        body = line.line[header.end() :] if header else line.line
        # Lines whose time comes from the body (a header-only date moves with the header).
        if line.expect.get("format") not in (None, "text", "connect"):
            found.append((line, body))
    return found


@pytest.mark.parametrize(("header", "header_format"), list(HEADERS.items()))
def test_the_same_body_behind_every_header(header: str, header_format: str) -> None:
    checked = 0
    for line, body in _bodies():
        for ending in ("", "\r\n", "  ", "\n"):
            message = header.format(**_stamps(line.received)) + body + ending
            doc = PARSER.parse(("  " if ending == "  " else "").encode() + message.encode(),
                               line.received)
            assert doc["haproxy.syslog_format"] == header_format, message
            problems = wrong_fields(line, doc)
            assert not problems, (message, problems)
            checked += 1
    assert checked > 400
