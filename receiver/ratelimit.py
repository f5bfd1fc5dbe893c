"""One log line per recurring problem every few seconds: a flood of the same trouble (a full
disk, a refused scan, an Elasticsearch outage) must not flood the log, and what was held back
is counted in the next line."""

from __future__ import annotations

import logging
import threading
import time

EVERY = 10.0  # seconds between two lines about the same problem


class RateLimitedLog:
    """`log(level, key, message, *args, count=1)`: at most one line per key every `every`
    seconds; the next line says how many occurrences (`count` each) it stands for."""

    def __init__(self, logger: logging.Logger, every: float = EVERY) -> None:
        self._logger = logger
        self._every = every
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, level: int, key: str, message: str, *args: object, count: int = 1,
                 exc_info: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            held = self._held.get(key, 0) + count
            if now - self._last.get(key, -self._every) < self._every:
                self._held[key] = held
                return
            self._last[key] = now
            self._held[key] = 0
        if held > count:
            message += f" ({held} in all since the last such message)"
        self._logger.log(level, message, *args, exc_info=exc_info)
