"""Dead letters: documents Elasticsearch refused for good, kept with why, never silently lost.

The file: one JSON line each, `time`, `index`, `_id`, `status`, `error_type`, `reason` and the
`document` itself (or `payload_base64` when the spool record could not even be decoded). Written
with one `write` + fsync per batch of refusals, so a dead-lettered event is on disk before the
spool forgets it. A failing write raises, and the shipper keeps the events in the spool instead.

Each event is in the file once: a worker killed after writing a batch's dead letters but before
the spool acknowledged the batch leaves them to its successor, which sends the batch again and
is refused again. So the writer reads back, under an exclusive lock on the file shared by every
worker, what was appended since it last looked (its own lines too; at first the last
`SCAN_BYTES` of the file, where what a replay can repeat was written) and leaves out the events
whose `_id` is already there. It remembers the last `REMEMBERED_IDS` ids (bounded memory).
Optionally they are also indexed (as text) into `elasticsearch.dead_letter_index`, best effort.
"""

from __future__ import annotations

import base64
import fcntl
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from receiver.config import Settings
from receiver.ratelimit import RateLimitedLog
from receiver.ship.encode import action_line
from receiver.ship.output import Output

log = logging.getLogger(__name__)
DEAD_LETTER_MODE = 0o640  # readable by the group of operators who investigate refusals
SCAN_BYTES = 64 * 1024 * 1024  # read back at first: a replay repeats only recent refusals
REMEMBERED_IDS = 200_000  # ids kept to recognise a repeated refusal (~20 MB at most)
_READ = 1024 * 1024


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One refused event: its document (JSON), or the spool payload it could not be made from."""

    document: bytes | None
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
    if entry.document is not None:
        row["document"] = orjson.Fragment(entry.document)
    else:  # the record itself is unreadable: keep its bytes
        row["payload_base64"] = base64.b64encode(entry.payload).decode()
    return orjson.dumps(row) + b"\n"


class DeadLetterFile:
    """Appends dead letters to a JSON lines file, each event once (thread-safe, and safe beside
    other workers appending to the same file; created on first use)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._ids: dict[str, None] = {}  # the ids in the file, oldest first (bounded)
        self._file: tuple[int, int] = (-1, -1)  # (device, inode) of what `_read` counts in
        self._read = 0  # bytes of it whose ids are in `_ids`
        self._tail = b""  # a line not complete yet at the last look

    def write(self, entries: list[DeadLetter]) -> int:
        """Append and fsync those whose `_id` the file does not hold yet; returns how many were
        appended. Raises OSError when the file cannot be written."""
        if not entries:
            return 0
        now = time.time()
        with self._lock:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, DEAD_LETTER_MODE)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # released by the close
                self._catch_up(fd)
                fresh: list[DeadLetter] = []
                for entry in entries:
                    if entry.id and entry.id in self._ids:
                        continue  # written before (by a worker killed before its ack)
                    if entry.id:
                        self._remember(entry.id)
                    fresh.append(entry)
                data = b"".join(dead_letter_line(entry, now) for entry in fresh)
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
                self._read += len(data)
                return len(fresh)
            finally:
                os.close(fd)

    def _catch_up(self, fd: int) -> None:
        """Learn the ids appended since the last look (by anyone). A file replaced (rotated)
        or cut shorter is read afresh."""
        status = os.fstat(fd)
        if (status.st_dev, status.st_ino) != self._file or status.st_size < self._read:
            self._file = (status.st_dev, status.st_ino)
            self._ids.clear()
            # From the byte before the window, so that the first (partial) line read, marked
            # by the NUL, is always the one skipped.
            self._read = max(0, status.st_size - SCAN_BYTES - 1)
            self._tail = b"\0" if self._read else b""
        while self._read < status.st_size:
            chunk = os.pread(fd, min(_READ, status.st_size - self._read), self._read)
            if not chunk:
                break
            self._read += len(chunk)
            lines = (self._tail + chunk).split(b"\n")
            self._tail = lines.pop()
            for line in lines:
                self._learn(line)

    def _learn(self, line: bytes) -> None:
        if not line or line[:1] != b"{":  # the part of a line a scan began in, or damage
            return
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            return
        doc_id = row.get("_id") if isinstance(row, dict) else None
        if isinstance(doc_id, str) and doc_id:
            self._remember(doc_id)

    def _remember(self, doc_id: str) -> None:
        self._ids[doc_id] = None
        if len(self._ids) > REMEMBERED_IDS:
            del self._ids[next(iter(self._ids))]


class DeadLetters:
    """The dead-letter file, and the dead-letter index when one is configured."""

    def __init__(self, path: str, output: Output | None, index_pattern: str = "") -> None:
        """`output` None: the file only (the Kafka producer, which has no Elasticsearch)."""
        self.file = DeadLetterFile(path)
        self._output = output
        self._index_pattern = index_pattern if output is not None and output.wants_ids else ""
        self._log = RateLimitedLog(log)

    def keep(self, letters: list[DeadLetter], reason: str) -> bool:
        """Write them to the file (and index them); False when the file cannot be written (the
        caller keeps the events in the spool and tries again)."""
        try:
            self.file.write(letters)
        except OSError as error:
            self._log(logging.ERROR, "dead-letter-file",
                      "cannot write the dead-letter file %s (%s); %d refused events stay in the "
                      "spool", self.file.path, error.strerror or error, len(letters))
            return False
        self._log(logging.WARNING, f"dead-letter-{reason}",
                  "%d events refused by the output (%s: %s) written to %s", len(letters), reason,
                  letters[0].reason[:300], self.file.path, count=len(letters))
        if self._index_pattern:
            self._index(letters)
        return True

    def _index(self, letters: list[DeadLetter]) -> None:
        """Best effort: the file already holds them; the index is for searching."""
        if self._output is None:
            return
        lines = bytearray()
        index = time.strftime(self._index_pattern, time.gmtime())
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for letter in letters:  # one index for them all: the request names it
            lines += action_line(None, letter.id or None)
            lines += orjson.dumps({
                "@timestamp": now, "error.type": letter.error_type,
                "error.message": letter.reason, "haproxy_receiver.index": letter.index,
                "event.original": dead_letter_line(letter, time.time()).decode().rstrip("\n"),
            }) + b"\n"
        result = self._output.send(bytes(lines), len(letters), index)
        if not result.delivered_all:
            failure = next(iter(result.failures), None)
            self._log(logging.WARNING, "dead-letter-index",
                      "could not index %d dead letters into %s (%s); they are in %s",
                      len(letters), index,
                      result.message or (failure.reason[:200] if failure else ""), self.file.path)


def dead_letter_path(settings: Settings) -> Path:
    """Where refused documents go: `elasticsearch.dead_letter_file`, else beside the spool."""
    configured = settings.elasticsearch.dead_letter_file
    return Path(configured) if configured else Path(settings.spool.dir) / "dead-letter.jsonl"
