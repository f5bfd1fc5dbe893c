"""Runs a real Shipper in a thread against a real HTTP server, for the ship tests."""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from receiver.config import ElasticsearchSettings
from receiver.metrics import Metrics
from receiver.ship.output import Output, make_output
from receiver.ship.shipper import Shipper, SpoolSource
from tests.ship.memory_spool import MemorySpool

FAST = {
    "batch_events": 50, "batch_age": 0.05, "retry_initial": 0.01, "retry_max": 0.05,
    "max_in_flight": 2, "request_timeout": 5.0,
    "setup_on_start": False,  # no template at start unless a test asks
}


def es_settings(hosts: list[str], **changes: Any) -> ElasticsearchSettings:
    """Settings for a test server: daily indices, or the data stream a test names, without
    asking the server which (tests/ship/test_destination.py covers `auto`)."""
    fixed = "data_stream" if changes.get("data_stream") else "index"
    return dataclasses.replace(ElasticsearchSettings(), hosts=hosts,
                               **{**FAST, "destination": fixed, **changes})


@dataclass
class Running:
    shipper: Shipper
    spool: Any
    metrics: Metrics
    dead_letter: Path
    stop: threading.Event

    def value(self, name: str, **labels: str) -> float:
        sample = self.metrics.registry.get_sample_value(f"haproxy_receiver_{name}", labels)
        return sample or 0.0

    def dead_letters(self) -> list[str]:
        if not self.dead_letter.exists():
            return []
        return self.dead_letter.read_text().splitlines()


@contextmanager
def running_shipper(
    settings: ElasticsearchSettings, spool: SpoolSource, tmp_path: Path,
    output: Output | None = None, drain_seconds: float = 5.0, dead_letter: Path | None = None,
) -> Iterator[Running]:
    metrics = Metrics()
    if isinstance(spool, MemorySpool):
        spool.counters = metrics  # what the ledger counts: shipped and dead-lettered events
    out = output if output is not None else make_output(settings, metrics, sys.stdout.buffer)
    dead_letter = dead_letter or tmp_path / "dead-letter.jsonl"
    shipper = Shipper(settings, spool, out, metrics, str(dead_letter))
    stop = threading.Event()
    thread = threading.Thread(target=shipper.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield Running(shipper, spool, metrics, dead_letter, stop)
    finally:
        stop.set()  # drain right away, as the service does, while `run` is still winding down
        shipper.drain(time.monotonic() + drain_seconds)
        thread.join(10)
        out.close()
        overlaps = getattr(spool, "overlaps", [])
        assert overlaps == [], "the spool reader was read from two threads at once"
