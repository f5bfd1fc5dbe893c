"""Process-wide runtime tuning for the hot path: glibc malloc's heap trimming and the cyclic GC.

- malloc: by default glibc gives freed heap back to the kernel as soon as 128 KiB are free at
  the top, and grows it again for the next batch; in these virtual machines every first touch
  of a page costs microseconds (measured: 5–7 µs per document when building bulk bodies).
  A 256 MiB trim threshold and a 64 MiB top pad keep the heap once grown (RSS stays at the
  working set's peak, which is bounded by batch sizes). Setting them also freezes glibc's
  mmap threshold at 128 KiB, which would send every bulk body and read chunk (megabytes) to a
  fresh mmap, faulting in every page again: a fixed 32 MiB threshold keeps them on the heap.
  One arena: by default every thread that allocates gets its own (up to 8 per core), and with
  trimming off each keeps its own peak; only one thread runs Python at a time (the GIL), so
  they would rarely contend for a shared one (the shipping process at full speed: 113 -> 92 MiB).
- GC: every event allocates a few container objects (the document dict, its tags list), so the
  default generation-0 threshold of 700 runs a collection every few dozen events, each walking
  the young objects. Reference counting frees all of them anyway (documents have no cycles);
  a higher threshold makes collections rare, and `gc.freeze()` after start-up keeps the
  long-lived objects of imported modules out of every full collection.
"""

from __future__ import annotations

import ctypes
import gc
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
TRIM_THRESHOLD = 256 * 1024 * 1024
TOP_PAD = 64 * 1024 * 1024
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum on 64-bit
GC_THRESHOLDS = (50_000, 20, 20)


def tune() -> None:
    """Call once per process, after start-up imports and before the hot loops run."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        libc.mallopt(_M_TOP_PAD, TOP_PAD)
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(_M_ARENA_MAX, 1)
    except (OSError, AttributeError):  # not glibc: its own defaults then
        log.debug("mallopt unavailable; malloc keeps its defaults")
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
