"""The small files beside the segments: the instance lock, the spool identity and the quarantine
folder (the ledger, spool/ledger.py, keeps its own file).

    lock          flock(2)-held by the running instance; holds its pid for the error message
    identity      10 base32 characters and the place they belong to (see `load_identity`)
    quarantine/   <segment>-<offset>.bin: copies of damaged bytes found in segments

The directory is created 0700 and every file in it 0600, whatever the umask: segments hold whole
log lines (client addresses, URLs, captured headers).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import logging
import os
import secrets
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

import google_crc32c

from receiver.spool.errors import SpoolError, SpoolLocked
from receiver.spool.format import HEADER_SIZE, IDENTITY_LENGTH, list_segments, parse_header, segment_name
from receiver.spool.fs import DIRECTORY_MODE, FILE_MODE

log = logging.getLogger(__name__)

LOCK_FILE = "lock"
IDENTITY_FILE = "identity"
QUARANTINE_DIR = "quarantine"
LEGACY_CHECKPOINT_FILE = "checkpoint"  # before the ledger: one contiguous position
LEGACY_FILES = (LEGACY_CHECKPOINT_FILE, "read-position")

_BASE32 = set("abcdefghijklmnopqrstuvwxyz234567")


def ensure_directory(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=DIRECTORY_MODE)
    except OSError as error:
        raise SpoolError(f"cannot create spool directory {directory}: {error.strerror}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise SpoolError(f"spool directory {directory} is not writable by this user (uid {os.getuid()})")


def make_private(directory: Path) -> None:
    """0700 for the directory and 0600 for what is in it (a spool written by an older version,
    or under a umask of 022, was readable by every user)."""
    with contextlib.suppress(OSError):
        os.chmod(directory, DIRECTORY_MODE)
    for entry in os.scandir(directory):
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                os.chmod(entry.path, DIRECTORY_MODE)
                for inner in os.scandir(entry.path):
                    if inner.is_file(follow_symlinks=False):
                        os.chmod(inner.path, FILE_MODE)
            elif entry.is_file(follow_symlinks=False):
                os.chmod(entry.path, FILE_MODE)


class DirectoryLock:
    """Exclusive ownership of a spool directory for the life of this object."""

    def __init__(self, directory: Path) -> None:
        path = directory / LOCK_FILE
        try:
            self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
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
        # The pid only names the holder in another instance's error message: a full disk (the
        # moment a restart must still work, to ship the backlog) is no reason not to start.
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None


# --- identity ------------------------------------------------------------------------------

def place_of(directory: Path) -> str:
    """Where this spool lives: the directory's device and inode, the machine id and the host
    name. A copy of the directory (a VM image, a volume snapshot, `cp -a`) differs in at least
    one of them in practice; a legitimate change (a volume attached elsewhere) only costs a new
    identity, which is harmless (see `load_identity`)."""
    status = os.stat(directory)
    machine = ""
    for candidate in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        with contextlib.suppress(OSError):
            machine = Path(candidate).read_text().strip()
            break
    return f"{status.st_dev}:{status.st_ino}:{machine}:{socket.gethostname()}"


def load_identity(directory: Path) -> str:
    """The spool identity: created on first use, and made anew when the directory turns out to
    be a copy of another spool.

    The spool's name (`spool stats` shows it). Event ids do not depend on it any more: they are
    `<identity of the segment>-<segment>-<offset>`, the identity taken from each segment's
    header, where each start of the writer puts a random one of its own (a cloned directory, or
    one whose ledger was lost, numbers its segments again, under a new identity). The place
    the name was made for (`place_of`) is still recorded: found elsewhere, the copy is named
    anew and the log says so."""
    path = directory / IDENTITY_FILE
    place = place_of(directory)
    try:
        lines = path.read_text("ascii", "replace").splitlines()
    except FileNotFoundError:
        lines = []
    identity = lines[0].strip() if lines else ""
    recorded = lines[1].strip() if len(lines) > 1 else ""
    if len(identity) == IDENTITY_LENGTH and set(identity) <= _BASE32:
        if recorded == place:
            return identity
        if recorded:  # an identity of an older version has no place yet: keep it, add one
            fresh = new_identity()
            log.warning(
                "spool %s: its identity %s was made for another place (%s, now %s): this spool is "
                "a copy (a VM image, a volume snapshot?); it is named %s from now on (new events "
                "cannot collide with the original's: each start writes under an identity of its "
                "own)", directory,
                identity, recorded, place, fresh)
            identity = fresh
    else:
        recovered = _recovered_identity(directory)
        if lines:
            log.warning("spool identity file %s is damaged (%r); using %s", path,
                        "\n".join(lines)[:40], recovered or "a new one")
        identity = recovered or new_identity()
    _replace_file(path, f"{identity}\n{place}\n".encode("ascii", "replace"))
    return identity


def new_identity() -> str:
    """10 random base32 characters (50 bits): a spool's name, and the identity each writer
    start puts in the headers of the segments it writes (see `SpoolWriter.identity`)."""
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


def _replace_file(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the checkpoint of versions before the ledger ------------------------------------------

@dataclass(frozen=True, slots=True)
class LegacyCheckpoint:
    """Everything before (segment, offset) was acknowledged; `ordinal` records of that segment."""

    segment: int
    offset: int
    ordinal: int


_LEGACY = struct.Struct("<8sIQQQQdI")
_LEGACY_MAGIC = b"HRCKPT\x00\x00"


def read_legacy_checkpoint(directory: Path) -> LegacyCheckpoint | None:
    """The newest intact slot of an older version's `checkpoint` file, or None."""
    try:
        data = (directory / LEGACY_CHECKPOINT_FILE).read_bytes()
    except OSError:
        return None
    best: tuple[int, LegacyCheckpoint] | None = None
    for start in range(0, len(data) - _LEGACY.size + 1, _LEGACY.size):
        slot = data[start : start + _LEGACY.size]
        magic, version, sequence, segment, offset, ordinal, _, crc = _LEGACY.unpack(slot)
        intact = magic == _LEGACY_MAGIC and version == 1 and google_crc32c.value(slot[:-4]) == crc
        if intact and (best is None or sequence > best[0]):
            best = (sequence, LegacyCheckpoint(segment, offset, ordinal))
    return None if best is None else best[1]


# --- quarantine ------------------------------------------------------------------------------

def quarantine(directory: Path, segment: int, offset: int, data: bytes) -> bool:
    """Keep a copy of damaged bytes; False when this damage was already quarantined before (so
    the records in it are counted as lost once, whoever finds them). Other bytes at the same
    place (segment numbers start again when the ledger is lost) are other damage: kept beside,
    as `<segment>-<offset>-<n>.bin`, and counted."""
    folder = directory / QUARANTINE_DIR
    stem = f"{segment:012d}-{offset:012d}"
    path = folder / f"{stem}.bin"
    for copy in range(1, 1000):
        try:
            folder.mkdir(exist_ok=True, mode=DIRECTORY_MODE)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
            break
        except FileExistsError:
            with contextlib.suppress(OSError):
                if path.read_bytes() == data:
                    return False
            path = folder / f"{stem}-{copy}.bin"
        except OSError as error:
            log.error("cannot write quarantine file %s: %s", path, error.strerror)
            return True
    else:
        return False
    try:
        os.write(fd, data)
    except OSError as error:
        log.error("cannot write quarantine file %s: %s", path, error.strerror)
    finally:
        os.close(fd)
    return True
