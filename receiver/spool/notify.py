"""Wake-ups between a writer and readers of the same spool directory.

Inside one process the writer signals a condition after each appended batch and the reader
after it deleted segments, so a waiting reader (or a writer waiting for room) reacts at once.

Across processes (a worker reads what the receiving process writes) the reader asks the
kernel: an inotify watch on the directory reports every write to a segment file, so an idle
reader sleeps until there is something to read instead of looking at the file every few
milliseconds (500 wake-ups a second cost an idle worker about 2 % of a core). Where
inotify is not available (not Linux, or the per-user limit on instances is reached) the reader
falls back to polling.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import math
import os
import select
import struct
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

_conditions: dict[str, threading.Condition] = {}
_guard = threading.Lock()

# <sys/inotify.h>
_IN_MODIFY = 0x002
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_Q_OVERFLOW = 0x4000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, length of the name that follows
_READ_SIZE = 65536


def condition_for(directory: Path) -> threading.Condition:
    key = os.path.realpath(directory)
    with _guard:
        condition = _conditions.get(key)
        if condition is None:
            condition = _conditions[key] = threading.Condition()
        return condition


def signal(condition: threading.Condition) -> None:
    with condition:
        condition.notify_all()


class SegmentWatch:
    """Kernel notifications of segment files written or created in one directory."""

    def __init__(self, fd: int, suffix: bytes) -> None:
        self._fd = fd
        self._suffix = suffix
        self._poller = select.poll()
        self._poller.register(fd, select.POLLIN)
        # Held while waiting, so `close` never frees the descriptor under a poll or a read
        # (its number could already belong to another file).
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(cls, directory: Path, suffix: str) -> SegmentWatch | None:
        """A watch on `directory` for files ending in `suffix`; None where inotify is not
        available (the caller polls instead)."""
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            init, add = libc.inotify_init1, libc.inotify_add_watch
        except (OSError, AttributeError):
            return None
        fd = int(init(_IN_NONBLOCK | _IN_CLOEXEC))
        if fd < 0:
            _unavailable(directory, ctypes.get_errno())
            return None
        mask = _IN_MODIFY | _IN_CREATE | _IN_MOVED_TO
        if int(add(fd, os.fsencode(directory), mask)) < 0:
            _unavailable(directory, ctypes.get_errno())
            os.close(fd)
            return None
        return cls(fd, suffix.encode())

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` seconds for a segment write; True when one was reported
        (written before or during the call), or once the watch is closed."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self._closed:
                if self._drain():
                    return True
                left = deadline - time.monotonic()
                if left <= 0 or not self._poller.poll(math.ceil(left * 1000)):
                    return False
            return True

    def _drain(self) -> bool:
        """Read what is queued; True when it includes a segment (or the queue overflowed)."""
        relevant = False
        while True:
            try:
                data = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                return relevant
            relevant = relevant or self._mentions_segment(data)

    def _mentions_segment(self, data: bytes) -> bool:
        offset = 0
        while offset + _EVENT.size <= len(data):
            _, mask, _, length = _EVENT.unpack_from(data, offset)
            offset += _EVENT.size
            name = data[offset:offset + length].rstrip(b"\0")
            offset += length
            # The ledger and identity files are in the same directory.
            if mask & _IN_Q_OVERFLOW or name.endswith(self._suffix):
                return True
        return False

    def close(self) -> None:
        """Waits for a `wait` in progress (it returns within its timeout)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self._fd)


def _unavailable(directory: Path, code: int) -> None:
    log.info(
        "spool %s: no inotify watch (%s); the reader polls for new records instead",
        directory, os.strerror(code) if code else "unknown error",
    )
    if code == errno.EMFILE:
        log.info("raise fs.inotify.max_user_instances to give every spool reader a watch")
