"""Collecting encoded spool batches into shipments: when a bulk request is worth sending.

A shipment is sent when it holds `batch_events` events or `batch_bytes` bytes of bulk body, or
when its oldest event has waited `batch_age` (the latency budget). At everyday rates the budget
decides: a HAProxy host at 2,000 messages/s sends two or three bulk requests a second instead of
hundreds (each request costs the cluster and this process ~0.1-0.3 ms of CPU whatever its
size); under load or from a backlog, shipments fill at once and the budget never comes into
play. Sizes are those of the encoded bodies, but for the batch read last, which is encoded
only when the shipment goes (what is read meanwhile joins it: one encode call and one
acknowledgement per request) and counts until then at the expansion seen so far: a message
becomes a document of ~2 times its size, garbage of up to ~6 (escaped control bytes), and what a
shipment holds in memory must stay near `batch_bytes` either way; the spool is read in pieces
sized by that expansion, so a shipment exceeds `batch_bytes` by no more than the expansion was
underestimated, as when every batch was encoded as it was read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter

from receiver.config import ElasticsearchSettings
from receiver.ship.encode import EncodedBatch
from receiver.spool.clock import SPOOL_CLOCK
from receiver.spool.records import Batch

# The expansion (bulk body bytes per spool payload byte) assumed before any batch was encoded.
FIRST_EXPANSION = 2.0
# How long a partial shipment waits for company before the spool is read again, while no
# shipment has shown the rate events come at.
FIRST_COMPANY_WAIT = 0.25
SHORTEST_WAIT = 0.01  # a shipment about to fill is read again after at least this long


@dataclass(slots=True)
class Shipment:
    """Spool batches on their way in one bulk request: encoded ones, and the batch last read,
    held unencoded until the shipment goes (so that what is read for it later can join that
    batch, Source.join: at everyday rates one encode call and one acknowledgement per request,
    where encoding as read made two of each and a join of the bodies)."""

    batches: list[Batch] = field(default_factory=list)
    parts: list[EncodedBatch] = field(default_factory=list)
    held: Batch | None = None  # read, not encoded yet
    records: int = 0  # events, the held batch's included
    size: int = 0  # bulk body bytes; the held batch's as estimated (`held_size`)
    held_size: int = 0
    held_payload: int = 0  # spool payload bytes of the held batch
    oldest: float = 0.0  # written_at of its first record (the spool's clock)
    due_at: float | None = None  # when `batch_age` ends, by the monotonic clock (BatchPolicy)
    begun: float = 0.0  # when its oldest event was spooled, by the monotonic clock (BatchPolicy)

    def hold(self, batch: Batch, events: int, payload: int, estimated_size: int) -> None:
        """`events` more events to encode later, in `batch`: a batch just read, or the held one
        that took them in (Source.join); `payload` their spool payload bytes, `estimated_size`
        the bulk body bytes they should make."""
        if not self.records:
            self.oldest = batch.records[0].written_at
        self.held = batch
        self.records += events
        self.size += estimated_size
        self.held_size += estimated_size
        self.held_payload += payload

    def settle(self, encoded: EncodedBatch) -> None:
        """The held batch, `encoded`: its size is known from now on."""
        assert self.held is not None, "no batch is held"
        self.batches.append(self.held)
        self.parts.append(encoded)
        self.size += len(encoded.body) - self.held_size
        self.held, self.held_size, self.held_payload = None, 0, 0

    def payloads(self) -> list[bytes]:
        return [record.payload for batch in self.batches for record in batch.records]


def payload_bytes(batch: Batch) -> int:
    """The spool payload bytes of a batch's records."""
    return sum(map(len, map(_PAYLOAD, batch.records)))


_PAYLOAD = attrgetter("payload")


class BatchPolicy:
    """When a shipment goes, and how much to read for it (see the module docstring)."""

    def __init__(self, settings: ElasticsearchSettings,
                 wall: Callable[[], float] = SPOOL_CLOCK.now,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._wall, self._monotonic = wall, monotonic
        self.events = settings.batch_events
        self.bytes = int(settings.batch_bytes)
        self.age = float(settings.batch_age)
        self.expansion = FIRST_EXPANSION
        # Events and bulk body bytes a second, as the shipments sent so far came in (None:
        # none sent yet).
        self.event_rate: float | None = None
        self.byte_rate = 0.0

    def full(self, shipment: Shipment) -> bool:
        return shipment.records >= self.events or shipment.size >= self.bytes

    def due(self, shipment: Shipment) -> bool:
        return bool(shipment.records) and (self.full(shipment) or self.age_left(shipment) <= 0)

    def age_left(self, shipment: Shipment) -> float:
        """Seconds until the shipment's oldest event has waited `batch_age`.

        How long it has waited already is asked of the wall clock once, when first looked at
        (right after it was read), and held between 0 and `batch_age`; from then on the
        monotonic clock counts. A record stamped in the future (the clock stepped back since,
        or another process's clock) waits `batch_age` at most, not the hour the clock went back;
        a step during the wait changes nothing."""
        if shipment.due_at is None:
            waited = min(max(0.0, self._wall() - shipment.oldest), self.age)
            shipment.begun = self._monotonic() - waited
            shipment.due_at = shipment.begun + self.age
        return shipment.due_at - self._monotonic()

    def company_wait(self, shipment: Shipment) -> float:
        """Seconds a partial shipment should wait before the spool is read again (0: read now
        or send it): until `batch_age` ends, or until it is expected to be full at the rate the
        shipments before it came in, whichever is first. At everyday rates that is one wait
        per shipment, so a bulk request costs one read of the spool and one encode call, not
        one per append; at a rate that fills shipments before the budget ends, they are read
        and sent as they fill (a read only takes what still fits: what came after the fill
        starts the next shipment, a few ms older than it would be, where waiting out the whole
        budget would make the next one due at once)."""
        left = self.age_left(shipment)
        if left <= 0 or self.full(shipment):
            return 0.0
        if self.event_rate is None:
            return min(left, FIRST_COMPANY_WAIT)
        fill = (self.events - shipment.records) / max(self.event_rate, 1e-9)
        if self.byte_rate > 0:
            fill = min(fill, (self.bytes - shipment.size) / self.byte_rate)
        return min(left, max(SHORTEST_WAIT, fill))

    def sent(self, shipment: Shipment) -> None:
        """Learn the rate events come at from a shipment about to be sent."""
        if shipment.due_at is None or not shipment.records:
            return
        took = max(self._monotonic() - shipment.begun, 0.001)
        events, size = shipment.records / took, shipment.size / took
        if self.event_rate is None:
            self.event_rate, self.byte_rate = events, size
        else:
            self.event_rate = 0.5 * self.event_rate + 0.5 * events
            self.byte_rate = 0.5 * self.byte_rate + 0.5 * size

    def estimate(self, payload: int) -> int:
        """The bulk body bytes `payload` spool bytes should make, at the expansion seen so far."""
        return int(payload * self.expansion)

    def room(self, shipment: Shipment) -> tuple[int, int]:
        """(events, spool payload bytes) to read for the shipment."""
        events = max(1, self.events - shipment.records)
        payload = max(1, int((self.bytes - shipment.size) / self.expansion))
        return events, payload

    def encoded(self, payload: int, encoded: EncodedBatch) -> None:
        """Learn the expansion from `payload` spool bytes just encoded."""
        if payload:
            self.expansion = max(0.5, 0.5 * self.expansion + 0.5 * len(encoded.body) / payload)
