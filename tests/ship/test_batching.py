"""How long a partial shipment waits for company (receiver/ship/batching.py), and the shipper
sending what arrived during the wait with it: at everyday rates one read of the spool and one
bulk request per `batch_age`, not a read per append (issue 28, item 4)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from receiver.config import ByteSize, ElasticsearchSettings, Seconds
from receiver.ship.batching import FIRST_COMPANY_WAIT, BatchPolicy, Shipment
from receiver.ship.encode import EncodedBatch
from receiver.spool.records import Batch, Position, Record
from tests.fakes.es_server import FakeElasticsearch
from tests.ship.harness import es_settings, running_shipper
from tests.ship.memory_spool import MemorySpool, document
from tests.support import wait_for


class Clocks:
    """The policy's wall and monotonic clocks, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


def policy(clocks: Clocks, **changes: Any) -> BatchPolicy:
    settings = dataclasses.replace(ElasticsearchSettings(), batch_events=1000,
                                   batch_bytes=ByteSize(5 * 1024**2), batch_age=Seconds(1.0))
    return BatchPolicy(dataclasses.replace(settings, **changes), clocks.wall, clocks.monotonic)


def shipment_of(events: int, written_at: float, body_bytes: int = 0) -> Shipment:
    records = [Record(Position(1, n * 64), b"x", written_at) for n in range(events)]
    shipment = Shipment()
    body = b"y" * (body_bytes or events * 1000)
    shipment.hold(Batch(1, "id", 0, events * 64, events, records), events, events, events)
    shipment.settle(EncodedBatch(body, [], [], [], []))
    return shipment


def test_before_any_shipment_was_sent_the_wait_is_short() -> None:
    clocks = Clocks()
    batching = policy(clocks)
    assert batching.company_wait(shipment_of(10, clocks.now)) == pytest.approx(FIRST_COMPANY_WAIT)


def test_at_everyday_rates_a_shipment_waits_once_until_its_budget_ends() -> None:
    clocks = Clocks()
    batching = policy(clocks)
    sent = shipment_of(500, clocks.now)
    batching.age_left(sent)  # first looked at as it was read
    clocks.now += 1.0
    batching.sent(sent)  # 500 events in a second
    clocks.now += 0.02
    partial = shipment_of(10, clocks.now - 0.02)
    assert batching.company_wait(partial) == pytest.approx(0.98)  # the rest of the budget
    clocks.now += 0.98
    assert batching.company_wait(partial) == 0.0  # aged: it goes


def test_a_shipment_expected_to_fill_before_its_budget_waits_only_until_then() -> None:
    clocks = Clocks()
    batching = policy(clocks)
    sent = shipment_of(1000, clocks.now)
    batching.age_left(sent)
    clocks.now += 0.5
    batching.sent(sent)  # 2,000 events a second: full in half the budget
    partial = shipment_of(100, clocks.now)
    # 900 more events come in 0.45 s: read then, not when the budget ends
    assert batching.company_wait(partial) == pytest.approx(0.45)
    assert batching.company_wait(shipment_of(1000, clocks.now)) == 0.0  # full: it goes


def test_the_byte_limit_counts_like_the_event_limit() -> None:
    clocks = Clocks()
    batching = policy(clocks, batch_bytes=ByteSize(1_000_000))
    sent = shipment_of(100, clocks.now, body_bytes=500_000)
    batching.age_left(sent)
    clocks.now += 1.0
    batching.sent(sent)  # 500 KB of body a second, 100 events
    # 300 KB of room: the bytes fill it in 0.6 s, the events (990 more) in 9.9 s
    partial = shipment_of(10, clocks.now, body_bytes=700_000)
    assert batching.company_wait(partial) == pytest.approx(0.6)


def test_a_held_batch_counts_at_the_expansion_seen_so_far_until_it_is_encoded() -> None:
    clocks = Clocks()
    batching = policy(clocks, batch_bytes=ByteSize(100_000))
    records = [Record(Position(1, n * 120), b"x" * 100, clocks.now) for n in range(10)]
    shipment = Shipment()
    shipment.hold(Batch(1, "id", 0, 1200, 10, records), 10, 1000, batching.estimate(1000))
    assert (shipment.records, shipment.size) == (10, 2000)  # 1,000 payload bytes at 2.0
    assert batching.room(shipment) == (990, 49_000)
    assert not batching.full(shipment)
    shipment.hold(Batch(1, "id", 1200, 60_000, 500, records), 490, 49_000,
                  batching.estimate(49_000))
    assert batching.full(shipment)  # by its estimated size
    encoded = EncodedBatch(b"y" * 150_000, [], [], [], [])
    batching.encoded(shipment.held_payload, encoded)
    shipment.settle(encoded)
    assert (shipment.records, shipment.size, shipment.held) == (500, 150_000, None)
    assert batching.expansion == pytest.approx(0.5 * 2.0 + 0.5 * 3.0)


def test_what_is_spooled_while_a_shipment_waits_goes_with_it(tmp_path: Path) -> None:
    """One bulk request for both: the spool is read once more when the wait ends, before the
    shipment goes (left for the next shipment, those events would make it due at once)."""
    spool = MemorySpool([document(0)])
    with FakeElasticsearch.start() as server:
        settings = es_settings([server.url], batch_age=Seconds(3.0), batch_events=1000)
        with running_shipper(settings, spool, tmp_path) as running:
            wait_for(lambda: running.shipper._building == 1, what="the first event read")
            spool.add([document(n) for n in range(1, 10)])
            wait_for(lambda: spool.acknowledged_records() == 10, 20, "10 acknowledged")
        assert len(server.bulk_requests()) == 1
        assert len(server.documents) == 10


def test_what_is_read_for_one_request_is_encoded_and_acknowledged_as_one_batch(
        tmp_path: Path) -> None:
    """Three reads, one batch: each joins the one read before it (Source.join), so the request
    costs one encode call and one acknowledgement."""
    spool = MemorySpool([document(n) for n in range(10)], batch_records=4)
    with FakeElasticsearch.start() as server:
        settings = es_settings([server.url], batch_age=Seconds(3.0), batch_events=10)
        with running_shipper(settings, spool, tmp_path):
            wait_for(lambda: spool.acknowledged_records() == 10, 20, "10 acknowledged")
        assert len(server.bulk_requests()) == 1
        assert sorted(doc["seq"] for _, doc in server.documents.values()) == list(range(10))
    assert spool.joins == 2
    assert [(b.start, b.end, b.ordinal, len(b.records)) for b in spool.acknowledged] == [
        (0, 640, 10, 10)]
