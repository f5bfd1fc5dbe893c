"""HAProxy log files as users have them, built from the test corpus (tests/data/corpus: frames
HAProxy 2.6 sent, see its README): each frame's `<PRI>` and `local` header replaced by what a
file writer puts in front of a line, rsyslog's traditional file format (`Nov 25 18:21:38 lb1
haproxy[11604]: ...`) or the journal's `journalctl -o short-iso` (`2026-11-25T18:21:38+0000
lb1 haproxy[11604]: ...`)."""

from __future__ import annotations

import base64
import json
import re

from tests.support import CORPUS

_LOCAL = re.compile(rb"^<\d+>(?P<date>\w{3} [ \d]\d (?P<clock>\d\d:\d\d:\d\d)) (?P<tag>haproxy\[\d+\]): ")
_MONTHS = {b"Nov": 11}


def corpus_frames(name: str) -> list[bytes]:
    frames = []
    for line in (CORPUS / name).read_text().splitlines():
        frame = base64.b64decode(json.loads(line)["frame_b64"]).rstrip(b"\n")
        assert b"\n" not in frame
        frames.append(frame)
    return frames


def rsyslog_line(frame: bytes, host: bytes = b"lb1") -> bytes:
    """`<134>Nov 25 18:21:38 haproxy[1]: body` -> `Nov 25 18:21:38 lb1 haproxy[1]: body`."""
    match = _LOCAL.match(frame)
    assert match is not None, frame[:80]
    return match["date"] + b" " + host + b" " + match["tag"] + b": " + frame[match.end():]


def journal_line(frame: bytes, host: bytes = b"lb2") -> bytes:
    """`<134>Nov 25 18:21:38 haproxy[1]: body` -> `2026-11-25T18:21:38+0000 lb2 haproxy[1]: body`."""
    match = _LOCAL.match(frame)
    assert match is not None, frame[:80]
    month, day = match["date"].split()[:2]
    date = b"2026-%02d-%02dT" % (_MONTHS[month], int(day)) + match["clock"] + b"+0000"
    return date + b" " + host + b" " + match["tag"] + b": " + frame[match.end():]


def mixed_lines() -> list[bytes]:
    """httplog lines in rsyslog's format interleaved with JSON log-format lines from the journal."""
    httplog = [rsyslog_line(frame) for frame in corpus_frames("httplog.udp.jsonl")]
    json_lines = [journal_line(frame) for frame in corpus_frames("json-seed.udp.jsonl")]
    lines = []
    for index in range(max(len(httplog), len(json_lines))):
        lines += httplog[index:index + 1] + json_lines[index:index + 1]
    return lines
