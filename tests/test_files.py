"""receiver/files.py on real files: whole lines with their offsets in the decompressed text, the
same read plain, gzipped (several members), from a stream or in pieces; a line being written left
unread; damage named with its place; long lines cut; binary and other formats refused."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import pytest

from receiver.files import FileError, LineReader, first_line, open_lines, open_stream


def text_of(count: int) -> tuple[bytes, list[tuple[int, bytes]]]:
    lines = [f"Nov 25 18:21:{i % 60:02d} lb1 haproxy[1]: line {i} ".encode() + b"x" * (i % 37)
             for i in range(count)]
    offsets, offset = [], 0
    for line in lines:
        offsets.append(offset)
        offset += len(line) + 1
    return b"\n".join(lines) + b"\n", list(zip(offsets, lines, strict=True))


def read_all(reader: LineReader, lines: int = 333, size: int = 1 << 20) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    while not reader.exhausted:
        got = reader.read(lines, size)
        out += zip(got.offsets, got.lines, strict=True)
    return out


def test_plain_gzip_multi_member_stream_and_pieces_give_the_same_lines(tmp_path: Path) -> None:
    text, expected = text_of(20000)
    plain = tmp_path / "haproxy.log"
    plain.write_bytes(text)
    assert read_all(open_lines(str(plain)).reader) == expected
    # three gzip members, cut mid-line, and tape padding after the last
    packed = tmp_path / "haproxy.log.2.gz"
    packed.write_bytes(gzip.compress(text[:1001]) + gzip.compress(text[1001:70000])
                       + gzip.compress(text[70000:]) + b"\0" * 512)
    opened = open_lines(str(packed))
    assert opened.kind == "gzip"
    assert read_all(opened.reader) == expected and opened.reader.error is None
    assert read_all(open_stream(io.BytesIO(gzip.compress(text))).reader) == expected
    for pieces in (2, 3, 7, 64):
        bounds = [len(text) * k // pieces for k in range(pieces)]
        got: list[tuple[int, bytes]] = []
        for start, end in zip(bounds, [*bounds[1:], None], strict=True):
            got += read_all(open_lines(str(plain), start=start, end=end).reader, 100)
        assert got == expected, pieces
    assert first_line(str(plain)) == expected[0][1]


def test_a_line_being_written_is_left_for_later(tmp_path: Path) -> None:
    text, expected = text_of(10)
    path = tmp_path / "haproxy.log"
    path.write_bytes(text + b"Nov 25 18:22:00 lb1 haproxy[1]: half a li")
    reader = open_lines(str(path)).reader
    assert read_all(reader) == expected
    assert reader.pending == len(b"Nov 25 18:22:00 lb1 haproxy[1]: half a li")
    # a finished stream's last line is whole
    stream = open_stream(io.BytesIO(text + b"last"))
    assert read_all(stream.reader) == [*expected, (len(text), b"last")]


def test_a_cut_gzip_member_is_named_after_its_whole_lines(tmp_path: Path) -> None:
    text, expected = text_of(20000)
    first = gzip.compress(text[:300000])
    second = gzip.compress(text[300000:])
    path = tmp_path / "haproxy.log.3.gz"
    path.write_bytes(first + second[: len(second) // 2])
    reader = open_lines(str(path)).reader
    got = read_all(reader)
    assert reader.error is not None
    message = str(reader.error)
    assert str(path) in message and "gzip member 2" in message
    assert f"compressed byte {len(first)}" in message and "cut short" in message
    assert len(got) > len([o for o, _ in expected if o < 300000])  # the second member's start too
    assert got == expected[: len(got)]


def test_long_lines_are_cut_and_their_rest_skipped(tmp_path: Path) -> None:
    path = tmp_path / "long.log"
    path.write_bytes(b"a" * 10 + b"\n" + b"b" * 300000 + b"\nc\n" + b"d" * 5000)
    reader = open_lines(str(path), max_line=1024).reader
    got, cut = [], set()
    while not reader.exhausted:
        lines = reader.read(10, 1 << 20)
        cut |= {lines.offsets[i] for i in lines.cut}
        got += [(offset, len(line)) for offset, line in zip(lines.offsets, lines.lines, strict=True)]
    assert got == [(0, 10), (11, 1024), (300012, 1), (300014, 1024)]
    assert cut == {11, 300014}


@pytest.mark.parametrize(("content", "words"), [
    (bytes(range(256)) * 40, "binary content"),
    (b"\x7fELF\x02\x01\x01\0" + b"\0" * 4000, "binary content"),
    (b"\xfd7zXZ\x00" + b"x" * 100, "xz-compressed"),
    (b"\x28\xb5\x2f\xfd" + b"x" * 100, "zstd-compressed"),
])
def test_files_that_are_not_lines_are_refused_by_name(tmp_path: Path, content: bytes,
                                                      words: str) -> None:
    path = tmp_path / "thing"
    path.write_bytes(content)
    with pytest.raises(FileError, match=words) as raised:
        open_lines(str(path))
    assert str(path) in str(raised.value)


def test_unreadable_files_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(FileError, match="No such file"):
        open_lines(str(tmp_path / "missing.log"))
    with pytest.raises(FileError, match="a directory"):
        open_lines(str(tmp_path))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    os.close(os.open(fifo, os.O_RDWR))  # (opening it for reading alone would wait for a writer)
    with pytest.raises(FileError, match="not a regular file"):
        open_lines(str(fifo))
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.log"
        locked.write_bytes(b"x\n")
        locked.chmod(0)
        with pytest.raises(FileError, match="Permission denied"):
            open_lines(str(locked))
