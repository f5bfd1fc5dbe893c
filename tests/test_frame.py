"""RFC 6587 stream framing, fed with the corpus's byte-exact TCP streams and with hostile input."""

from __future__ import annotations

import base64
import json
import random

import pytest

from receiver.frame import StreamFramer
from tests.support import CORPUS

STREAMS = sorted((CORPUS / "tcp-streams").glob("*.dev.bin"))


def corpus_messages(stream_name: str) -> list[bytes]:
    """The frames of the stream's .jsonl file, framing removed."""
    name = stream_name.replace(".dev.bin", ".jsonl")
    frames = []
    for line in (CORPUS / name).read_text().splitlines():
        record = json.loads(line)
        frame = base64.b64decode(record["frame_b64"])
        if record["tcp_framing"] == "octet-counting":
            frame = frame.split(b" ", 1)[1]
        else:
            frame = frame.removesuffix(b"\n")
        frames.append(frame)
    return frames


@pytest.mark.parametrize("stream", STREAMS, ids=lambda p: p.name)
def test_corpus_stream_in_random_chunks_gives_every_frame(stream: object) -> None:
    data = stream.read_bytes()  # type: ignore[attr-defined]
    expected = corpus_messages(stream.name)  # type: ignore[attr-defined]
    rng = random.Random(7)
    for _ in range(5):
        framer = StreamFramer(64 * 1024)
        got: list[bytes] = []
        pos = 0
        while pos < len(data):
            size = rng.choice([1, 2, 7, 100, 4096, 70000])
            got += framer.feed(data[pos : pos + size])
            pos += size
        got += framer.finish()
        assert got == expected
        assert framer.truncated == 0


def test_framing_is_detected_per_connection() -> None:
    assert StreamFramer(1024).feed(b"12 <134>abcdefg") == [b"<134>abcdefg"]
    assert StreamFramer(1024).feed(b"<134>abc\n<134>d\n") == [b"<134>abc", b"<134>d"]


def test_octet_counting_tolerates_lf_between_frames() -> None:
    framer = StreamFramer(1024)
    assert framer.feed(b"3 abc\n3 def\r\n") == [b"abc", b"def"]


def test_endless_line_is_cut_and_memory_bounded() -> None:
    framer = StreamFramer(1024)
    out: list[bytes] = []
    for _ in range(1000):  # 8 MB without a newline
        out += framer.feed(b"x" * 8192)
        assert len(framer._buffer) <= 1024 + 8192
    out += framer.feed(b"tail\n<134>next\n")
    assert out == [b"x" * 1024, b"<134>next"]
    assert framer.truncated == 1


def test_oversized_octet_frame_is_cut_and_the_stream_stays_in_sync() -> None:
    framer = StreamFramer(1024)
    body = b"y" * 5000
    out = framer.feed(b"5000 " + body[:3000]) + framer.feed(body[3000:] + b"2 ok")
    assert out == [b"y" * 1024, b"ok"]
    assert framer.truncated == 1


def test_garbage_length_falls_back_to_lf_framing_without_losing_bytes() -> None:
    framer = StreamFramer(1024)
    out = framer.feed(b"12x garbage\n<134>then syslog\n")
    assert out == [b"12x garbage", b"<134>then syslog"]
    assert framer.framing == "lf"


def test_last_line_without_newline_is_kept_at_close() -> None:
    framer = StreamFramer(1024)
    assert framer.feed(b"<134>one\n<134>two") == [b"<134>one"]
    assert framer.finish() == [b"<134>two"]


def test_a_last_line_cut_by_the_receiver_is_kept_and_counted() -> None:
    framer = StreamFramer(1024)
    assert framer.feed(b"<134>one\n<134>tw") == [b"<134>one"]
    assert framer.finish(cut=True) == [b"<134>tw"]  # the receiver ended the connection
    assert framer.truncated == 1
    assert framer.finish(cut=True) == []  # nothing left, nothing counted twice
    assert framer.truncated == 1


def test_an_octet_counted_frame_cut_by_the_close_is_kept_without_its_length_and_counted() -> None:
    framer = StreamFramer(1024)
    assert framer.feed(b"5 <134>9 <134>abc") == [b"<134>"]
    assert framer.finish() == [b"<134>abc"]
    assert framer.truncated == 1
    only_length = StreamFramer(1024)
    assert only_length.feed(b"5 <134>12") == [b"<134>"]
    assert only_length.finish(cut=True) == []  # nothing of the message arrived
    assert only_length.truncated == 1
