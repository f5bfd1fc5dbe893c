"""The spool writer: appends batches of msgpack payloads to the active segment, rolls segments,
enforces `max_bytes` with the `when_full` policy, survives a full disk, and fsyncs by policy.

One `writev()` per batch (per segment touched) of the frames and the payloads as they are (no
copy into a buffer); `append` is thread-safe (an internal lock serialises callers).
Durability: an appended batch survives a kill of the process as soon as `append` returns (it is
in the kernel's page cache); it survives a power cut once fsynced: at once with
`fsync = "always"`, within `fsync_interval` with `"interval"` (a background thread, never the
receive path), whenever the kernel writes back with `"never"`.
"""

from __future__ import annotations

import bisect
import errno
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import google_crc32c

from receiver.config import SpoolSettings
from receiver.metrics import Metrics
from receiver.spool import notify
from receiver.spool.directory import (
    DirectoryLock,
    ReadPosition,
    ensure_directory,
    fsync_directory,
    load_identity,
    read_checkpoint,
)
from receiver.spool.errors import SpoolError
from receiver.spool.format import (
    CHECKED,
    FRAME,
    FRAME_SIZE,
    RECORD_MARKER,
    list_segments,
    pack_footer,
    pack_header,
    segment_name,
)
from receiver.spool.oversize import cut_to_fit
from receiver.spool.recovery import recover

log = logging.getLogger(__name__)

_IOV_MAX = os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else 1024
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_LOG_EVERY = 10.0  # seconds between two log lines about the same kind of drop


class _ShortWrite(Exception):
    """A write stopped after `done` bytes with `error`."""

    def __init__(self, done: int, error: OSError) -> None:
        super().__init__(done, error)
        self.done, self.error = done, error


@dataclass(slots=True)
class _Segment:
    size: int
    records: int


class _Throttled:
    """Logs a repeated warning at most every `_LOG_EVERY` seconds, with the count since."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._pending: dict[str, int] = {}

    def warn(self, key: str, count: int, message: str, *args: object) -> None:
        self._pending[key] = self._pending.get(key, 0) + count
        now = time.monotonic()
        if now - self._last.get(key, -_LOG_EVERY) >= _LOG_EVERY:
            if self._pending[key]:
                message += f" ({self._pending[key]} events since the last such message)"
            log.warning(message, *args)
            self._last[key] = now
            self._pending[key] = 0


class SpoolWriter:
    """Appends events to the spool directory it owns (exclusive lock) until `close()`."""

    def __init__(self, settings: SpoolSettings, metrics: Metrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._directory = Path(settings.dir)
        ensure_directory(self._directory)
        self._lock_file = DirectoryLock(self._directory)
        self._read_position = ReadPosition(self._directory)
        self._held_by_shipper: dict[int, int] = {}  # deleted segment → events still in flight
        self._lock = threading.Lock()
        self._condition = notify.condition_for(self._directory)
        self._throttled = _Throttled()
        self._parts: list[bytes] = []  # frame, payload, frame, payload, ... for one writev
        self._ends: list[int] = []
        self._fd: int | None = None
        self._number = 0
        self._size = 0
        self._records = 0
        self._sealed: dict[int, _Segment] = {}
        self._disk_full = False
        self._wanted = FRAME_SIZE
        self._dirty = False
        self._directory_dirty = False
        self._unsynced_closed: list[int] = []  # old segment fds the fsync thread syncs and closes
        self._closed = False
        try:
            self.identity = load_identity(self._directory)
            checkpoint = read_checkpoint(self._directory)
            recovery = recover(
                self._directory, self.identity, checkpoint, metrics, settings.max_record_bytes
            )
            self._sealed = {n: _Segment(s.size, s.records) for n, s in sorted(recovery.segments.items())}
            self._next_number = recovery.next_segment
            self._total = sum(s.size for s in self._sealed.values())
            self._open_next()
        except BaseException:
            self._read_position.close()
            self._lock_file.release()
            raise
        self._stop = threading.Event()
        self._fsync_thread: threading.Thread | None = None
        if settings.fsync == "interval":
            self._fsync_thread = threading.Thread(
                target=self._fsync_loop, name="spool-fsync", daemon=True
            )
            self._fsync_thread.start()

    # --- appending -------------------------------------------------------------------------

    def append(self, payloads: Sequence[bytes]) -> int:
        """Append in order; returns how many were accepted (the first ones). With `block`, the
        caller keeps the rest and calls `wait_for_room`; other policies count what they drop."""
        with self._lock:
            if self._closed:
                raise SpoolError("spool writer is closed")
            accepted = self._append(payloads)
            refused = len(payloads) - accepted
            if refused and self._settings.when_full != "block":
                reason = "disk_full" if self._disk_full else "spool_full"
                self._metrics.events_dropped.labels(reason).inc(refused)
                self._throttled.warn(
                    reason, refused, "spool %s: dropping new events (%s)", self._directory,
                    "the disk is full" if self._disk_full
                    else f"spool.max_bytes = {self._settings.max_bytes} reached",
                )
            if accepted:
                self._metrics.events_spooled.inc(accepted)
                if self._settings.fsync == "always":
                    self._sync(self._fd)
        if accepted:
            notify.signal(self._condition)
        return accepted

    def _append(self, payloads: Sequence[bytes]) -> int:
        limit = self._settings.max_record_bytes
        index, count = 0, len(payloads)
        while index < count:
            first = len(payloads[index])
            if not self._room_for(FRAME_SIZE + min(first, limit)):
                self._wanted = FRAME_SIZE + min(first, limit)
                break
            if self._fd is None and not self._open_next():
                break
            filled, stop = self._fill(payloads, index)
            if filled:
                written = self._write(filled)
                index += written
                if written < filled:  # disk full: only deleting old data can make room now
                    if self._settings.when_full == "drop_oldest" and self._drop_oldest():
                        continue
                    break
            if stop == "roll":
                self._roll()
        return index

    def _fill(self, payloads: Sequence[bytes], start: int) -> tuple[int, str]:
        """Frame payloads[start:] (a frame per record, the payload itself not copied) until the
        segment or the spool is full."""
        limit = self._settings.max_record_bytes
        segment_room = self._settings.segment_bytes - self._size - FRAME_SIZE  # keep the footer's
        spool_room = self._settings.max_bytes - self._total - FRAME_SIZE
        now = time.time()
        ends, parts = self._ends, self._parts
        ends.clear()
        parts.clear()
        keep_end, keep_part = ends.append, parts.append
        frame, checked = FRAME.pack, CHECKED.pack
        crc_of, crc_on = google_crc32c.value, google_crc32c.extend
        position = 0
        for index in range(start, len(payloads)):
            payload = payloads[index]
            if len(payload) > limit:
                payload = self._cut(payload)
            length = len(payload)
            end = position + FRAME_SIZE + length
            if end > segment_room and (self._records or ends):
                return len(ends), "roll"
            if end > spool_room:
                return len(ends), "full"
            # format.record_crc, inline: a call less per record
            keep_part(frame(RECORD_MARKER, crc_on(crc_of(checked(length, now)), payload), length, now))
            keep_part(payload)
            position = end
            keep_end(end)
        return len(ends), "done"

    def _cut(self, payload: bytes) -> bytes:
        limit = self._settings.max_record_bytes
        self._metrics.spool_records_cut.inc()
        self._throttled.warn(
            "cut", 1, "spool %s: an event of %d bytes exceeded spool.max_record_bytes (%d); cut to fit",
            self._directory, len(payload), limit,
        )
        return cut_to_fit(payload, limit)

    def _write(self, records: int) -> int:
        """Write the framed records; returns how many complete records reached the file."""
        assert self._fd is not None
        total = self._ends[records - 1]
        try:
            done = self._write_parts(self._parts[: 2 * records])
        except _ShortWrite as short:
            complete = bisect.bisect_right(self._ends, short.done, hi=records)
            keep = self._ends[complete - 1] if complete else 0
            self._write_failed(short.error, self._size + keep)
            self._account(keep, complete)
            return complete
        assert done == total
        self._account(total, records)
        self._disk_full = False
        return records

    def _write_parts(self, parts: list[bytes]) -> int:
        """`writev` in slices of IOV_MAX buffers; a short write (the file system ran out of
        room mid-way) continues from where it stopped until it fails. Raises `_ShortWrite`."""
        fd, done = self._fd, 0
        assert fd is not None
        for first in range(0, len(parts), _IOV_MAX):
            chunk = parts[first : first + _IOV_MAX]
            wanted = sum(map(len, chunk))
            written = 0
            try:
                written = os.writev(fd, chunk)
                if written < wanted:
                    rest = memoryview(b"".join(chunk))
                    while written < wanted:
                        written += os.write(fd, rest[written:])
            except OSError as error:
                raise _ShortWrite(done + written, error) from None
            done += written
        return done

    def _account(self, size: int, records: int) -> None:
        self._size += size
        self._total += size
        self._records += records
        self._dirty = self._dirty or size > 0

    def _write_failed(self, error: OSError, keep: int) -> None:
        """A failed write leaves no partial record behind: the file is cut back to the last
        complete record (a reader never hands out an incomplete frame, so nothing handed out
        is taken back)."""
        assert self._fd is not None
        self._disk_full = True
        if error.errno in _DISK_ERRORS:
            self._throttled.warn(
                "enospc", 0, "spool %s: disk full (%s); waiting for space",
                self._directory, error.strerror,
            )
        else:
            log.error(
                "spool %s: writing segment failed: %s; treated like a full disk",
                self._directory, error,
            )
        try:
            os.ftruncate(self._fd, keep)
            os.lseek(self._fd, keep, os.SEEK_SET)
        except OSError as failure:
            log.error("spool %s: cannot cut the failed write back: %s", self._directory, failure)

    # --- segments --------------------------------------------------------------------------

    def _open_next(self) -> bool:
        number = self._next_number
        path = self._directory / segment_name(number)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as error:
            self._disk_full = True
            log.error("spool %s: cannot create segment %s: %s", self._directory, path.name, error.strerror)
            return False
        header = pack_header(self.identity, number, time.time())
        try:
            os.write(fd, header)
        except OSError as error:
            os.close(fd)
            path.unlink(missing_ok=True)
            self._disk_full = True
            self._throttled.warn(
                "enospc", 0, "spool %s: cannot start a segment: %s", self._directory, error.strerror
            )
            return False
        self._fd, self._number, self._next_number = fd, number, number + 1
        self._size, self._records = len(header), 0
        self._total += len(header)
        self._dirty = True
        if self._settings.fsync == "always":
            fsync_directory(self._directory)
        else:
            self._directory_dirty = True
        return True

    def _roll(self) -> None:
        """Close the active segment with its footer and start the next one."""
        assert self._fd is not None
        try:
            footer = pack_footer(self._records, time.time())
            os.write(self._fd, footer)
            self._size += len(footer)
            self._total += len(footer)
        except OSError as error:  # a segment without footer is still read; stats scan it
            log.warning(
                "spool %s: cannot write the footer of segment %d: %s",
                self._directory, self._number, error.strerror,
            )
        self._sealed[self._number] = _Segment(self._size, self._records)
        old, self._fd = self._fd, None
        if self._settings.fsync == "always":
            self._sync(old)
            os.close(old)
        elif self._settings.fsync == "interval":
            self._unsynced_closed.append(old)
        else:
            os.close(old)
        self._open_next()

    # --- room ------------------------------------------------------------------------------

    def _room_for(self, needed: int) -> bool:
        if self._disk_full and not self._disk_has_space():
            return self._settings.when_full == "drop_oldest" and self._drop_oldest()
        if self._fits(needed):
            return True
        if self._settings.when_full == "drop_oldest":
            while not self._fits(needed):
                if not self._drop_oldest():
                    return False
            return True
        return False

    def _fits(self, needed: int) -> bool:
        if self._total + needed + FRAME_SIZE <= self._settings.max_bytes:
            return True
        self._forget_deleted()
        return self._total + needed + FRAME_SIZE <= self._settings.max_bytes

    def _forget_deleted(self) -> None:
        """Segments the reader deleted (maybe in another process) no longer take room."""
        present = set(list_segments(self._directory))
        for number in [n for n in self._sealed if n not in present]:
            self._total -= self._sealed.pop(number).size

    def _disk_has_space(self) -> bool:
        try:
            stats = os.statvfs(self._directory)
        except OSError:
            return False
        if stats.f_bavail * stats.f_frsize >= self._wanted + 2 * FRAME_SIZE + 4096:
            self._disk_full = False
            return True
        return False

    def _drop_oldest(self) -> bool:
        """Delete the oldest closed segment the shipper has not started on, counting its
        unacknowledged events as dropped.

        Events already handed to the shipper sit in bulk requests that keep being retried:
        deleting their segment would not stop their delivery, only make them counted twice
        (dropped, then shipped). So the oldest segment *not yet read* goes; only when every
        closed segment is being read does the oldest one go, and then only its unread events
        count as dropped (the rest are delivered).
        """
        self._forget_deleted()
        if not self._sealed:
            return False
        with self._read_position.exclusive():  # the reader cannot start on it meanwhile
            unread = [n for n, seg in self._sealed.items()
                      if self._read_position.handed_out(n, seg.records) == 0]
            number = unread[0] if unread else next(iter(self._sealed))
            segment = self._sealed.pop(number)
            try:
                (self._directory / segment_name(number)).unlink()
            except FileNotFoundError:
                return True  # the reader deleted it: it was delivered
            except OSError as error:
                log.error("spool %s: cannot delete segment %d: %s", self._directory, number,
                          error.strerror)
                self._sealed = dict(sorted({number: segment, **self._sealed}.items()))
                return False
            acknowledged = self._acknowledged(number, segment.records)
            taken = max(acknowledged, self._read_position.handed_out(number, segment.records))
        self._total -= segment.size
        self._disk_full = False
        held = taken - acknowledged
        if held:
            self._held_by_shipper[number] = held
        dropped = segment.records - taken
        if dropped:
            self._metrics.events_dropped.labels("spool_full_oldest").inc(dropped)
            self._throttled.warn(
                "oldest", dropped, "spool %s full: deleted the oldest segment %d with %d unshipped events",
                self._directory, number, dropped,
            )
        return True

    def held_by_shipper(self) -> int:
        """Events of segments deleted by drop_oldest that the shipper still delivers (they count
        as pending until the checkpoint passes their segment)."""
        with self._lock:
            if not self._held_by_shipper:
                return 0
            checkpoint = read_checkpoint(self._directory)
            passed = checkpoint.segment if checkpoint is not None else 0
            for number in [n for n in self._held_by_shipper if n < passed]:
                del self._held_by_shipper[number]
            return sum(self._held_by_shipper.values())

    def _acknowledged(self, number: int, records: int) -> int:
        """How many of segment `number`'s records the checkpoint has passed."""
        checkpoint = read_checkpoint(self._directory)
        if checkpoint is None or checkpoint.segment < number:
            return 0
        return records if checkpoint.segment > number else min(checkpoint.ordinal, records)

    def has_room(self) -> bool:
        """True when `append` may accept the next event (the last refused one, if any)."""
        with self._lock:
            if self._settings.when_full == "drop_oldest" and not self._disk_full:
                return True
            if self._disk_full and not self._disk_has_space():
                return False
            return self._fits(self._wanted)

    def wait_for_room(self, timeout: float) -> bool:
        """Block up to `timeout` seconds until `has_room()`; True if there is room."""
        deadline = time.monotonic() + timeout
        while not self.has_room():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._condition:
                self._condition.wait(min(remaining, 0.01))
        return True

    # --- durability ------------------------------------------------------------------------

    def _sync(self, fd: int | None) -> None:
        if fd is None:
            return
        started = time.perf_counter()
        try:
            os.fdatasync(fd)
        except OSError as error:
            log.error("spool %s: fsync failed: %s", self._directory, error.strerror)
            return
        self._metrics.spool_fsyncs.inc()
        self._metrics.spool_fsync_seconds.observe(time.perf_counter() - started)

    def _fsync_loop(self) -> None:
        while not self._stop.wait(self._settings.fsync_interval):
            self._sync_pending()

    def _sync_pending(self) -> None:
        with self._lock:
            old, self._unsynced_closed = self._unsynced_closed, []
            current = os.dup(self._fd) if self._dirty and self._fd is not None else None
            self._dirty = False
            directory_dirty, self._directory_dirty = self._directory_dirty, False
        for fd in old:
            self._sync(fd)
            os.close(fd)
        if current is not None:
            self._sync(current)
            os.close(current)
        if directory_dirty:
            try:
                fsync_directory(self._directory)
            except OSError as error:
                log.error("spool %s: fsync of the directory failed: %s", self._directory, error.strerror)

    def close(self) -> None:
        """Seal the active segment, fsync (unless `never`) and release the directory."""
        if self._fsync_thread is not None:
            self._stop.set()
            self._fsync_thread.join()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._fd is not None:
                try:
                    os.write(self._fd, pack_footer(self._records, time.time()))
                except OSError as error:
                    log.warning("spool %s: cannot write the last footer: %s", self._directory, error.strerror)
                if self._settings.fsync != "never":
                    self._sync(self._fd)
                os.close(self._fd)
                self._fd = None
            for fd in self._unsynced_closed:
                if self._settings.fsync != "never":
                    self._sync(fd)
                os.close(fd)
            self._unsynced_closed = []
            self._read_position.close()
            if self._settings.fsync != "never":
                fsync_directory(self._directory)
        self._lock_file.release()
        notify.signal(self._condition)

    def __enter__(self) -> SpoolWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
