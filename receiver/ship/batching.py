"""Collecting spool batches into shipments: when a bulk request is worth sending.

A shipment is sent when it holds `batch_events` events or `batch_bytes` bytes, or when its
oldest event has waited `batch_age` (the latency budget). At everyday rates the budget decides:
a HAProxy host at 2,000 messages/s sends two or three bulk requests a second instead of hundreds
(each request costs the cluster and this process ~0.1-0.3 ms of CPU whatever its size); under
load or from a backlog, shipments fill at once and the budget never comes into play.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from receiver.config import ElasticsearchSettings
from receiver.spool.records import Batch, Record

# Rough size of a `create` action line, counted against batch_bytes with each payload, and
# what parsing adds to a received message (a document is ~2x the line it came from).
ACTION_BYTES = 100
DOCUMENT_GROWTH = 2


@dataclass(slots=True)
class Shipment:
    """Spool batches on their way in one bulk request."""

    batches: list[Batch] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    identities: list[str] = field(default_factory=list)  # spool identity of each record
    size: int = 0  # estimated bulk body bytes
    oldest: float = 0.0  # written_at of its first record (wall clock)

    def add(self, batch: Batch) -> None:
        if not self.records:
            self.oldest = batch.records[0].written_at
        self.batches.append(batch)
        self.records.extend(batch.records)
        self.identities.extend([batch.identity] * len(batch.records))
        self.size += sum(len(r.payload) for r in batch.records) * DOCUMENT_GROWTH
        self.size += ACTION_BYTES * len(batch.records)


class BatchPolicy:
    """When a shipment goes (see the module docstring)."""

    def __init__(self, settings: ElasticsearchSettings) -> None:
        self.events = settings.batch_events
        self.bytes = int(settings.batch_bytes)
        self.age = float(settings.batch_age)

    def full(self, shipment: Shipment) -> bool:
        return len(shipment.records) >= self.events or shipment.size >= self.bytes

    def due(self, shipment: Shipment) -> bool:
        return bool(shipment.records) and (self.full(shipment) or self.age_left(shipment) <= 0)

    def age_left(self, shipment: Shipment) -> float:
        """Seconds until the shipment's oldest event has waited `batch_age`."""
        return shipment.oldest + self.age - time.time()

    def room(self, shipment: Shipment) -> tuple[int, int]:
        """(events, payload bytes) the shipment can still take."""
        events = max(1, self.events - len(shipment.records))
        payload = max(1, (self.bytes - shipment.size) // DOCUMENT_GROWTH)
        return events, payload
