"""The receiving side of the Kafka path: a worker that forwards its spool leases to Kafka.

A `Forwarder` takes a `Shipper`'s place in a worker process (receiver/workers/child.py) when
`kafka.bootstrap_servers` is set. Its reading thread reads spool batches and produces each
record: the spool payload as it is (the message as received and its receive metadata,
receiver/event.py), the event id as key (`event_id`: the same `_id` the worker tier ships it
under), the time it was spooled as the message timestamp. The producer is idempotent with
`acks=all`, so a retry inside the client never stores a record twice; a spool batch is
acknowledged (counted shipped, and deleted with its segment) only once Kafka reported every one
of its records stored. A record Kafka did not store for a passing reason (its delivery timed out,
the brokers are down, a leader moved) is produced again after a pause, doubling up to
`elasticsearch.retry_max`: while Kafka is unreachable nothing is acknowledged, reading stops at
`kafka.max_in_flight` records waiting, and the spool fills under `spool.when_full` as it does in
an Elasticsearch outage. A record Kafka refuses for good (`REFUSED_FOR_GOOD`: larger than
`message.max.bytes`, an invalid record) would be refused at every retry and hold its segment,
and so the spool, forever: it goes to the dead-letter file with the reason, exactly as a document
Elasticsearch refuses (receiver/ship/dead_letter.py), is counted dead-lettered, and the spool
moves on. A broker answers for a whole batch, so a record it refused with batch-mates is first
produced again alone; only a refusal of the record alone is believed.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from typing import Any

from receiver.config import Settings
from receiver.kafka.client import client_config, library
from receiver.metrics import WorkerMetrics
from receiver.ratelimit import RateLimitedLog
from receiver.ship.dead_letter import DeadLetter, DeadLetters
from receiver.spool.reader import SpoolReader
from receiver.spool.records import Batch, event_id

log = logging.getLogger(__name__)

_IDLE_WAIT = 0.25  # longest wait for spool data or room, so a stop is seen promptly
_READ_EVENTS = 2000
_READ_BYTES = 2 * 1024**2
_CHECK_EVERY = 5.0  # how often an idle forwarder that saw the brokers down looks again
# Kafka's answers about the record itself: producing it again is refused again. Anything else
# (timeouts, brokers down, leaders moving, authorisation being fixed) is worth waiting out.
REFUSED_FOR_GOOD = frozenset({
    # The producer's own message.max.bytes (raised by `produce`), or the broker's or topic's
    # limit (message.max.bytes, max.message.bytes) in a delivery report.
    "MSG_SIZE_TOO_LARGE",
    "INVALID_MSG_SIZE",
    "INVALID_RECORD",  # the broker's validation refused it
    "INVALID_TIMESTAMP",  # older than the topic's message.timestamp.difference.max.ms
})
# What the brokers and the producer add to a spool record (key, timestamp, headers, batch
# framing): the producer's message.max.bytes is the longest message plus this.
_RECORD_OVERHEAD = 4096
# librdkafka's own default: batches up to this size however short the messages.
_LIBRARY_MESSAGE_MAX_BYTES = 1_000_000
# Longest wait for the client's queue to empty around a record sent alone (twice of it stays
# within the time a worker's loop may stand still, `service.worker_stall_timeout`, at least 25 s).
_ALONE_WAIT = 10.0


def message_max_bytes(settings: Settings) -> int:
    """The producer's `message.max.bytes`: room for the longest message the listeners accept
    (`listen.max_message_bytes`, with its receive data), never less than librdkafka's default;
    `kafka.options` may set it (to the brokers' limit: a longer record is then dead-lettered)."""
    configured = settings.kafka.options.get("message.max.bytes")
    if configured is not None:
        return int(configured)
    return max(_LIBRARY_MESSAGE_MAX_BYTES,
               int(settings.listen.max_message_bytes) + 1024 + _RECORD_OVERHEAD)


class _Refusal:
    """A delivery error as the forwarder needs it (librdkafka's `KafkaError`, or one raised by
    `produce` itself)."""

    __slots__ = ("name", "text")

    def __init__(self, name: str, text: str) -> None:
        self.name, self.text = name, text

    @property
    def for_good(self) -> bool:
        return self.name in REFUSED_FOR_GOOD

    @property
    def reason(self) -> str:
        """The dead-letter reason and metric label: `kafka_msg_size_too_large`, ..."""
        return "kafka_" + self.name.lstrip("_").lower()


class _Message:
    """One record as produced: what producing it again needs. `alone`: it is produced in a
    request of its own (a refusal then is about this record, not about its batch-mates)."""

    __slots__ = ("alone", "key", "timestamp", "value")

    def __init__(self, value: bytes, key: str | bytes, timestamp: int) -> None:
        self.value, self.key, self.timestamp = value, key, timestamp
        self.alone = False


class _InFlight:
    """One spool batch on its way to Kafka: acknowledged when each of its records is stored or
    dead-lettered."""

    __slots__ = ("batch", "dead", "dead_tally", "failed", "forwarder", "waiting")

    def __init__(self, batch: Batch, forwarder: Forwarder) -> None:
        self.batch = batch
        self.forwarder = forwarder
        self.waiting = len(batch.records)
        self.failed: list[_Message] = []  # what Kafka did not store for now, to produce again
        self.dead: list[tuple[DeadLetter, _Message]] = []  # refused for good, to dead-letter
        self.dead_tally: dict[str, int] = {}  # dead-lettered so far, by reason

    def delivered(self, error: Any, message: Any) -> None:
        """librdkafka's delivery report for one record (in the polling thread)."""
        if error is None:
            self.forwarder.reported(self, None)
            return
        self.refused(_Refusal(error.name(), error.str()),
                     _Message(message.value(), message.key(), message.timestamp()[1]),
                     by_broker=True)

    def delivered_alone(self, sent: _Message, error: Any, message: Any) -> None:
        """The delivery report of a record produced alone (`sent`, which says so)."""
        if error is None:
            self.forwarder.reported(self, None)
        else:
            self.refused(_Refusal(error.name(), error.str()), sent, by_broker=True)

    def refused(self, refusal: _Refusal, message: _Message, by_broker: bool) -> None:
        """A broker answers for a whole batch of records (its size, its validation): a refusal
        for good is believed only for a record produced alone; one refused with batch-mates is
        produced again alone first. The producer's own refusal (`produce` raising) is about the
        record itself."""
        final = refusal.for_good and (message.alone or not by_broker)
        if final:
            key = message.key.decode("ascii", "replace") if isinstance(message.key, bytes) \
                else message.key
            self.dead.append((DeadLetter(None, message.value, "", key, 0, refusal.reason,
                                         f"Kafka refused the record: {refusal.text}"), message))
        else:
            message.alone = refusal.for_good
            self.failed.append(message)
        self.forwarder.reported(self, refusal, final)


class Forwarder:
    """Reads spool leases and produces every record to Kafka; the worker's `Shipper` when Kafka
    is configured (same life: `run`, `finish`, `caught_up`, `drain`, `stillness`)."""

    def __init__(self, settings: Settings, reader: SpoolReader, metrics: WorkerMetrics,
                 dead_letter_path: str) -> None:
        kafka = settings.kafka
        self._reader = reader
        self._metrics = metrics
        self._topic = kafka.topic
        self._limit = kafka.max_in_flight
        self._unreachable_after = float(kafka.unreachable_after)
        self._retry = (float(settings.elasticsearch.retry_initial),
                       float(settings.elasticsearch.retry_max))
        self._lock = threading.Condition()
        self._in_flight = 0  # records produced, not yet reported
        self._again: deque[tuple[float, _InFlight]] = deque()  # batches with records to resend
        self._delay = self._retry[0]
        self._waiting_since: float | None = None  # oldest unreported record, while any
        self._last_stored = time.monotonic()
        self._down_since: float | None = None  # the client said every broker is down
        self._finishing = threading.Event()
        self._read_all = False
        self._closing = threading.Event()  # drain is over: the polling thread ends
        self._all_down = library().KafkaError._ALL_BROKERS_DOWN
        self._kafka_exception: type[Exception] = library().KafkaException
        self._log = RateLimitedLog(log)
        # No Elasticsearch here: the file only (the dead-letter index is the shipping path's).
        self._dead_letters = DeadLetters(dead_letter_path, None)
        config = client_config(kafka, "producer") | {
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": kafka.compression,
            "linger.ms": float(kafka.linger) * 1000,
            "queue.buffering.max.messages": kafka.max_in_flight + _READ_EVENTS,
            "message.max.bytes": message_max_bytes(settings),
            "error_cb": self._client_error,
        }
        self._producer = library().Producer(config)
        self._poller = threading.Thread(target=self._poll, name="kafka-reports", daemon=True)
        self._poller.start()
        self.last_turn = time.monotonic()
        metrics.kafka_up.set(1)

    def stillness(self) -> float:
        """Seconds the reading loop has not turned (the parent kills a worker still too long;
        the loop turns while it waits for Kafka, so an outage is not stillness)."""
        return time.monotonic() - self.last_turn

    # --- the reading thread --------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        log.info("producing the spool to Kafka topic %s", self._topic)
        while not stop.is_set():
            self.last_turn = time.monotonic()
            self._resend_due()
            if not self._room():
                continue
            batch = self._reader.read(_READ_EVENTS, _READ_BYTES)
            self._read_all = batch is None
            if batch is None:
                self._reader.wait(_IDLE_WAIT)
            elif not batch.records:  # a damaged stretch, skipped: nothing to produce
                self._reader.acknowledge(batch)
            else:
                self._produce(_InFlight(batch, self), batch.records)

    def _room(self) -> bool:
        with self._lock:
            if self._in_flight < self._limit:
                return True
            self._lock.wait(_IDLE_WAIT)
        return False

    def _produce(self, flight: _InFlight, records: list[Any]) -> None:
        identity = flight.batch.identity
        with self._lock:
            self._in_flight += len(records)
            if self._waiting_since is None:
                self._waiting_since = time.monotonic()
            self._metrics.kafka_produce_queue.set(self._in_flight)
        for record in records:
            self._send(flight, _Message(record.payload, event_id(identity, record.position),
                                        int(record.written_at * 1000)))

    def _send(self, flight: _InFlight, message: _Message) -> None:
        """Produce one record; its outcome comes as a delivery report, or at once when the
        client refuses it itself (larger than its message.max.bytes)."""
        report = functools.partial(flight.delivered_alone, message) if message.alone \
            else flight.delivered
        while True:
            try:
                self._producer.produce(self._topic, message.value, message.key,
                                       on_delivery=report, timestamp=message.timestamp)
                return
            except BufferError:  # the client's own queue is full: let reports drain it
                time.sleep(0.01)
            except self._kafka_exception as raised:
                error: Any = raised.args[0] if raised.args else None
                flight.refused(_Refusal(error.name(), error.str()) if error is not None
                               else _Refusal("_UNKNOWN", str(raised)), message, by_broker=False)
                return

    def _resend_due(self) -> None:
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._again or self._again[0][0] > now:
                    return
                _, flight = self._again.popleft()
            failed, flight.failed = flight.failed, []
            flight.waiting = len(failed)
            with self._lock:
                self._in_flight += len(failed)
            for message in failed:
                if message.alone:
                    self._send_alone(flight, message)
                else:
                    self._send(flight, message)

    def _send_alone(self, flight: _InFlight, message: _Message) -> None:
        """Produce a record in a request of its own: nothing else waits in the client when it
        is produced, and nothing is produced before its report came (only this thread
        produces)."""
        self.last_turn = time.monotonic()  # flushing is this loop's work, not a wedge
        if self._producer.flush(_ALONE_WAIT) > 0:
            # Kafka is slow to take the rest: sent with others after all, so a refusal now is
            # not believed either (the record is tried alone again).
            message.alone = False
        self._send(flight, message)
        self._producer.flush(_ALONE_WAIT)
        self.last_turn = time.monotonic()

    # --- delivery reports (the polling thread) -------------------------------------------

    def _poll(self) -> None:
        next_check = 0.0
        while not self._closing.is_set():
            self._producer.poll(0.1)
            now = time.monotonic()
            self._update_up(now)
            if self._down_since is not None and self._in_flight == 0 and now >= next_check:
                next_check = now + _CHECK_EVERY
                self._probe()

    def reported(self, flight: _InFlight, error: _Refusal | None, final: bool = False) -> None:
        """One record's outcome (the polling thread, or the reading thread for a record the
        client refused itself); the batch's, once it has all of them."""
        metrics = self._metrics
        now = time.monotonic()
        if error is None:
            metrics.kafka_records_produced.inc()
            self._last_stored = now
            self._down_since = None
        elif final:
            metrics.kafka_delivery_errors.labels(error.name).inc()
            self._log(logging.ERROR, f"refused-{error.name}", "Kafka refused a record for good "
                      "(%s); it goes to the dead-letter file", error.text)
        elif error.for_good:
            metrics.kafka_delivery_errors.labels(error.name).inc()
            self._log(logging.WARNING, f"batch-{error.name}", "Kafka refused a batch (%s); its "
                      "records are produced again one by one, and only one refused alone goes "
                      "to the dead-letter file", error.text)
        else:
            metrics.kafka_delivery_errors.labels(error.name).inc()
            self._log(logging.ERROR, "delivery", "Kafka did not store a record (%s); it stays "
                      "in the spool and is produced again", error.text)
        with self._lock:
            self._in_flight -= 1
            flight.waiting -= 1
            metrics.kafka_produce_queue.set(self._in_flight)
            if self._in_flight == 0:
                self._waiting_since = None
            elif error is None:
                self._waiting_since = now
            self._lock.notify_all()
            if flight.waiting:
                return
            dead, flight.dead = flight.dead, []
        self._dead_letter(flight, dead)
        with self._lock:
            if flight.failed:
                self._again.append((now + self._delay, flight))
                self._delay = min(self._retry[1], self._delay * 2)
                return
            if error is None:
                self._delay = self._retry[0]
        records, tally = len(flight.batch.records), flight.dead_tally
        try:
            self._reader.acknowledge(flight.batch, records - sum(tally.values()),
                                     tuple(tally.items()))
        except Exception:
            self._log(logging.ERROR, "ack", "acknowledging a spool batch failed", exc_info=True)

    def _dead_letter(self, flight: _InFlight, dead: list[tuple[DeadLetter, _Message]]) -> None:
        """Write the records refused for good to the dead-letter file (one write and fsync per
        reason) and tally them; those the file did not take stay in the spool, produced (and
        refused) again after a pause."""
        by_reason: dict[str, list[tuple[DeadLetter, _Message]]] = {}
        for entry in dead:
            by_reason.setdefault(entry[0].error_type, []).append(entry)
        for reason, group in by_reason.items():
            if self._dead_letters.keep([letter for letter, _ in group], reason):
                flight.dead_tally[reason] = flight.dead_tally.get(reason, 0) + len(group)
            else:
                flight.failed += [message for _, message in group]

    def _client_error(self, error: Any) -> None:
        if error.code() == self._all_down and self._down_since is None:
            self._down_since = time.monotonic()
        self._log(logging.WARNING, f"client-{error.code()}", "Kafka: %s", error.str())

    def _probe(self) -> None:
        """Idle after the brokers went down: ask for metadata to learn whether they are back."""
        try:
            self._producer.list_topics(self._topic, timeout=5.0)
        except Exception:
            return
        self._down_since = None

    def _update_up(self, now: float) -> None:
        since = [t for t in (self._down_since,) if t is not None]
        waiting = self._waiting_since
        if waiting is not None:
            since.append(max(waiting, self._last_stored))
        down = bool(since) and now - min(since) > self._unreachable_after
        self._metrics.kafka_up.set(0 if down else 1)

    # --- stopping ------------------------------------------------------------------------

    def finish(self) -> None:
        self._finishing.set()

    def caught_up(self) -> bool:
        with self._lock:
            return self._finishing.is_set() and self._read_all and self._in_flight == 0 \
                and not self._again

    def drain(self, deadline: float) -> bool:
        """After `stop`: wait for the reports of what was produced until `deadline`; what was
        not reported stored stays in the spool (produced again after the restart: Kafka then
        holds it twice, and Elasticsearch indexes it once, by its id)."""
        while time.monotonic() < deadline:
            with self._lock:
                if self._in_flight == 0:
                    break
                self._lock.wait(min(_IDLE_WAIT, max(0.0, deadline - time.monotonic())))
        with self._lock:
            left = self._in_flight
        self._closing.set()
        self._poller.join(1.0)
        if left:
            log.warning("shutdown: %d records still on their way to Kafka at the deadline; they "
                        "stay in the spool and are produced again after the restart", left)
        return left == 0
