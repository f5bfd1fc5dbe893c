"""Signs of life of a worker's shipping, for the receiving process's wedge watch.

The parent kills a worker whose shipping has been still for `service.worker_stall_timeout`
(receiver/workers/pool.py). Waiting is not being stuck: a delivery thread in a retry back-off
waits on purpose (up to `retry_max`, for as long as an outage lasts), and the reading loop waits
for a free in-flight slot while both slots retry. So the delivery threads beat while they back
off and whenever a request ends, and while the reading loop waits for a slot, their beats count
as its own. A request that never ends (past its timeout) or a loop that stops turning beats no
more: that is stuck.
"""

from __future__ import annotations

import threading
import time

BEAT_EVERY = 1.0  # a back-off beats at least this often


class Liveness:
    """The last sign of life of the delivery threads (shared by them; a float write is atomic)."""

    def __init__(self) -> None:
        self.last_beat = time.monotonic()

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """`event.wait(seconds)`, beating meanwhile: a back-off is waiting on purpose."""
        deadline = time.monotonic() + seconds
        while True:
            self.beat()
            left = deadline - time.monotonic()
            if left <= 0:
                return event.is_set()
            if event.wait(min(left, BEAT_EVERY)):
                self.beat()
                return True
