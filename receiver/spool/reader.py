"""The spool reader: hands out records in order, keeps the durable checkpoint, deletes segments
that are fully acknowledged.

It tails the files, so the writer may live in another thread or another process of the same
instance (no lock is taken; start the writer first, it repairs the files left by a crash).
`read` continues after the records already handed out; `acknowledge` accepts batches in any
order and moves the checkpoint over the contiguous acknowledged prefix only. After a restart,
reading resumes at the checkpoint: records after it are handed out again, and their event ids
(identity + segment + offset) let Elasticsearch recognise what it already has.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import google_crc32c

from receiver.metrics import Metrics
from receiver.spool import notify
from receiver.spool.directory import (
    Checkpoint,
    CheckpointFile,
    ReadPosition,
    ensure_directory,
    load_identity,
    quarantine,
    read_checkpoint,
)
from receiver.spool.errors import SpoolError
from receiver.spool.format import (
    FRAME,
    FRAME_SIZE,
    HEADER_SIZE,
    RECORD_MARKER,
    SEGMENT_SUFFIX,
    Step,
    frame_at,
    list_segments,
    next_valid_frame,
    segment_name,
)
from receiver.spool.records import Batch, Position, Record

log = logging.getLogger(__name__)

# A damaged frame in the segment being written could be a write still being copied in; only
# once it stays damaged this long is it skipped as corruption.
_DAMAGE_GRACE = 1.0
_LISTDIR_EVERY = 0.2
_POLL_INTERVAL = 0.002
# With an inotify watch the reader sleeps until a segment is written; it still looks at the
# files this often, so a notification the filesystem never delivers costs latency, not events.
_WATCHED_POLL_INTERVAL = 0.05
# Read chunks are sized from the average frame of the last batch (with this margin), so a
# batch of 2000 events reads ~2 MB rather than the whole `max_bytes`; a short chunk only costs
# one more `read` call. The first read of a reader assumes frames this large.
_CHUNK_MARGIN = 1.25
_FIRST_FRAME_GUESS = 1024
_MIN_CHUNK = 65536


class SpoolReader:
    """Reads one spool directory for the shipper. `read` and `acknowledge` may be called from
    different threads (e.g. acknowledgements from bulk request workers); a lock serialises them."""

    def __init__(self, directory: Path, metrics: Metrics | None = None) -> None:
        self._directory = Path(directory)
        self._directory_text = str(self._directory)
        ensure_directory(self._directory)
        self._metrics = metrics
        self.identity = load_identity(self._directory)
        self._condition = notify.condition_for(self._directory)
        self._watch: notify.SegmentWatch | None = None  # opened by the first `wait`
        self._watch_tried = False
        checkpoint = read_checkpoint(self._directory)
        present = list_segments(self._directory)
        if checkpoint is None:
            checkpoint = Checkpoint(present[0] if present else 0, HEADER_SIZE, 0)
        elif present and checkpoint.segment < present[0]:
            log.warning(
                "spool %s: the checkpoint's segment %d is gone (deleted to make room); reading "
                "from segment %d", self._directory, checkpoint.segment, present[0],
            )
            checkpoint = Checkpoint(present[0], HEADER_SIZE, 0)
        self._committed = checkpoint
        self._checkpoint_file = CheckpointFile(self._directory)
        self._position = ReadPosition(self._directory)
        self._segment = checkpoint.segment
        self._offset = max(checkpoint.offset, HEADER_SIZE)
        self._ordinal = checkpoint.ordinal
        self._fd: int | None = None
        self._sealed = False  # the current segment can no longer grow
        self._at_footer = False
        self._idle_size: int | None = None  # file size when `read` last found nothing new
        self._damage_since: tuple[int, int, float] | None = None
        self._last_listdir = 0.0
        self._average_frame = _FIRST_FRAME_GUESS
        self._seq = 0
        self._lowest_unacknowledged = 0
        self._handed_out: dict[int, Batch] = {}
        self._acknowledged: set[int] = set()
        self._closed = False
        self._lock = threading.Lock()

    # --- reading ---------------------------------------------------------------------------

    def read(self, max_records: int, max_bytes: int) -> Batch | None:
        """The next records after those already handed out (at least one when any is there;
        never more than `max_records`, payloads summing to at most `max_bytes` unless the first
        alone is larger), all from one segment; None when nothing new is written yet."""
        with self._lock:
            if self._closed:
                raise SpoolError("spool reader is closed")
            if self._idle_size is not None and self._damage_since is None and not self._may_have_news():
                # The last read found nothing and the file has not changed since: skip the
                # flock and the read (a shipper waiting for news looks again on every wake-up).
                return None
            with self._position.exclusive():  # drop_oldest must see what is handed out
                batch = self._read(max_records, max_bytes)
                if batch is not None:
                    self._position.publish(self._segment, self._ordinal)
            return batch

    def _read(self, max_records: int, max_bytes: int) -> Batch | None:
        max_records = max(1, max_records)
        records = min(max_records, 1 << 20)
        most = min(max_bytes, 64 * 1024**2) + records * FRAME_SIZE + FRAME_SIZE
        expected = int(records * self._average_frame * _CHUNK_MARGIN)
        chunk = max(_MIN_CHUNK, min(most, expected))
        while True:
            if self._fd is None and not self._open_current():
                return None
            assert self._fd is not None
            if os.fstat(self._fd).st_nlink == 0:  # deleted by drop_oldest while we read it
                self._next_segment(self._segment + 1)
                continue
            data = self._pread(chunk)
            batch = self._parse(data, max_records, max_bytes)
            if batch is not None:
                self._idle_size = None
                return batch
            frame = frame_at(data, 0)
            if (
                frame.step is Step.INCOMPLETE
                and frame.end > len(data)
                and os.fstat(self._fd).st_size >= self._offset + frame.end
            ):
                chunk = frame.end  # a record larger than the chunk: read it whole
                continue
            if frame.step is Step.FOOTER:
                self._at_footer = True
                if not self._enter_following():
                    return self._idle(data)
                continue
            if not self._sealed:
                if self._following_segment() is not None:
                    self._sealed = True  # the writer moved on: what is here now is final
                    continue
                if frame.step is not Step.DAMAGED or not self._damage_persists():
                    return self._idle(data)
            moved_on = frame.step is not Step.END and self._skip_damage()
            if not moved_on and not self._enter_following():
                return self._idle(data)

    def _idle(self, data: bytes) -> Batch | None:
        """Nothing new: remember the file size so `wait` can tell when that changes."""
        self._idle_size = self._offset + len(data)
        return None

    def _enter_following(self) -> bool:
        following = self._following_segment()
        if following is None:
            return False
        self._next_segment(following)
        return True

    def _parse(self, data: bytes, max_records: int, max_bytes: int) -> Batch | None:
        # The hot loop of the ship process's reading thread (~1 µs per record): slices of
        # `bytes` (one copy of each payload; google_crc32c refuses memoryviews), positions built
        # without NamedTuple's Python-level __new__.
        records: list[Record] = []
        append = records.append
        unpack = FRAME.unpack_from
        value, extend = google_crc32c.value, google_crc32c.extend
        new_tuple = tuple.__new__
        segment, base = self._segment, self._offset
        size, offset, total, count = len(data), 0, 0, 0
        while count < max_records and size - offset >= FRAME_SIZE:
            marker, crc, length, written_at = unpack(data, offset)
            start = offset + FRAME_SIZE
            end = start + length
            if marker != RECORD_MARKER or end > size:
                break
            if count and total + length > max_bytes:
                break
            payload = data[start:end]
            if extend(value(data[offset + 8 : start]), payload) != crc:
                break
            append(Record(new_tuple(Position, (segment, base + offset)), payload, written_at))
            count += 1
            total += length
            offset = end
        if not count:
            return None
        self._average_frame = offset // count
        self._offset = base + offset
        self._ordinal += len(records)
        self._damage_since = None
        batch = Batch(self._seq, records, Position(segment, self._offset), self._ordinal)
        self._handed_out[self._seq] = batch
        self._seq += 1
        return batch

    def _pread(self, size: int) -> bytes:
        assert self._fd is not None
        return os.pread(self._fd, size, self._offset)

    def _open_current(self) -> bool:
        """Open the segment to read: the checkpoint's, or the next one present."""
        present = [n for n in list_segments(self._directory) if n >= self._segment]
        if not present:
            return False
        if present[0] != self._segment:
            self._segment, self._offset, self._ordinal = present[0], HEADER_SIZE, 0
        try:
            self._fd = os.open(self._directory / segment_name(self._segment), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:  # deleted between listing and opening: look again
            self._segment += 1
            return self._open_current()
        self._sealed = self._at_footer = False
        return True

    def _following_segment(self) -> int | None:
        """The number of the segment after the current one, if the writer created it."""
        # A string path (not pathlib: this runs on every wake-up of a waiting reader, and `/`
        # costs microseconds).
        if os.path.exists(os.path.join(self._directory_text, segment_name(self._segment + 1))):
            return self._segment + 1
        now = time.monotonic()
        # Rate-limited while the writer may still append here; once this segment has its footer
        # a later one exists (drop_oldest may have deleted the next ones): look at once.
        if not self._at_footer and now - self._last_listdir < _LISTDIR_EVERY:
            return None
        self._last_listdir = now
        later = [n for n in list_segments(self._directory) if n > self._segment]
        return later[0] if later else None

    def _next_segment(self, number: int) -> None:
        """Leave the current segment; the checkpoint moves past it once everything handed out
        from it is acknowledged (a boundary marker in the acknowledgement order)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._segment, self._offset, self._ordinal = number, HEADER_SIZE, 0
        self._sealed = self._at_footer = False
        self._damage_since = None
        boundary = Batch(self._seq, [], Position(number, HEADER_SIZE), 0)
        self._handed_out[self._seq] = boundary
        self._seq += 1
        self._acknowledge(boundary)

    def _damage_persists(self) -> bool:
        now = time.monotonic()
        seen = self._damage_since
        if seen is None or seen[:2] != (self._segment, self._offset):
            self._damage_since = (self._segment, self._offset, now)
            return False
        return now - seen[2] >= _DAMAGE_GRACE

    def _skip_damage(self) -> bool:
        """Quarantine the damaged bytes at the read offset and move to the next valid frame;
        False when nothing valid follows in this segment."""
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        data = os.pread(self._fd, max(0, size - self._offset), self._offset)
        resume = next_valid_frame(data, 0)
        end = len(data) if resume is None else resume
        if end == 0 and resume is None:
            return False
        fresh = quarantine(self._directory, self._segment, self._offset, data[:end])
        if fresh and self._metrics is not None:
            self._metrics.spool_corrupt_records.inc()
        log.error(
            "spool %s: %d damaged bytes in segment %d at offset %d skipped (copy in the "
            "quarantine folder)", self._directory, end, self._segment, self._offset,
        )
        self._offset += end
        self._damage_since = None
        return resume is not None

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` seconds until new records may be readable."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self._closed or self._may_have_news():
                    return not self._closed
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if not self._watch_tried:
                # Then look again: what was written before the watch existed is not reported.
                with self._lock:
                    self._watch_tried = True
                    if not self._closed:
                        self._watch = notify.SegmentWatch.open(self._directory, SEGMENT_SUFFIX)
                continue
            if self._watch is not None:
                self._watch.wait(min(remaining, _WATCHED_POLL_INTERVAL))
                continue
            with self._condition:
                # A writer in another process cannot notify us: poll the file (an fstat) often
                # enough that the poll is not what an event's delivery latency is made of.
                self._condition.wait(min(remaining, _POLL_INTERVAL))

    def _may_have_news(self) -> bool:
        if self._fd is None:
            return any(n >= self._segment for n in list_segments(self._directory))
        status = os.fstat(self._fd)
        if status.st_nlink == 0:
            return True
        if self._at_footer or self._sealed:
            return self._following_segment() is not None
        if self._idle_size is None:
            return status.st_size > self._offset or self._following_segment() is not None
        return status.st_size != self._idle_size or self._following_segment() is not None

    # --- acknowledging ---------------------------------------------------------------------

    def acknowledge(self, batch: Batch) -> None:
        """Mark a batch delivered; persists the checkpoint over the contiguous acknowledged
        prefix and deletes segments entirely before it."""
        with self._lock:
            if self._closed:  # too late to save: these events are simply sent again next time
                log.debug("spool %s: acknowledgement after close ignored", self._directory)
                return
            self._acknowledge(batch)

    def _acknowledge(self, batch: Batch) -> None:
        if batch.seq < self._lowest_unacknowledged or batch.seq not in self._handed_out:
            return  # acknowledged twice, or not ours: nothing to do
        self._acknowledged.add(batch.seq)
        last: Batch | None = None
        while self._lowest_unacknowledged in self._acknowledged:
            self._acknowledged.discard(self._lowest_unacknowledged)
            last = self._handed_out.pop(self._lowest_unacknowledged)
            self._lowest_unacknowledged += 1
        if last is None:
            return
        checkpoint = Checkpoint(last.end.segment, last.end.offset, last.end_ordinal)
        if checkpoint == self._committed:
            return
        previous, self._committed = self._committed, checkpoint
        try:
            self._checkpoint_file.save(checkpoint)
        except OSError as error:  # the next acknowledgement saves a newer one; replays are harmless
            log.error("spool %s: cannot save the checkpoint: %s", self._directory, error.strerror)
        if checkpoint.segment > previous.segment:
            # Safe even when the save failed: a reader that finds its checkpoint's segment gone
            # starts at the oldest segment left, which holds nothing acknowledged before it.
            self._delete_before(checkpoint.segment)

    def _delete_before(self, segment: int) -> None:
        deleted = False
        for number in list_segments(self._directory):
            if number >= segment:
                break
            try:
                (self._directory / segment_name(number)).unlink()
                deleted = True
            except FileNotFoundError:
                pass
            except OSError as error:
                log.error(
                    "spool %s: cannot delete acknowledged segment %d: %s",
                    self._directory, number, error.strerror,
                )
        if deleted:
            notify.signal(self._condition)

    @property
    def checkpoint(self) -> Position:
        """The durable position: everything before it is acknowledged."""
        return Position(self._committed.segment, self._committed.offset)

    def close(self) -> None:
        with self._lock:
            self._checkpoint_file.close()
            self._position.close()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._closed = True
        # After `_closed`: no `wait` opens another; one in progress ends within its poll interval.
        if self._watch is not None:
            self._watch.close()

    def __enter__(self) -> SpoolReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

