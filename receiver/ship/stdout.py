"""The embedded default output: each document as one JSON line on a binary stream (stdout).

Used when `elasticsearch.hosts` is empty, so `haproxy-receiver run` shows its work on a bare
machine. A bulk body alternates action and document lines; only the documents are written.
"""

from __future__ import annotations

import contextlib
from typing import BinaryIO

from receiver.ship.classify import Classification, RequestOutcome, transport_failure


class StdoutOutput:
    """Writes documents as JSON lines and flushes once per batch."""

    wants_ids = False

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def describe(self) -> str:
        return "stdout (JSON lines)"

    def send(self, body: bytes, items: int, index: str | None = None) -> Classification:
        lines = body.split(b"\n")
        documents = lines[1::2]
        try:
            self._stream.write(b"\n".join(documents[:items]) + b"\n" if items else b"")
            self._stream.flush()
        except (OSError, ValueError) as error:  # closed pipe or stream: keep events spooled
            return transport_failure("connection_error", f"cannot write to stdout: {error}")
        return Classification(RequestOutcome.OK, "ok", 200)

    def setup(self) -> None:
        """Nothing to prepare on a stream."""

    def destination(self) -> None:
        """No server to ask: documents are printed, not indexed."""

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()
