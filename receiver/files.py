"""Log files as lines: plain or gzip (told apart by their content, multi-member gzip too) or
standard input, each whole line with its byte offset in the decompressed text.

Owns reading files of lines, not what the lines mean: `haproxy-receiver import` reads HAProxy's
old log files with it (receiver/importer), and anything else that reads lines from files can.

- **Whole lines only.** A plain file may still be written to: it is read up to its last line
  end, and what follows (a line being written) is left for the next reading, reported in
  `LineReader.pending`. A gzip file or a stream (stdin) is finished when it ends: a last line
  without a line end is a whole line there.
- **Offsets** count bytes of the decompressed text from its start: the offset of a line stays
  the same whether the file is read plain, gzipped (`haproxy.log.1` becomes
  `haproxy.log.2.gz`), from stdin, or in pieces (`start`/`end`: a line belongs to the piece
  its first byte is in).
- **Bounded memory**: a line longer than `max_line` is returned cut to `max_line` bytes
  (marked, as the receive path marks what it cuts) and the rest of it is skipped; a gzip
  member is inflated a chunk at a time however much it expands.
- **Damage is named**: a gzip member cut short or corrupt ends the reading with a `FileError`
  naming the file, the member and the compressed and decompressed offsets, after every whole
  line before it was returned.
"""

from __future__ import annotations

import hashlib
import os
import stat
import zlib
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, BinaryIO, NamedTuple

try:
    from isal import isal_zlib as _inflate  # ~5x faster than zlib at the same format
except ImportError:  # pragma: no cover - isal is a dependency (see ship/encode.py)
    _inflate = zlib  # type: ignore[misc]

from receiver.parse import is_binary

GZIP_MAGIC = b"\x1f\x8b"
# Other formats, recognised to say so rather than to import their bytes as lines.
OTHER_FORMATS = ((b"\xfd7zXZ\x00", "xz"), (b"BZh", "bzip2"), (b"\x28\xb5\x2f\xfd", "zstd"),
                 (b"PK\x03\x04", "zip"))
CHUNK = 1 << 20  # bytes read (and inflated) at a time
SNIFF = 64 * 1024  # decompressed bytes looked at to tell text from binary
_INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, getattr(_inflate, "error", zlib.error))


class FileError(Exception):
    """A file that cannot be read, or not all of it; the message names the file and where."""


class Lines(NamedTuple):
    """Whole lines read at once, in order."""

    offsets: list[int]  # of each line's first byte in the decompressed text
    lines: list[bytes]  # without the line end (`\n`; a `\r` before it is kept)
    cut: frozenset[int]  # indexes of lines longer than `max_line`, cut to it
    end: int  # offset just after the last line (where the next one starts)


class _Stream:
    """Bytes of a file in order: `read` returns b"" at the end; `consumed` counts the bytes
    taken from the file itself (compressed ones for gzip), for progress."""

    consumed: int = 0

    def read(self, size: int) -> bytes:
        raise NotImplementedError


class _Raw(_Stream):
    def __init__(self, read: Callable[[int], bytes], head: bytes = b"") -> None:
        self._read = read
        self._head = head

    def read(self, size: int) -> bytes:
        if self._head:
            data, self._head = self._head, b""
        else:
            data = self._read(size)
        self.consumed += len(data)
        return data


class _Gzip(_Stream):
    """The decompressed text of gzip members one after another (RFC 1952 allows several: `cat
    a.gz b.gz`, or a writer that compresses each flush); zero bytes after the last member (tape
    padding) are ignored, as gzip(1) does."""

    def __init__(self, raw: _Raw, name: str) -> None:
        self._raw = raw
        self._name = name
        self._input = b""
        self._ended = False  # the file itself ended
        self._member: Any = None  # a decompressobj
        self._members = 0
        self._member_start = 0  # compressed offset of the member being inflated
        self.produced = 0  # decompressed bytes returned

    @property
    def consumed(self) -> int:  # type: ignore[override]
        return self._raw.consumed

    def _fill(self) -> None:
        if not self._input and not self._ended:
            self._input = self._raw.read(CHUNK)
            self._ended = not self._input

    def read(self, size: int) -> bytes:
        while True:
            self._fill()
            if self._member is None:
                if not self._input:
                    return b""  # the end, between members: complete
                if not self._input.strip(b"\0"):
                    self._input = b""  # padding
                    continue
                if len(self._input) < 2 and not self._ended:
                    self._input += self._raw.read(CHUNK)
                    continue
                here = self._raw.consumed - len(self._input)
                if self._input[:2] != GZIP_MAGIC:
                    raise FileError(
                        f"{self._name}: not gzip data after member {self._members} at compressed "
                        f"byte {here} (decompressed byte {self.produced}); the lines before it "
                        "were read")
                self._member = _inflate.decompressobj(31)
                self._member_start = here
                self._members += 1
            member = self._member
            try:
                out: bytes = member.decompress(self._input, size)
            except _INFLATE_ERRORS as error:
                raise self._damaged(f"is damaged ({error})") from None
            if member.eof:
                self._input = member.unused_data
                self._member = None
            else:
                self._input = member.unconsumed_tail
            if out:
                self.produced += len(out)
                return out
            if not self._input and self._ended and self._member is not None:
                raise self._damaged("ends before its end (the file is cut short)")

    def _damaged(self, what: str) -> FileError:
        return FileError(
            f"{self._name}: gzip member {self._members} (at compressed byte "
            f"{self._member_start}) {what}: decompressed text read up to byte {self.produced}, "
            "the whole lines before it were read")


class LineReader:
    """Whole lines of one file, or of one piece of it: the lines whose first byte is in
    `[start, end)` (the stream then begins at `start - 1`, see `open_lines`)."""

    def __init__(self, stream: _Stream, name: str, *, start: int = 0, end: int | None = None,
                 max_line: int = 65536, final_line_whole: bool = False,
                 close: Callable[[], None] | None = None) -> None:
        self.stream = stream
        self.name = name
        self.start = start
        self.end = end
        self.max_line = max_line
        # A last line without a line end is whole (a finished gzip file, a stream) or, in a
        # plain file, perhaps still being written (then left, counted in `pending`).
        self.final_line_whole = final_line_whole
        self.exhausted = False  # every line was returned
        self.error: FileError | None = None  # what ended the reading early (after the lines before)
        self.pending = 0  # bytes after the last line end, left unread (a line being written)
        self._close = close
        # Whether `start` begins a line shows in the byte before it: read from there, and skip
        # to the first line end.
        self._skip_line = start > 0
        self._position = start - 1 if start > 0 else 0  # offset of `_buffer`'s first byte
        self._buffer = b""
        self._stream_ended = False
        # Lines split off but not returned yet.
        self._offsets: list[int] = []
        self._lines: list[bytes] = []
        self._cut: set[int] = set()  # offsets of cut lines

    def read(self, max_lines: int, max_bytes: int) -> Lines:
        """Up to `max_lines` lines of about `max_bytes` bytes (at least one line, if any is
        left); an empty result once `exhausted`."""
        while not self._lines and self._fill():
            pass
        count = min(max_lines, len(self._lines))
        lines = self._lines[:count]
        if count > 1 and sum(map(len, lines)) + count > max_bytes:
            total = 0
            for index, line in enumerate(lines):
                total += len(line) + 1
                if total >= max_bytes:
                    count = index + 1
                    break
            lines = lines[:count]
        offsets = self._offsets[:count]
        del self._lines[:count], self._offsets[:count]
        cut: frozenset[int] = frozenset()
        if self._cut:
            cut = frozenset(i for i, offset in enumerate(offsets) if offset in self._cut)
            self._cut.difference_update(offsets[i] for i in cut)
        end = offsets[-1] + len(lines[-1]) + 1 if offsets else self._position
        if not self._lines and self._stream_ended:
            self.exhausted = True
        return Lines(offsets, lines, cut, end)

    def _fill(self) -> bool:
        """Split the next chunk into lines; False once the stream is done."""
        if self._stream_ended:
            self.exhausted = True
            return False
        try:
            chunk = self.stream.read(CHUNK)
        except FileError as error:
            self.error = error
            chunk = b""
        except OSError as error:
            self.error = FileError(f"{self.name}: reading failed at byte "
                                   f"{self._position + len(self._buffer)}: "
                                   f"{error.strerror or error}")
            chunk = b""
        if chunk:
            self._split(chunk)
        else:
            self._finish()
        return True

    def _split(self, chunk: bytes) -> None:
        data = self._buffer + chunk if self._buffer else chunk
        first = 0
        if self._skip_line:  # the rest of a line that is not ours
            newline = data.find(b"\n")
            if newline < 0:
                self._position += len(data)
                self._buffer = b""
                return
            first = newline + 1
            self._skip_line = False
        last = data.rfind(b"\n")
        if last >= first:
            lines = data[first:last].split(b"\n")
            offsets = list(accumulate([len(line) + 1 for line in lines],
                                      initial=self._position + first))
            offsets.pop()
            if self.end is not None and offsets[-1] >= self.end:
                keep = bisect_left(offsets, self.end)
                del lines[keep:], offsets[keep:]
                self._stream_ended = True  # the rest is the next piece's
            if lines and max(map(len, lines)) > self.max_line:
                for index, line in enumerate(lines):
                    if len(line) > self.max_line:
                        lines[index] = line[: self.max_line]
                        self._cut.add(offsets[index])
            self._lines += lines
            self._offsets += offsets
            first = last + 1
        self._position += first
        self._buffer = data[first:]
        if self._stream_ended:
            self._buffer = b""
        elif len(self._buffer) > self.max_line:  # a line longer than any kept: cut it now
            if self.end is None or self._position < self.end:
                self._lines.append(self._buffer[: self.max_line])
                self._offsets.append(self._position)
                self._cut.add(self._position)
            self._position += len(self._buffer)
            self._buffer = b""
            self._skip_line = True

    def _finish(self) -> None:
        """The stream ended: the last line without a line end is whole, or pending."""
        self._stream_ended = True
        rest = self._buffer
        whole = self.final_line_whole and self.error is None  # a damaged end may be torn
        if rest and not self._skip_line and (self.end is None or self._position < self.end):
            if whole:
                self._lines.append(rest)
                self._offsets.append(self._position)
                self._position += len(rest)
                rest = b""
            self.pending = len(rest)
        self._buffer = b""

    @property
    def consumed(self) -> int:
        """Bytes taken from the file itself so far (compressed ones for gzip)."""
        return self.stream.consumed

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None


@dataclass(frozen=True, slots=True)
class OpenedFile:
    """A file opened for lines: what it is, and its reader."""

    name: str
    kind: str  # "plain" or "gzip"
    size: int | None  # on disk, None for a stream
    mtime: float | None  # None for a stream
    reader: LineReader


def fingerprint(first_line: bytes) -> str:
    """A file's identity, from its first line: the same however the file is compressed or
    renamed, and unchanged while lines are appended (a hash of its first N bytes would change
    while a young file grows to N)."""
    return hashlib.blake2b(first_line, digest_size=8).hexdigest()


def _kind(head: bytes, name: str) -> str:
    if head[:2] == GZIP_MAGIC:
        return "gzip"
    for magic, format_name in OTHER_FORMATS:
        if head.startswith(magic):
            raise FileError(f"{name}: {format_name}-compressed, which is not read here: "
                            f"decompress it first (e.g. `{format_name} -dc {name} | "
                            "haproxy-receiver import -`)" if format_name != "zip" else
                            f"{name}: a zip archive, not a log file: unpack it first")
    return "plain"


def open_lines(path: str, *, start: int = 0, end: int | None = None,
               max_line: int = 65536) -> OpenedFile:
    """Open a file of lines (plain or gzip, by its content); `start`/`end`: only the lines
    whose first byte is in `[start, end)` (plain files only). Raises FileError: unreadable, not
    a regular file, another compression format, binary content."""
    try:
        # Non-blocking: opening a FIFO for reading would wait for a writer.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise FileError(f"{path}: cannot be read: {error.strerror or error}") from None
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode):
        os.close(descriptor)
        what = "a directory" if stat.S_ISDIR(status.st_mode) else "not a regular file"
        raise FileError(f"{path}: {what}")
    os.set_blocking(descriptor, True)
    handle = os.fdopen(descriptor, "rb", buffering=0)
    try:
        kind = _kind(handle.read(8), path)
        if kind == "gzip" and (start or end is not None):
            raise FileError(f"{path}: a gzip file cannot be read in pieces")
        handle.seek(0)
        _refuse_binary(path, kind, handle)
        if kind == "gzip":
            handle.seek(0)
            stream: _Stream = _Gzip(_Raw(handle.read), path)
        else:
            handle.seek(start - 1 if start > 0 else 0)
            stream = _Raw(handle.read)
        reader = LineReader(stream, path, start=start, end=end, max_line=max_line,
                            final_line_whole=kind == "gzip", close=handle.close)
        return OpenedFile(path, kind, status.st_size, status.st_mtime, reader)
    except OSError as error:
        handle.close()
        raise FileError(f"{path}: cannot be read: {error.strerror or error}") from None
    except BaseException:
        handle.close()
        raise


def first_line(path: str, max_line: int = 65536) -> bytes | None:
    """The first whole line of a plain file as `LineReader` returns it (cut to `max_line`), or
    None when it has none yet: what a piece of the file needs for the file's fingerprint."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(max_line + 1)
    except OSError as error:
        raise FileError(f"{path}: cannot be read: {error.strerror or error}") from None
    newline = head.find(b"\n")
    if 0 <= newline <= max_line:
        return head[:newline]
    return head[:max_line] if len(head) > max_line else None


def _refuse_binary(path: str, kind: str, handle: BinaryIO) -> None:
    """A file whose first (decompressed) bytes are mostly not text is not a log file (an image,
    a database, a core dump): refused whole rather than shipped as garbage events."""
    if kind == "gzip":
        inflated = _Gzip(_Raw(handle.read), path)
        sample = b""
        try:
            while len(sample) < SNIFF and (data := inflated.read(SNIFF - len(sample))):
                sample += data
        except FileError:
            pass  # damage is reported by the reading itself, after the lines before it
    else:
        sample = handle.read(SNIFF)
    if sample and (b"\0" in sample or is_binary(sample)):
        where = "decompressed text" if kind == "gzip" else "content"
        raise FileError(f"{path}: binary {where} (its first bytes are mostly not text), not a "
                        "log file of lines; not imported")


def open_stream(stream: BinaryIO, name: str = "-", max_line: int = 65536) -> OpenedFile:
    """Lines of a stream (standard input), plain or gzip by its first bytes; its last line is
    whole when the stream ends."""
    raw = getattr(stream, "raw", stream)

    def read(size: int) -> bytes:
        return bytes(raw.read(size) or b"")

    head = b""
    while len(head) < 8 and (data := read(8 - len(head))):
        head += data
    kind = _kind(head, name)
    source: _Stream = _Gzip(_Raw(read, head), name) if kind == "gzip" else _Raw(read, head)
    reader = LineReader(source, name, max_line=max_line, final_line_whole=True)
    return OpenedFile(name, kind, None, None, reader)
