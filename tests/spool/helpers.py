"""Shared helpers of the spool tests: settings for a temporary directory, numbered payloads,
draining a reader, reading counters."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from receiver.config import ByteSize, SpoolSettings
from receiver.event import decode_event, encode_event
from receiver.metrics import Metrics
from receiver.spool import SpoolReader

KIB = 1024


def settings(directory: Path, **overrides: Any) -> SpoolSettings:
    base = SpoolSettings(
        dir=str(directory), segment_bytes=ByteSize(64 * KIB), max_bytes=ByteSize(1024 * KIB),
        max_record_bytes=ByteSize(4 * KIB), fsync="never",
    )
    return replace(base, **overrides)


def payloads(start: int, count: int, pad: int = 400) -> list[bytes]:
    return [encode_event({"@timestamp": "2026-11-25T18:21:08.761Z", "n": n, "pad": "x" * pad})
            for n in range(start, start + count)]


def numbers(records: list[bytes]) -> list[int]:
    return [int(decode_event(p).document()["n"]) for p in records]


def drain(reader: SpoolReader, acknowledge: bool = True, max_records: int = 100) -> list[int]:
    """Read everything available now; returns the event numbers in order."""
    seen: list[int] = []
    while (batch := reader.read(max_records, 1024 * KIB)) is not None:
        seen += numbers([r.payload for r in batch.records])
        if acknowledge:
            reader.acknowledge(batch)
    return seen


def counter(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(f"haproxy_receiver_{name}_total", labels or None)
    return float(value or 0.0)
