"""The dead-letter file: documents Elasticsearch refused for good, one JSON line each, with why.

Each line: `time`, `index`, `_id`, `status`, `error_type`, `reason` and the `document` itself
(or `payload_base64` when the spool record could not even be decoded). Written with one
`write` + fsync per batch of refusals, so a dead-lettered event is on disk before the spool
forgets it. A failing write raises, and the shipper keeps the events in the spool instead.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from receiver.ship.encode import RecordError, decode_record


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One refused event."""

    payload: bytes
    index: str
    id: str
    status: int
    error_type: str
    reason: str


def dead_letter_line(entry: DeadLetter, now: float) -> bytes:
    row: dict[str, Any] = {
        "time": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace(
            "+00:00", "Z"),
        "index": entry.index,
        "_id": entry.id,
        "status": entry.status,
        "error_type": entry.error_type,
        "reason": entry.reason,
    }
    try:
        _timestamp, source = decode_record(entry.payload)
        row["document"] = orjson.loads(source)
        return orjson.dumps(row) + b"\n"
    except (RecordError, orjson.JSONDecodeError):  # the record itself is unreadable: keep its bytes
        row.pop("document", None)
        row["payload_base64"] = base64.b64encode(entry.payload).decode()
        return orjson.dumps(row) + b"\n"


class DeadLetterFile:
    """Appends dead letters to a JSON lines file (thread-safe; created on first use)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(self, entries: list[DeadLetter]) -> None:
        """Append and fsync; raises OSError when the file cannot be written."""
        if not entries:
            return
        now = time.time()
        data = b"".join(dead_letter_line(entry, now) for entry in entries)
        with self._lock:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
