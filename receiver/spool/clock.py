"""The spool's clock: Unix time that never goes back.

Each record carries the time it was written; the shipping lag (`spool_oldest_pending_seconds`)
and a worker's `batch_age` are measured from it. Stamped with the wall clock, a backward step
(an NTP correction, a VM restored, an operator's `date -s`) put the records written before it in
the future: the lag gauge clamped to 0 (the lag alert stayed silent) and `batch_age` waited
for the hour the clock went back. This clock follows the wall clock forward (a machine that
booted with a wrong clock is corrected at once) and, when the wall clock steps back, carries on
from where it was at the pace of the monotonic clock until the wall clock catches up: a
high-water mark that keeps running.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class SpoolClock:
    """`now()`: never less than any earlier answer, nor than the wall clock."""

    def __init__(self, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._wall, self._monotonic = wall, monotonic
        self._lock = threading.Lock()
        self._last = wall()
        self._last_monotonic = monotonic()

    def now(self) -> float:
        with self._lock:
            ticking = self._monotonic()
            value = max(self._wall(), self._last + (ticking - self._last_monotonic))
            self._last, self._last_monotonic = value, ticking
            return value

    def not_before(self, moment: float) -> None:
        """Never answer less than `moment` again (the newest time found in the spool at start:
        the high-water mark survives a restart during a backward step)."""
        with self._lock:
            if moment > self._last:
                self._last, self._last_monotonic = moment, self._monotonic()


# The receiving process's clock: the writer stamps records with it and the lag gauge reads it.
SPOOL_CLOCK = SpoolClock()
