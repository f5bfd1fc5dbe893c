"""Shared helpers of the spool tests: settings for a temporary directory, numbered payloads,
a reader on a writer's ledger, draining it, reading counters."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from receiver.config import ByteSize, SpoolSettings
from receiver.event import Document, decode, encode_document
from receiver.metrics import Metrics
from receiver.spool import LocalLedger, SpoolReader, SpoolWriter
from receiver.spool.format import list_segments

KIB = 1024


def settings(directory: Path, **overrides: Any) -> SpoolSettings:
    base = SpoolSettings(
        dir=str(directory), segment_bytes=ByteSize(64 * KIB), max_bytes=ByteSize(1024 * KIB),
        max_record_bytes=ByteSize(8 * KIB), fsync="never",
    )
    return replace(base, **overrides)


def payloads(start: int, count: int, pad: int = 400) -> list[bytes]:
    """Numbered records (documents: the spool does not look inside its payloads)."""
    return [encode_document({"@timestamp": "2026-11-25T18:21:08.761Z", "n": n, "pad": "x" * pad})
            for n in range(start, start + count)]


def numbers(records: list[bytes]) -> list[int]:
    out = []
    for payload in records:
        record = decode(payload)
        assert isinstance(record, Document)
        out.append(int(record.document()["n"]))
    return out


def reader_of(writer: SpoolWriter, worker: str = "local") -> SpoolReader:
    """A reader in this process, leasing from the writer's ledger."""
    return SpoolReader(writer.directory, LocalLedger(writer.ledger, worker))


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


def filled(directory: Path, count: int = 600) -> list[int]:
    """A closed spool holding events 0..count-1 (nothing shipped); its segment numbers."""
    writer = SpoolWriter(settings(directory), Metrics())
    for start in range(0, count, 50):
        writer.append(payloads(start, 50))
    writer.close()
    return list_segments(directory)
