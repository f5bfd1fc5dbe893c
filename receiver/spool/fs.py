"""The file operations the spool writes with, behind one small seam.

`FileSystem` is a thin veneer over `os`: every write, sync, truncation, deletion and free-space
question the spool writer and ledger ask goes through it, so a test can hand them a subclass
that cuts a write short, answers ENOSPC or EIO, or claims the disk is full, and check that
nothing accepted is lost (tests/spool/test_faults.py). Reading is not behind it: a reader that
cannot read retries, it never loses anything.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

# Files of the spool are private to the service whatever the umask: they hold whole log lines.
FILE_MODE = 0o600
DIRECTORY_MODE = 0o700


class FileSystem:
    """The real thing; subclasses inject faults."""

    def create(self, path: Path, exclusive: bool = True) -> int:
        """Open `path` for writing, created with FILE_MODE (exclusively: it must not exist)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_EXCL if exclusive else 0)
        fd = os.open(path, flags, FILE_MODE)
        os.fchmod(fd, FILE_MODE)  # an existing file, or a umask that took bits away
        return fd

    def open_rw(self, path: Path) -> int:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        os.fchmod(fd, FILE_MODE)
        return fd

    def write(self, fd: int, data: bytes) -> int:
        return os.write(fd, data)

    def writev(self, fd: int, parts: Sequence[bytes]) -> int:
        return os.writev(fd, parts)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def unlink(self, path: Path) -> None:
        os.unlink(path)

    def free_bytes(self, directory: Path) -> int:
        stats = os.statvfs(directory)
        return stats.f_bavail * stats.f_frsize


def write_all(fs: FileSystem, fd: int, data: bytes) -> None:
    """Write every byte of `data` (a short write continues; a failure raises OSError)."""
    done = fs.write(fd, data)
    while done < len(data):
        done += fs.write(fd, data[done:])
