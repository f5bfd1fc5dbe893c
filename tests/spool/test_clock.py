"""Time in the spool does not go back with the wall clock (issue 27, item 5): after a -1 h step,
`batch_age` waited an hour (0 of 90 events shipped in 90 s) and the lag gauge clamped to 0.
The steps are injected: fake wall and monotonic clocks, no real clock is changed."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from receiver.config import ElasticsearchSettings, Seconds
from receiver.metrics import Metrics
from receiver.ship.batching import BatchPolicy, Shipment
from receiver.ship.encode import EncodedBatch
from receiver.spool import Batch, Position, Record, SpoolWriter, collector
from receiver.spool.clock import SpoolClock
from tests.spool.helpers import payloads, reader_of, settings

HOUR = 3600.0


class FakeTime:
    """A wall clock an operator (or NTP) can step, and a monotonic clock that only runs."""

    def __init__(self) -> None:
        self.wall_time = 1_800_000_000.0
        self.ticks = 1000.0

    def wall(self) -> float:
        return self.wall_time

    def monotonic(self) -> float:
        return self.ticks

    def run(self, seconds: float) -> None:
        self.wall_time += seconds
        self.ticks += seconds

    def step(self, seconds: float) -> None:
        self.wall_time += seconds


def test_the_spool_clock_never_goes_back_and_keeps_running() -> None:
    fake = FakeTime()
    clock = SpoolClock(fake.wall, fake.monotonic)
    start = clock.now()
    fake.run(10)
    assert clock.now() == start + 10
    fake.step(-HOUR)
    assert clock.now() == start + 10  # not back by an hour
    fake.run(5)
    assert clock.now() == start + 15  # running at the monotonic pace
    fake.step(2 * HOUR)  # forward: followed at once (a clock corrected after boot)
    assert clock.now() == fake.wall()
    clock.not_before(fake.wall() + 60)  # a newer time found in the spool at start
    assert clock.now() == fake.wall() + 60


def test_the_lag_gauge_stays_honest_across_a_backward_step(tmp_path: Path) -> None:
    fake = FakeTime()
    clock = SpoolClock(fake.wall, fake.monotonic)
    writer = SpoolWriter(settings(tmp_path), Metrics(), clock=clock)
    registry = CollectorRegistry()
    registry.register(collector(tmp_path, writer.ledger, clock.now))
    writer.append(payloads(0, 90))
    fake.run(30)

    def lag() -> float:
        return float(registry.get_sample_value("haproxy_receiver_spool_oldest_pending_seconds") or 0)

    assert lag() == 30
    fake.step(-HOUR)
    assert lag() == 30  # was 0: clamped for the hour the clock went back
    fake.run(20)
    assert lag() == 50
    writer.append(payloads(90, 1))  # stamped by the same clock: after the 90 before it
    batches = []
    reader = reader_of(writer)
    while (batch := reader.read(1000, 10**7)) is not None:
        batches.append(batch)
    stamps = [r.written_at for b in batches for r in b.records]
    assert stamps == sorted(stamps) and stamps[-1] - stamps[0] == 50
    writer.close()


def test_the_lag_survives_a_restart_during_a_backward_step(tmp_path: Path) -> None:
    fake = FakeTime()
    writer = SpoolWriter(settings(tmp_path), Metrics(), clock=SpoolClock(fake.wall, fake.monotonic))
    writer.append(payloads(0, 10))
    fake.run(30)
    writer.close()
    fake.step(-HOUR)
    fake.run(5)
    clock = SpoolClock(fake.wall, fake.monotonic)  # a new process: it only has the wall clock
    writer = SpoolWriter(settings(tmp_path), Metrics(), clock=clock)
    registry = CollectorRegistry()
    registry.register(collector(tmp_path, writer.ledger, clock.now))
    # the newest time in the spool (the segment sealed at the stop) is the floor: the lag is
    # 30 s at least, not 0 for an hour
    assert registry.get_sample_value("haproxy_receiver_spool_oldest_pending_seconds") == 30
    writer.close()


def _shipment(written_at: float) -> Shipment:
    shipment = Shipment()
    record = Record(Position(1, 42), b"x", written_at)
    encoded = EncodedBatch(b"{}\n", [0, 3], ["i"], ["id"], [0])
    shipment.hold(Batch(1, "testspool", 42, 63, 1, [record]), 1, 1, 1)
    shipment.settle(encoded)
    return shipment


def test_batch_age_waits_no_longer_than_batch_age_for_records_from_before_a_backward_step() -> None:
    # Records written before a -1 h step carry times an hour ahead of the clock now; with the
    # real clocks, no injection: what a worker sees after such a step.
    policy = BatchPolicy(ElasticsearchSettings(batch_age=1.0))  # type: ignore[arg-type]
    shipment = _shipment(time.time() + HOUR)
    assert 0 < policy.age_left(shipment) <= 1.0  # was 3601: 0 of 90 events shipped in 90 s


def test_batch_age_is_counted_by_the_monotonic_clock_once_read() -> None:
    fake = FakeTime()
    policy = BatchPolicy(ElasticsearchSettings(batch_age=Seconds(1.0)),
                         fake.wall, fake.monotonic)
    shipment = _shipment(fake.wall() - 0.25)  # written a quarter of a second before it was read
    assert policy.age_left(shipment) == 0.75
    fake.step(-HOUR)
    assert policy.age_left(shipment) == 0.75  # a step while waiting changes nothing
    fake.run(0.75)
    assert policy.due(shipment)
    late = _shipment(fake.wall() - 5)  # read late (a backlog): due at once
    assert policy.age_left(late) == 0 and policy.due(late)
