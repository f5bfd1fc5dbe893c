"""Cutting a syslog byte stream (TCP, Unix stream) into messages, per RFC 6587.

HAProxy sends either LF-terminated frames (`log-proto legacy`, the default, and `log tcp@`) or
octet-counted frames (`<len> <msg>`, `log-proto octet-count` on a ring server). The first byte
of a connection tells which: octet counting starts with the length's digits, a syslog message
starts with `<` (or with text for HAProxy's `raw` format, which is LF-framed). A connection
keeps the framing it started with.

Memory is bounded by `max_message`: a longer LF line is cut at that size (the rest up to the next
LF is discarded) and an octet-counted message longer than that is cut the same way. Cut
messages, and a partial last message when the connection ends (`finish`), are counted in
`truncated` so the listener can report them.
"""

from __future__ import annotations

_DIGITS = frozenset(b"0123456789")
_SEPARATORS = frozenset(b"\r\n\0")
_MAX_LENGTH_DIGITS = 9  # a 1 GB length is already absurd; anything longer is not a length


class StreamFramer:
    """Incremental splitter: `feed(chunk)` returns the whole messages that chunk completed."""

    __slots__ = ("_buffer", "_discarding", "_max", "_octet", "_remaining", "truncated")

    def __init__(self, max_message: int) -> None:
        self._max = max_message
        self._buffer = b""
        self._octet: bool | None = None  # decided by the first byte of the connection
        self._remaining = 0  # octet counting: bytes of an oversized message still to discard
        self._discarding = False  # LF framing: inside an oversized line, drop until LF
        self.truncated = 0

    @property
    def in_message(self) -> bool:
        """Bytes of a message not complete yet were fed (a line without its LF, a frame short
        of its length, an oversized one still being discarded)."""
        return bool(self._buffer) or self._remaining > 0 or self._discarding

    @property
    def framing(self) -> str:
        return "undecided" if self._octet is None else ("octet-counting" if self._octet else "lf")

    def feed(self, chunk: bytes) -> list[bytes]:
        if not chunk:
            return []
        if self._octet is None:
            first = (self._buffer + chunk)[:1]
            self._octet = first[0] in _DIGITS
        return self._feed_octet(chunk) if self._octet else self._feed_lf(chunk)

    def finish(self, cut: bool = False) -> list[bytes]:
        """The connection closed: a last line without LF is still a message.

        An incomplete octet-counted frame is counted in `truncated`; so is a last LF line when
        `cut` says the receiver ended the connection (at stop, idle or evicted), since the
        sender was then interrupted rather than done. The bytes are kept either way."""
        rest, self._buffer = self._buffer, b""
        if not rest or self._discarding:
            return []
        if self._octet or cut:
            self.truncated += 1
        if self._octet:  # `<len> <part of the message>`: keep the part, which the parser reads
            length, space, part = rest.partition(b" ")
            if length.isdigit():
                return [part] if space and part else []
        return [rest]

    def _feed_lf(self, chunk: bytes) -> list[bytes]:
        data = self._buffer + chunk if self._buffer else chunk
        if self._discarding:
            newline = data.find(b"\n")
            if newline < 0:
                self._buffer = b""
                return []
            self._discarding = False
            data = data[newline + 1 :]
        lines = data.split(b"\n")
        self._buffer = lines.pop()
        if len(self._buffer) > self._max:
            lines.append(self._buffer[: self._max])
            self.truncated += 1
            self._buffer = b""
            self._discarding = True
        if any(len(line) > self._max for line in lines):
            lines = [self._cut(line) for line in lines]
        return lines

    def _cut(self, line: bytes) -> bytes:
        if len(line) <= self._max:
            return line
        self.truncated += 1
        return line[: self._max]

    def _feed_octet(self, chunk: bytes) -> list[bytes]:
        data = self._buffer + chunk if self._buffer else chunk
        messages: list[bytes] = []
        pos = 0
        end = len(data)
        if self._remaining:
            skip = min(self._remaining, end)
            self._remaining -= skip
            pos = skip
        while pos < end:
            if data[pos] in _SEPARATORS:  # some senders end octet-counted frames with LF too
                pos += 1
                continue
            space = data.find(b" ", pos, pos + _MAX_LENGTH_DIGITS + 1)
            if space < 0:
                if end - pos > _MAX_LENGTH_DIGITS:
                    return messages + self._resync_as_lf(data[pos:])
                break  # the length is not complete yet
            length_text = data[pos:space]
            if not length_text.isdigit():
                return messages + self._resync_as_lf(data[pos:])
            length = int(length_text)
            start = space + 1
            if length > self._max:
                if end - start < self._max:
                    break  # wait until the kept part is complete
                messages.append(data[start : start + self._max])
                self.truncated += 1
                consumed = min(length, end - start)
                self._remaining = length - consumed
                pos = start + consumed
                continue
            if end - start < length:
                break
            messages.append(data[start : start + length])
            pos = start + length
        self._buffer = data[pos:]
        return messages

    def _resync_as_lf(self, data: bytes) -> list[bytes]:
        """A sender that is not octet counting after all: keep the bytes, frame by LF from now."""
        self._octet = False
        self._buffer = b""
        return self._feed_lf(data)
