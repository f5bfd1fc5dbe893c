"""The small files beside the segments: the instance lock, the spool identity, the read
checkpoint and the quarantine folder.

    lock          flock(2)-held by the running writer; holds its pid for the error message
    identity      10 base32 characters, created once; the prefix of every event id
    checkpoint    two slots of: magic · version · sequence · segment · offset · ordinal ·
                  saved at · CRC32C; saves overwrite the slots in turn, the valid slot with
                  the highest sequence is the checkpoint
    quarantine/   <segment>-<offset>.bin: copies of damaged bytes found in segments
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import logging
import os
import secrets
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import google_crc32c

from receiver.spool.errors import SpoolError, SpoolLocked
from receiver.spool.format import HEADER_SIZE, IDENTITY_LENGTH, list_segments, parse_header, segment_name

log = logging.getLogger(__name__)

LOCK_FILE = "lock"
IDENTITY_FILE = "identity"
CHECKPOINT_FILE = "checkpoint"
QUARANTINE_DIR = "quarantine"

_CHECKPOINT = struct.Struct("<8sIQQQQdI")
_CHECKPOINT_MAGIC = b"HRCKPT\x00\x00"
_CHECKPOINT_VERSION = 1
_BASE32 = set("abcdefghijklmnopqrstuvwxyz234567")


def ensure_directory(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SpoolError(f"cannot create spool directory {directory}: {error.strerror}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise SpoolError(f"spool directory {directory} is not writable by this user (uid {os.getuid()})")


class DirectoryLock:
    """Exclusive ownership of a spool directory for the life of this object."""

    def __init__(self, directory: Path) -> None:
        path = directory / LOCK_FILE
        try:
            self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise SpoolError(f"cannot open spool lock file {path}: {error.strerror}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode("ascii", "replace").strip()
            os.close(self._fd)
            self._fd = None
            who = f"pid {holder}" if holder.isdigit() else "an unknown process"
            raise SpoolLocked(
                f"spool directory {directory} is in use by another haproxy-receiver ({who}); "
                "one instance per spool directory: stop that one or set spool.dir to another "
                "directory"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def load_identity(directory: Path) -> str:
    """The spool identity, created on first use (race-free between processes)."""
    path = directory / IDENTITY_FILE
    for _ in range(3):
        try:
            text = path.read_text("ascii", "replace").strip()
        except FileNotFoundError:
            _create_identity(directory, _recovered_identity(directory) or _new_identity())
            continue
        if len(text) == IDENTITY_LENGTH and set(text) <= _BASE32:
            return text
        recovered = _recovered_identity(directory) or _new_identity()
        log.warning(
            "spool identity file %s is damaged (%r); using %s (from segment headers if any)",
            path, text[:40], recovered,
        )
        _replace_file(path, (recovered + "\n").encode())
        return recovered
    raise SpoolError(f"cannot create the spool identity file {path}")


def _new_identity() -> str:
    return base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()[:IDENTITY_LENGTH]


def _recovered_identity(directory: Path) -> str | None:
    """The identity recorded in the newest readable segment header (a lost identity file must
    not change event ids of pending events: that would turn replays into duplicates)."""
    for number in reversed(list_segments(directory)):
        try:
            with open(directory / segment_name(number), "rb") as handle:
                header = parse_header(handle.read(HEADER_SIZE))
        except OSError:
            continue
        if header is not None and set(header.identity) <= _BASE32:
            return header.identity
    return None


def _create_identity(directory: Path, identity: str) -> None:
    temporary = directory / f".{IDENTITY_FILE}.{os.getpid()}.tmp"
    temporary.write_bytes((identity + "\n").encode("ascii"))
    try:
        os.link(temporary, directory / IDENTITY_FILE)  # fails if another process won the race
    except FileExistsError:
        pass
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_directory(directory)


def _replace_file(path: Path, data: bytes, durable: bool = True) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


fsync_directory = _fsync_directory


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Everything before (segment, offset) is acknowledged; `ordinal` records of that segment."""

    segment: int
    offset: int
    ordinal: int


def read_checkpoint(directory: Path) -> Checkpoint | None:
    """The saved checkpoint, or None when missing or damaged (logged: reading restarts at the
    oldest segment, and event ids turn the re-sends into no-ops)."""
    path = directory / CHECKPOINT_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        log.warning(
            "cannot read spool checkpoint %s (%s); reading from the oldest segment",
            path, error.strerror,
        )
        return None
    slots = _valid_slots(data)
    best = max(slots, key=lambda slot: slot[0]) if slots else None
    if best is not None:
        return best[1]
    log.warning(
        "spool checkpoint %s is damaged (%d bytes); reading from the oldest segment "
        "(already delivered events are re-sent and recognised by their ids)", path, len(data),
    )
    return None


def _valid_slots(data: bytes) -> list[tuple[int, Checkpoint]]:
    """(sequence, checkpoint) of every intact slot in a checkpoint file's contents."""
    found = []
    for start in range(0, len(data) - _CHECKPOINT.size + 1, _CHECKPOINT.size):
        slot = data[start : start + _CHECKPOINT.size]
        magic, version, sequence, segment, offset, ordinal, _, crc = _CHECKPOINT.unpack(slot)
        if (
            magic == _CHECKPOINT_MAGIC
            and version == _CHECKPOINT_VERSION
            and google_crc32c.value(slot[:-4]) == crc
        ):
            found.append((sequence, Checkpoint(segment, offset, ordinal)))
    return found


class CheckpointFile:
    """Saves checkpoints by overwriting one of two checksummed slots in place, alternately.

    In place, because a full disk must not stop the checkpoint: only moving it lets the reader
    delete segments and free space. Two slots, because the newest valid one wins, so a write
    cut short leaves the previous checkpoint readable. No fsync: a checkpoint lost in a power
    cut only means re-sending events that Elasticsearch answers with 409 (already there).
    """

    def __init__(self, directory: Path) -> None:
        self._path = directory / CHECKPOINT_FILE
        self._fd: int | None = None
        self._sequence = 0

    def save(self, checkpoint: Checkpoint) -> None:
        """Raises OSError when the file cannot be written (the caller retries later)."""
        if self._fd is None:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            if os.fstat(fd).st_size < 2 * _CHECKPOINT.size:
                try:  # allocate both slots once; later saves never need new disk blocks
                    os.pwrite(fd, bytes(2 * _CHECKPOINT.size), 0)
                except OSError:
                    os.close(fd)
                    raise
            slots = _valid_slots(os.pread(fd, 2 * _CHECKPOINT.size, 0))
            self._sequence = max((sequence for sequence, _ in slots), default=0)
            self._fd = fd
        self._sequence += 1
        body = _CHECKPOINT.pack(
            _CHECKPOINT_MAGIC, _CHECKPOINT_VERSION, self._sequence, checkpoint.segment,
            checkpoint.offset, checkpoint.ordinal, time.time(), 0,
        )[:-4]
        slot = body + struct.pack("<I", google_crc32c.value(body))
        os.pwrite(self._fd, slot, (self._sequence % 2) * _CHECKPOINT.size)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def write_checkpoint(directory: Path, checkpoint: Checkpoint) -> None:
    """Save one checkpoint (for tools and tests; the reader keeps a `CheckpointFile` open)."""
    file = CheckpointFile(directory)
    try:
        file.save(checkpoint)
    finally:
        file.close()


def quarantine(directory: Path, segment: int, offset: int, data: bytes) -> bool:
    """Keep a copy of damaged bytes; False when this damage was already quarantined before."""
    folder = directory / QUARANTINE_DIR
    path = folder / f"{segment:012d}-{offset:012d}.bin"
    try:
        folder.mkdir(exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        return False
    except OSError as error:
        log.error("cannot write quarantine file %s: %s", path, error.strerror)
        return True
    try:
        os.write(fd, data)
    except OSError as error:
        log.error("cannot write quarantine file %s: %s", path, error.strerror)
    finally:
        os.close(fd)
    return True


READ_POSITION_FILE = "read-position"
_READ_POSITION = struct.Struct("<QQ")  # segment, records of it handed to the shipper


class ReadPosition:
    """How far the reader has handed records out, for `drop_oldest`'s accounting.

    Records the shipper already holds are not lost when their segment is deleted to make room:
    they are delivered (and counted shipped). So the writer counts as dropped only the records
    of a deleted segment that were never handed out. Reader and writer may be in different
    processes; an flock on this small file makes "delete the segment, then see how far the
    reader got" and "check the segment still exists, read it, publish how far" exclusive.
    """

    def __init__(self, directory: Path) -> None:
        self._fd = os.open(directory / READ_POSITION_FILE, os.O_RDWR | os.O_CREAT, 0o644)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def publish(self, segment: int, ordinal: int) -> None:
        with contextlib.suppress(OSError):  # advisory: a full disk must not stop reading
            os.pwrite(self._fd, _READ_POSITION.pack(segment, ordinal), 0)

    def handed_out(self, segment: int, records: int) -> int:
        """How many of `segment`'s `records` the reader has handed out."""
        data = os.pread(self._fd, _READ_POSITION.size, 0)
        if len(data) < _READ_POSITION.size:
            return 0
        reading, ordinal = _READ_POSITION.unpack(data)
        if reading > segment:
            return records
        return min(ordinal, records) if reading == segment else 0

    def close(self) -> None:
        os.close(self._fd)
