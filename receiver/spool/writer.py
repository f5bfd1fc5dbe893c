"""The spool writer: owns the spool directory (lock, identity, start-up repair, ledger) and
appends batches of records to the active segment; rolls segments, enforces `max_bytes` with the
`when_full` policy, survives a full disk, and fsyncs by policy.

One `writev()` per batch (per segment touched) of the frame heads and the payloads as they are
(no copy into a buffer); `append` is thread-safe (an internal lock serialises callers).
Durability: an appended batch survives a kill of the process as soon as `append` returns (it is
in the kernel's page cache); it survives a power cut once fsynced: at once with
`fsync = "always"`, within `fsync_interval` with `"interval"` (a background thread, never the
receive path), whenever the kernel writes back with `"never"`.

A full disk never wedges the spool: a write that fails for lack of space seals the active
segment where its last whole record ends, so readers can finish it and the ledger delete it;
a new segment is started only once the disk has room again (`spool.segment_bytes` is a ceiling,
not a reservation).
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from receiver.config import SpoolSettings
from receiver.metrics import SpoolMetrics
from receiver.ratelimit import RateLimitedLog
from receiver.spool import notify
from receiver.spool.clock import SPOOL_CLOCK, SpoolClock
from receiver.spool.directory import (
    DirectoryLock,
    ensure_directory,
    fsync_directory,
    load_identity,
    make_private,
    new_identity,
)
from receiver.spool.errors import SpoolError
from receiver.spool.format import (
    FRAME_SIZE,
    HEADER_SIZE,
    pack_footer,
    pack_header,
    pack_record_head,
    segment_name,
)
from receiver.spool.fs import FileSystem, write_all
from receiver.spool.ledger import Ledger
from receiver.spool.recovery import newest_seal, recover

log = logging.getLogger(__name__)

_IOV_MAX = os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else 1024
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
# Room a new segment needs beyond its first record: its header and, one day, its footer.
_SEGMENT_OVERHEAD = HEADER_SIZE + FRAME_SIZE
# A segment takes at most this share of the room the spool has on its volume (what is free plus
# what the spool holds): on a volume smaller than `spool.segment_bytes` the spool still has
# several segments, so `drop_oldest` can delete old ones while a worker holds the one it reads,
# and acknowledged segments free space a piece at a time.
_SEGMENTS_PER_VOLUME = 8
_SMALLEST_SEGMENT = 64 * 1024
_TRUST_FREE_AFTER = 10.0  # seconds: then a write finds out again


class _ShortWrite(Exception):
    """A write stopped after `done` bytes with `error`."""

    def __init__(self, done: int, error: OSError) -> None:
        super().__init__(done, error)
        self.done, self.error = done, error


class SpoolWriter:
    """Appends records to the spool directory it owns (exclusive lock) until `close()`."""

    def __init__(self, settings: SpoolSettings, metrics: SpoolMetrics,
                 fs: FileSystem | None = None, clock: SpoolClock | None = None) -> None:
        self._settings = settings
        self.clock = clock or SPOOL_CLOCK  # stamps records: never goes back (spool/clock.py)
        self._metrics = metrics
        self._fs = fs or FileSystem()
        self._directory = Path(settings.dir)
        ensure_directory(self._directory)
        self._lock_file = DirectoryLock(self._directory)
        self._lock = threading.Lock()
        self._condition = notify.condition_for(self._directory)
        self._log = RateLimitedLog(log)
        self._parts: list[bytes] = []  # head, payload, head, payload, ... for one writev
        self._ends: list[int] = []
        self._fd: int | None = None
        self._number = 0
        self._size = 0
        self._records = 0
        self._segment_limit = int(settings.segment_bytes)
        self._disk_full = False
        # What the file system said was free right after a write failed with ENOSPC: the figure
        # can overstate what a write gets (blocks, pages, large folios, a project quota), so for
        # a while only space beyond it (freed by shipping, by an operator) counts as room: a
        # retry on our own cut-back bytes would take newer events after refusing older ones.
        self._free_when_full = 0
        self._full_until = 0.0
        self._wanted = FRAME_SIZE
        self._dirty = False
        self._directory_dirty = False
        self._unsynced_closed: list[int] = []  # old segment fds the fsync thread syncs and closes
        self._closed = False
        try:
            make_private(self._directory)
            self.spool_identity = load_identity(self._directory)
            # The identity this writer puts in the header of every segment it starts, the
            # first part of their events' ids: fresh at every start, so that ids never repeat
            # whatever spool file is lost, damaged, copied or restored (a deleted or older
            # ledger restarts the segment numbers; new numbers under a new identity are new
            # ids). Segments already there keep the identity in their header, so their replays
            # are still recognised.
            self.identity = new_identity()
            self.ledger = Ledger(self._directory, metrics, self._fs)
            self.ledger.on_freed(lambda: notify.signal(self._condition))
            recovery = recover(self._directory, self.identity, self.ledger.highest_segment,
                               self.clock.now, self.ledger.saved_seals)
            self.clock.not_before(newest_seal(self._directory))
            recovered = self.ledger.restore(
                (s.number, s.size, s.records, s.end) for s in recovery.segments)
            # Records of a torn tail were in the spool when the earlier run stopped: found now
            # (recovered) and lost (corrupt), so the accounting of this run closes.
            metrics.events_recovered.inc(recovered + recovery.lost_records)
            if recovery.lost_records:
                metrics.spool_corrupt_records.inc(recovery.lost_records)
            self._count_reidentified(recovery.reidentified)
            if recovered:
                log.info("spool %s: %d events from before the start are pending", self._directory,
                         recovered)
            self._next_number = recovery.next_segment
            self._open_next()
        except BaseException:
            self._lock_file.release()
            raise
        self._stop = threading.Event()
        self._fsync_thread: threading.Thread | None = None
        if settings.fsync == "interval":
            self._fsync_thread = threading.Thread(
                target=self._fsync_loop, name="spool-fsync", daemon=True
            )
            self._fsync_thread.start()

    def _count_reidentified(self, segments: dict[int, int]) -> None:
        """Segments whose header was damaged got this writer's identity: their pending events
        are sent under new ids, so Elasticsearch may hold some twice (a duplicate, never a
        loss: the old identity is unknown, and guessing one could match other events' ids)."""
        if not segments:
            return
        progress = self.ledger.progress()
        count = sum(records - progress[number][1] for number, records in segments.items()
                    if number in progress)
        if count:
            self._metrics.spool_events_reidentified.inc(count)
            log.warning("spool %s: %d pending events of segments with a damaged header are sent "
                        "under new ids (segments %s): those delivered before may be indexed twice",
                        self._directory, count, ", ".join(map(str, sorted(segments))))

    @property
    def directory(self) -> Path:
        return self._directory

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
                self._log(
                    logging.WARNING, reason, "spool %s: dropping new events (%s)", self._directory,
                    "the disk is full" if self._disk_full
                    else f"spool.max_bytes = {self._settings.max_bytes} reached", count=refused,
                )
            if accepted:
                self._metrics.events_spooled.inc(accepted)
                if self._settings.fsync == "always":
                    self._sync(self._fd)
        if accepted:
            notify.signal(self._condition)
        return accepted

    def _append(self, payloads: Sequence[bytes]) -> int:
        index, count = 0, len(payloads)
        largest = self._settings.segment_bytes // 2
        while index < count:
            needed = FRAME_SIZE + len(payloads[index])
            if needed > largest:
                raise ValueError(f"a spool record of {needed} bytes exceeds half a segment")
            if not self._room_for(needed):
                self._wanted = needed
                break
            if self._fd is None and not self._open_next():
                break
            filled, stop = self._fill(payloads, index)
            if filled:
                written = self._write(filled)
                index += written
                if written < filled:  # the disk is full: only deleting segments makes room now
                    self._seal()
                    if self._settings.when_full == "drop_oldest" and self.ledger.drop_oldest():
                        continue
                    break
            if stop == "roll":
                self._roll()
            elif stop == "full" and not filled:
                break
        return index

    def _fill(self, payloads: Sequence[bytes], start: int) -> tuple[int, str]:
        """Frame payloads[start:] (a head per record, the payload itself not copied) until the
        segment or the spool is full."""
        segment_room = self._segment_limit - self._size - FRAME_SIZE  # keep the footer's
        spool_room = self._settings.max_bytes - self.ledger.bytes_on_disk() - FRAME_SIZE
        now = self.clock.now()
        ends, parts = self._ends, self._parts
        ends.clear()
        parts.clear()
        keep_end, keep_part, head = ends.append, parts.append, pack_record_head
        position = 0
        for index in range(start, len(payloads)):
            payload = payloads[index]
            end = position + FRAME_SIZE + len(payload)
            if end > segment_room and (self._records or ends):
                return len(ends), "roll"
            if end > spool_room:
                return len(ends), "full"
            keep_part(head(payload, now))
            keep_part(payload)
            position = end
            keep_end(end)
        return len(ends), "done"

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
                written = self._fs.writev(fd, chunk)
                if written < wanted:
                    rest = b"".join(chunk)
                    while written < wanted:
                        written += self._fs.write(fd, rest[written:])
            except OSError as error:
                raise _ShortWrite(done + written, error) from None
            done += written
        return done

    def _account(self, size: int, records: int) -> None:
        self._size += size
        self._records += records
        self._dirty = self._dirty or size > 0
        if records:
            self.ledger.appended(self._number, self._size, self._records)

    def _write_failed(self, error: OSError, keep: int) -> None:
        """A failed write leaves no partial record behind: the file is cut back to the last
        complete record (a reader never hands out an incomplete frame, so nothing handed out
        is taken back)."""
        assert self._fd is not None
        if error.errno in _DISK_ERRORS:
            self._log(logging.WARNING, "enospc", "spool %s: disk full (%s); sealing segment %d "
                      "and waiting for space", self._directory, error.strerror, self._number)
        else:
            log.error("spool %s: writing segment %d failed: %s; treated like a full disk",
                      self._directory, self._number, error)
        try:
            self._fs.ftruncate(self._fd, keep)
            os.lseek(self._fd, keep, os.SEEK_SET)
        except OSError as failure:
            log.error("spool %s: cannot cut the failed write back: %s", self._directory, failure)
        self._found_full(error)

    def _found_full(self, error: OSError) -> None:
        self._disk_full = True
        self._free_when_full = 0
        if error.errno == errno.ENOSPC:
            with contextlib.suppress(OSError):
                self._free_when_full = self._fs.free_bytes(self._directory)
                self._full_until = time.monotonic() + _TRUST_FREE_AFTER

    # --- segments --------------------------------------------------------------------------

    def _open_next(self) -> bool:
        number = self._next_number
        path = self._directory / segment_name(number)
        try:
            fd = self._fs.create(path)
        except OSError as error:  # no inode, no directory: nothing written to measure
            self._disk_full, self._free_when_full = True, 0
            self._log(logging.ERROR, "create", "spool %s: cannot create segment %s: %s",
                      self._directory, path.name, error.strerror)
            return False
        try:
            write_all(self._fs, fd, pack_header(self.identity, number, self.clock.now()))
        except OSError as error:
            os.close(fd)
            path.unlink(missing_ok=True)
            self._found_full(error)
            self._log(logging.WARNING, "enospc", "spool %s: cannot start a segment: %s",
                      self._directory, error.strerror)
            return False
        self._fd, self._number, self._next_number = fd, number, number + 1
        self._size, self._records = HEADER_SIZE, 0
        self._segment_limit = self._segment_size()
        self.ledger.opened(number, HEADER_SIZE)
        self._dirty = True
        if self._settings.fsync == "always":
            fsync_directory(self._directory)
        else:
            self._directory_dirty = True
        return True

    def _segment_size(self) -> int:
        """`spool.segment_bytes`, or less on a volume where that is more than an eighth of
        the room the spool has (a segment larger than the volume is cut by a full disk, and
        the whole of it is held until every event in it is shipped)."""
        try:
            room = self._fs.free_bytes(self._directory) + self.ledger.bytes_on_disk()
        except OSError:
            return int(self._settings.segment_bytes)
        return min(self._settings.segment_bytes,
                   max(_SMALLEST_SEGMENT, room // _SEGMENTS_PER_VOLUME))

    def _seal(self) -> None:
        """Close the active segment: its footer (best effort: the ledger knows where its records
        end either way), then hand its descriptor to the fsync policy."""
        assert self._fd is not None
        end = self._size
        try:
            write_all(self._fs, self._fd, pack_footer(self._records, self.clock.now()))
            self._size += FRAME_SIZE
        except OSError as error:  # a full disk: without its footer the segment still ends here
            log.warning("spool %s: segment %d sealed without its footer: %s",
                        self._directory, self._number, error.strerror)
            with contextlib.suppress(OSError):
                self._fs.ftruncate(self._fd, end)
            self._size = end
        self.ledger.sealed(self._number, end, self._size)
        old, self._fd = self._fd, None
        if self._settings.fsync == "always":
            self._sync(old)
            os.close(old)
        elif self._settings.fsync == "interval":
            self._unsynced_closed.append(old)
        else:
            os.close(old)

    def _roll(self) -> None:
        """Seal the active segment and start the next one."""
        self._seal()
        self._open_next()

    # --- room ------------------------------------------------------------------------------

    def _room_for(self, needed: int) -> bool:
        if self._disk_full and not self._disk_has_space(needed):
            return self._settings.when_full == "drop_oldest" and self._make_room(needed)
        if self._fits(needed):
            return True
        return self._settings.when_full == "drop_oldest" and self._make_room(needed)

    def _fits(self, needed: int) -> bool:
        return self.ledger.bytes_on_disk() + needed + FRAME_SIZE <= self._settings.max_bytes

    def _make_room(self, needed: int) -> bool:
        """drop_oldest: delete old segments until `needed` bytes fit (on disk and in max_bytes).
        When no sealed segment can go (a worker holds the only one), the segment being written
        is sealed so that it can: its events are older than the new ones. Only when a worker
        holds that one too are the new events refused."""
        while not (self._fits(needed) and (not self._disk_full or self._disk_has_space(needed))):
            if self.ledger.drop_oldest() is None:
                if self._fd is None or not self._records:
                    return False
                self._seal()
                continue
            self._disk_full = False  # to be found out again by the next write
        return True

    def _disk_has_space(self, needed: int) -> bool:
        try:
            free = self._fs.free_bytes(self._directory)
        except OSError:
            return False
        wanted = needed + (_SEGMENT_OVERHEAD if self._fd is None else 0) + FRAME_SIZE
        if time.monotonic() < self._full_until:
            wanted += self._free_when_full
        if free >= wanted + 4096:
            self._disk_full = False
            return True
        return False

    def has_room(self) -> bool:
        """True when `append` may accept the next event (the last refused one, if any)."""
        with self._lock:
            if self._settings.when_full == "drop_oldest" and not self._disk_full:
                return True
            if self._disk_full and not self._disk_has_space(self._wanted):
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
            self._fs.fdatasync(fd)
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
                self._seal()
            for fd in self._unsynced_closed:
                if self._settings.fsync != "never":
                    self._sync(fd)
                os.close(fd)
            self._unsynced_closed = []
            if self._settings.fsync != "never":
                fsync_directory(self._directory)
            self.ledger.close()
        self._lock_file.release()
        notify.signal(self._condition)

    def __enter__(self) -> SpoolWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
