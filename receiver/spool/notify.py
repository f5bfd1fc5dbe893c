"""Wake-ups between a writer and readers of the same spool directory inside one process.

The writer signals after each appended batch and the reader after it deleted segments, so a
waiting reader (or a writer waiting for room) reacts at once; across processes both sides fall
back to polling the files every few milliseconds.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

_conditions: dict[str, threading.Condition] = {}
_guard = threading.Lock()


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
