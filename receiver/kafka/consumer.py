"""The worker tier's source: a Kafka consumer group member giving the shipper batches
(receiver/ship/source.py), committing offsets only behind what Elasticsearch acknowledged.

Each record carries its event id as key (receiver/kafka/producer.py). `read` cuts the records
polled from Kafka into `Batch`es of one partition, one spool identity and one segment, with each
record's `Position` taken from its id (`parse_event_id`), so the shipper's `event_id` names every
document exactly as the producing receiver named it: a record read twice (a crash before its
offset was committed, a rebalance, a producer retry that stored it twice) is a `409`, not a
second document. The Kafka offset never becomes an id.

Commits: per partition, the batches read are kept in order; the offset committed is the one after
the last record of the longest prefix of acknowledged batches (delivered or dead-lettered), so a
batch acknowledged early never lets the commit pass one still in flight. A partition revoked in a
rebalance is committed as far as that goes and forgotten: the acknowledgements of its batches
still in flight are then ignored, and its next owner reads them again from the commit.

Membership: the group drops a member that does not poll for `max.poll.interval.ms`, and the
shipper stops reading while all its bulk requests wait (an Elasticsearch outage). So while the
reading thread stays away for `_KEEP_AFTER`, a keeper thread pauses the assigned partitions and
goes on polling: the member keeps its partitions (nothing is re-read by another member, nothing
fetched piles up meanwhile), rebalances are still served, and the next `read` resumes the
partitions where the shipper left them. Only one thread uses the consumer at a time.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from receiver.config import Settings
from receiver.kafka.client import client_config, library
from receiver.metrics import ConsumerMetrics
from receiver.ratelimit import RateLimitedLog
from receiver.spool.records import Batch, Record, parse_event_id

log = logging.getLogger(__name__)

_COMMIT_EVERY = 1.0  # seconds between commits while acknowledgements come in
_KEEP_AFTER = 1.0  # the reading thread away this long: pause the partitions and poll for it
_LAG_EVERY = 2.0


@dataclass(slots=True)
class _Read:
    """A batch read from one partition, in the order read."""

    last_offset: int
    done: bool = False


@dataclass(slots=True)
class _Partition:
    """What was read from one assigned partition and not yet committed."""

    generation: int
    reads: deque[_Read] = field(default_factory=deque)
    committable: int | None = None  # the offset to commit next (one after the last done)
    committed: int | None = None


class OffsetBook:
    """Which offsets may be committed: per partition, the prefix of done batches. Thread-safe:
    `read` and `commit` in the shipper's reading thread, `done` in its delivery threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._partitions: dict[int, _Partition] = {}
        self._generation = 0

    def assigned(self, partitions: Sequence[int]) -> None:
        with self._lock:
            self._generation += 1
            for number in partitions:
                self._partitions[number] = _Partition(self._generation)

    def revoked(self, partitions: Sequence[int]) -> dict[int, int]:
        """Forget `partitions`; returns the offsets still to commit for them."""
        with self._lock:
            out = {}
            for number in partitions:
                state = self._partitions.pop(number, None)
                if state is not None and state.committable is not None \
                        and state.committable != state.committed:
                    out[number] = state.committable
            return out

    def read(self, partition: int, last_offset: int) -> tuple[int, int, _Read] | None:
        """A batch ending at `last_offset` was read; its ticket for `done`, or None when the
        partition is not (or no longer) assigned."""
        with self._lock:
            state = self._partitions.get(partition)
            if state is None:
                return None
            entry = _Read(last_offset)
            state.reads.append(entry)
            return partition, state.generation, entry

    def done(self, ticket: tuple[int, int, _Read]) -> None:
        partition, generation, entry = ticket
        with self._lock:
            state = self._partitions.get(partition)
            if state is None or state.generation != generation:
                return  # revoked since: its next owner reads it again
            entry.done = True
            while state.reads and state.reads[0].done:
                state.committable = state.reads.popleft().last_offset + 1

    def due(self) -> dict[int, int]:
        """Offsets to commit now (and marked committed)."""
        with self._lock:
            out = {}
            for number, state in self._partitions.items():
                if state.committable is not None and state.committable != state.committed:
                    out[number] = state.committed = state.committable
            return out

    def outstanding(self) -> int:
        with self._lock:
            return sum(len(state.reads) for state in self._partitions.values())


class KafkaSource:
    """The `Source` of a worker-tier member: reads the topic as one consumer of the group."""

    def __init__(self, settings: Settings, metrics: ConsumerMetrics) -> None:
        kafka = settings.kafka
        self._kafka = library()
        self._metrics = metrics
        self._topic = kafka.topic
        self._book = OffsetBook()
        self._buffer: deque[Any] = deque()  # polled messages not yet in a batch
        self._tickets: dict[int, tuple[int, int, _Read]] = {}  # id(batch) -> its ticket
        self._tickets_lock = threading.Lock()
        self._next_commit = 0.0
        self._next_lag = 0.0
        self._assigned: set[int] = set()
        self._log = RateLimitedLog(log)
        self._unreachable_after = float(kafka.unreachable_after)
        self._down_since: float | None = None
        self._all_down = self._kafka.KafkaError._ALL_BROKERS_DOWN
        config = client_config(kafka, "consumer") | {
            "group.id": kafka.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # Bounds what waits in the client while the shipper is busy (a cluster outage).
            "queued.max.messages.kbytes": 16384,
            "error_cb": self._client_error,
            "on_commit": self._committed,
        }
        self._consumer = self._kafka.Consumer(config)
        self._consumer.subscribe([kafka.topic], on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_lost)
        self._using = threading.Lock()  # one thread at a time calls the consumer
        self._last_read = time.monotonic()  # when the reading thread last polled
        self._paused = False
        self._closed = threading.Event()
        self._keeper = threading.Thread(target=self._keep_membership, name="kafka-keeper",
                                        daemon=True)
        self._keeper.start()
        metrics.kafka_up.set(1)

    # --- Source ----------------------------------------------------------------------------

    def read(self, max_records: int, max_bytes: int) -> Batch | None:
        with self._using:
            self._reading()
            if not self._buffer:
                self._fill(0.0)
            self._housekeeping()
            while self._buffer:
                batch = self._cut(max_records, max_bytes)
                if batch is not None:
                    return batch
            return None

    def wait(self, timeout: float) -> bool:
        with self._using:
            self._reading()
            if not self._buffer:
                self._fill(timeout)
            self._housekeeping()
            return bool(self._buffer)

    def acknowledge(self, batch: Batch, shipped: int = 0,
                    dead: tuple[tuple[str, int], ...] = ()) -> None:
        with self._tickets_lock:
            ticket = self._tickets.pop(id(batch), None)
        if shipped:
            self._metrics.events_shipped.inc(shipped)
        for reason, number in dead:
            self._metrics.events_dead_lettered.labels(reason).inc(number)
        if ticket is not None:
            self._book.done(ticket)

    def join(self, first: Batch, then: Batch) -> bool:
        """Never: each batch holds a ticket of its own (its partition's offsets to commit)."""
        return False

    # --- membership while the shipper waits ------------------------------------------------

    def _reading(self) -> None:
        """The reading thread is back (holding `_using`): resume what the keeper paused."""
        self._last_read = time.monotonic()
        if self._paused:
            self._paused = False
            self._set_paused(False)
            log.info("the shipper reads again: Kafka partitions resumed")

    def _keep_membership(self) -> None:
        while not self._closed.wait(_KEEP_AFTER / 4):
            if time.monotonic() - self._last_read < _KEEP_AFTER:
                continue
            with self._using:
                if self._closed.is_set() or time.monotonic() - self._last_read < _KEEP_AFTER:
                    continue
                if not self._paused:
                    self._paused = True
                    log.info("the shipper is not reading (its requests wait): Kafka partitions "
                             "paused, the member stays in the group")
                # Every turn: partitions assigned meanwhile (a rebalance served here) too.
                self._set_paused(True)
                self._fill(0.0)  # serves heartbeats' callbacks and rebalances; buffers strays
                self._housekeeping()

    def _set_paused(self, paused: bool) -> None:
        try:
            assigned = self._consumer.assignment()
            if assigned:
                (self._consumer.pause if paused else self._consumer.resume)(assigned)
        except Exception as error:  # a rebalance in progress: the next turn tries again
            self._log(logging.WARNING, "pause", "pausing/resuming Kafka partitions failed: %s",
                      error)

    # --- reading ---------------------------------------------------------------------------

    def _fill(self, timeout: float) -> None:
        try:
            messages = self._consumer.consume(2000, timeout)
        except Exception:
            self._log(logging.ERROR, "consume", "reading from Kafka failed", exc_info=True)
            return
        for message in messages:
            error = message.error()
            if error is not None:
                if not error.retriable() and error.code() != self._kafka.KafkaError._PARTITION_EOF:
                    self._log(logging.ERROR, f"consume-{error.code()}", "Kafka: %s", error.str())
                continue
            self._buffer.append(message)
        if messages:
            self._metrics.kafka_records_consumed.inc(len(messages))
            self._down_since = None

    def _cut(self, max_records: int, max_bytes: int) -> Batch | None:
        """The longest run at the buffer's head of one partition, identity and segment."""
        buffer = self._buffer
        first = buffer[0]
        partition = first.partition()
        records: list[Record] = []
        identity = ""
        segment = -1
        size = 0
        last_offset = first.offset()
        while buffer and len(records) < max_records and (size < max_bytes or not records):
            message = buffer[0]
            if message.partition() != partition:
                break
            try:
                key = message.key()
                this_identity, position = parse_event_id(key.decode("ascii") if key else "")
            except (ValueError, UnicodeDecodeError):
                if records:
                    break  # the batch so far goes; this one is looked at next
                buffer.popleft()
                self._foreign(message)
                last_offset = message.offset()
                continue
            if records and (this_identity != identity or position.segment != segment):
                break
            identity, segment = this_identity, position.segment
            buffer.popleft()
            value = message.value() or b""
            records.append(Record(position, value, message.timestamp()[1] / 1000.0))
            size += len(value)
            last_offset = message.offset()
        ticket = self._book.read(partition, last_offset)
        if ticket is None:  # revoked while buffered: its new owner reads it
            return None
        batch = Batch(segment, identity, records[0].position.offset if records else 0,
                      last_offset, 0, records)
        if not records:
            self._book.done(ticket)  # only foreign records: nothing to ship, commit past them
            return None
        with self._tickets_lock:
            self._tickets[id(batch)] = ticket
        return batch

    def _foreign(self, message: Any) -> None:
        self._log(logging.ERROR, "foreign", "Kafka record at %s[%d]@%d has no event id as key "
                  "(not produced by a receiver); skipped", self._topic, message.partition(),
                  message.offset())

    # --- commits, lag, rebalances ----------------------------------------------------------

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._next_commit:
            self._next_commit = now + _COMMIT_EVERY
            self._commit(self._book.due(), asynchronous=True)
        if now >= self._next_lag:
            self._next_lag = now + _LAG_EVERY
            self._update_lag()
        down = self._down_since is not None and now - self._down_since > self._unreachable_after
        self._metrics.kafka_up.set(0 if down else 1)

    def _commit(self, offsets: dict[int, int], asynchronous: bool) -> None:
        if not offsets:
            return
        partitions = [self._kafka.TopicPartition(self._topic, number, offset)
                      for number, offset in offsets.items()]
        try:
            self._consumer.commit(offsets=partitions, asynchronous=asynchronous)
            if not asynchronous:
                self._metrics.kafka_commits.labels("ok").inc()
        except Exception as error:  # a rebalance in progress: the next owner reads it again
            self._metrics.kafka_commits.labels("failed").inc()
            self._log(logging.WARNING, "commit", "committing offsets failed: %s", error)

    def _committed(self, error: Any, partitions: Any) -> None:
        self._metrics.kafka_commits.labels("ok" if error is None else "failed").inc()
        if error is not None:
            self._log(logging.WARNING, "commit", "committing offsets failed: %s", error)

    def _update_lag(self) -> None:
        for number in list(self._assigned):
            partition = self._kafka.TopicPartition(self._topic, number)
            try:
                _low, high = self._consumer.get_watermark_offsets(partition, cached=True)
                position = self._consumer.position([partition])[0].offset
            except Exception:
                continue
            if high >= 0 and position >= 0:
                self._metrics.kafka_consumer_lag.labels(str(number)).set(high - position)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        numbers = [p.partition for p in partitions]
        self._book.assigned(numbers)
        self._assigned.update(numbers)
        self._metrics.kafka_rebalances.labels("assigned").inc(len(numbers))
        log.info("Kafka partitions assigned: %s", sorted(numbers))

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        numbers = [p.partition for p in partitions]
        self._commit(self._book.revoked(numbers), asynchronous=False)
        self._forget(numbers)
        log.info("Kafka partitions revoked: %s", sorted(numbers))

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        numbers = [p.partition for p in partitions]
        self._book.revoked(numbers)  # not ours any more: nothing may be committed for them
        self._forget(numbers)
        log.warning("Kafka partitions lost (the group went on without us): %s", sorted(numbers))

    def _forget(self, numbers: list[int]) -> None:
        gone = set(numbers)
        self._assigned -= gone
        self._buffer = deque(m for m in self._buffer if m.partition() not in gone)
        for number in numbers:
            self._metrics.kafka_rebalances.labels("revoked").inc()
            with contextlib.suppress(KeyError):  # never measured
                self._metrics.kafka_consumer_lag.remove(str(number))

    def _client_error(self, error: Any) -> None:
        if error.code() == self._all_down and self._down_since is None:
            self._down_since = time.monotonic()
        self._log(logging.WARNING, f"client-{error.code()}", "Kafka: %s", error.str())

    # --- the end ---------------------------------------------------------------------------

    def pending(self) -> int:
        """Batches read and not yet acknowledged."""
        return self._book.outstanding()

    def close(self) -> None:
        """After the shipper stopped: commit what was acknowledged, leave the group."""
        self._closed.set()
        self._keeper.join(5.0)
        with self._using:
            self._commit(self._book.due(), asynchronous=False)
            try:
                self._consumer.close()
            except Exception:
                log.warning("leaving the Kafka consumer group failed", exc_info=True)
