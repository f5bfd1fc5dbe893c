"""The shipper: spool -> batches -> bulk requests in flight -> acknowledgements to the spool.

A reader loop collects spool batches into a shipment until `batch_events`, `batch_bytes` or
`batch_age` says send, or until the spool is read to its end while no request is in flight
(after `batch_linger`, a few ms: low latency at low rates, full batches under load). Up to
`max_in_flight` shipments are delivered at once by worker threads (HTTP and gzip release the
GIL). A worker sends, classifies, retries what may succeed later
(whole request or single items, exponential backoff with jitter), dead-letters what never will,
and only then acknowledges the shipment's spool batches. Nothing is acknowledged that was not
delivered or dead-lettered, so on any failure the events simply stay in the spool.

All state lives in the object (it runs in the ship process, receiver/ship/process.py);
metrics are passed in.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from receiver.config import ElasticsearchSettings
from receiver.metrics import Metrics
from receiver.ship.classify import Classification, ItemOutcome, RequestOutcome
from receiver.ship.dead_letter import DeadLetter, DeadLetterFile, dead_letter_line
from receiver.ship.elasticsearch import ElasticsearchOutput
from receiver.ship.encode import EncodedBatch, EventId, IndexNamer, encode_batch
from receiver.ship.errors import OutputError
from receiver.ship.output import Output
from receiver.ship.template import SetupError, install

log = logging.getLogger(__name__)

# Rough size of a `create` action line, counted against batch_bytes with each payload.
_ACTION_BYTES = 100
# Longest single wait for new spool data, so a stop request is seen promptly.
_IDLE_WAIT = 0.25
_LOG_EVERY = 10.0
# Whole-request answers retried at `retry_max`: log key and what the output did.
_REFUSALS = {
    RequestOutcome.AUTH: ("auth", "refused our credentials"),
    RequestOutcome.REJECTED: ("rejected", "rejected the bulk request"),
}


class SpoolReader(Protocol):
    """What the shipper needs from receiver.spool's reader."""

    identity: str

    def read(self, max_records: int, max_bytes: int) -> Any | None: ...
    def wait(self, timeout: float) -> bool: ...
    def acknowledge(self, batch: Any) -> None: ...


@dataclass(slots=True)
class _Shipment:
    batches: list[Any] = field(default_factory=list)
    records: list[Any] = field(default_factory=list)
    size: int = 0
    oldest: float = 0.0  # written_at of its first record (wall clock)
    started: float = 0.0  # monotonic time its first batch was read


class _ThrottledLog:
    """Logs a recurring problem at most every few seconds, counting what it held back."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(
        self, level: int, key: str, message: str, *args: object, exc_info: bool = False
    ) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -_LOG_EVERY) < _LOG_EVERY:
                self._held[key] = self._held.get(key, 0) + 1
                return
            self._last[key] = now
            held = self._held.pop(key, 0)
        suffix = f" ({held} similar messages suppressed)" if held else ""
        log.log(level, message + suffix, *args, exc_info=exc_info)


class Shipper:
    """Ships spooled events to an output with batching, concurrency, retries and dead letters."""

    def __init__(
        self,
        settings: ElasticsearchSettings,
        reader: SpoolReader,
        output: Output,
        metrics: Metrics,
        dead_letter_path: str,
        event_id: EventId | None = None,
    ) -> None:
        if event_id is None:
            from receiver.spool import event_id as spool_event_id  # the spool owns ids

            event_id = spool_event_id
        self._settings = settings
        self._reader = reader
        self._output = output
        self._metrics = metrics
        self._event_id = event_id
        self._namer = IndexNamer(settings)
        self._dead_letters = DeadLetterFile(dead_letter_path)
        self._linger = float(settings.batch_linger)
        self._slots = threading.BoundedSemaphore(settings.max_in_flight)
        # Daemon workers (not an executor): a request stuck until its timeout must not hold
        # the process at exit once drain's deadline has passed.
        self._work: queue.SimpleQueue[tuple[_Shipment, bool] | None] = queue.SimpleQueue()
        self._busy = 0  # shipments queued or being delivered
        self._idle = threading.Condition()
        self._workers = [
            threading.Thread(target=self._work_loop, name=f"ship-{n}", daemon=True)
            for n in range(settings.max_in_flight)
        ]
        for worker in self._workers:
            worker.start()
        self._abandon = threading.Event()  # drain's deadline passed: stop retrying
        # The spool reader is single-threaded: workers hand finished batches back through this
        # queue and the reading thread (or drain) acknowledges them between reads.
        self._finished: queue.SimpleQueue[list[Any]] = queue.SimpleQueue()
        self._closed = False
        self._run_exited = threading.Event()  # the reading thread is gone: drain may ack
        self._run_exited.set()
        self._log = _ThrottledLog()
        self._random = random.Random()
        metrics.output_up.set(0)

    # --- the reader loop -----------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Read, batch and hand shipments to workers until `stop` is set."""
        self._run_exited.clear()
        try:
            self._run(stop)
        finally:
            self._run_exited.set()

    def _run(self, stop: threading.Event) -> None:
        settings = self._settings
        log.info("shipping to %s", self._output.describe())
        if settings.setup_on_start:
            self._setup()
        shipment = _Shipment()
        caught_up = False
        while not stop.is_set():
            self._acknowledge_finished()
            if shipment.records and self._due(shipment, caught_up):
                if not self._submit(shipment, stop):
                    break
                shipment = _Shipment()
                continue
            room_events = settings.batch_events - len(shipment.records)
            room_bytes = max(1, settings.batch_bytes - shipment.size)
            try:
                batch = self._reader.read(room_events, room_bytes)
            except Exception:  # a damaged spool must not kill shipping silently
                self._log(logging.ERROR, "read", "reading the spool failed", exc_info=True)
                stop.wait(1.0)
                continue
            if batch is None:
                caught_up = True
                if shipment.records and self._lingered(shipment):
                    continue  # `_due` sends it now
                timeout = _IDLE_WAIT
                if shipment.records:
                    timeout = min(timeout, max(0.001, self._age_left(shipment)))
                    if self._busy == 0:
                        # Lingering: whatever arrives meanwhile is read in one go when the
                        # linger ends. Waking on each append (every one wakes a waiting reader)
                        # would cost a read cycle per append (~2.5 µs per event at 20k/s).
                        stop.wait(min(timeout, max(0.001, self._linger_left(shipment))))
                        caught_up = False  # read what came meanwhile before sending
                        continue
                self._reader.wait(timeout)
                continue
            caught_up = False
            if not batch.records:
                self._finished.put([batch])
                continue
            if not shipment.records:
                shipment.oldest = batch.records[0].written_at
                shipment.started = time.monotonic()
            shipment.batches.append(batch)
            shipment.records.extend(batch.records)
            shipment.size += sum(len(r.payload) for r in batch.records)
            shipment.size += _ACTION_BYTES * len(batch.records)
        if shipment.records:  # already read: give it a chance during drain
            self._start(shipment)

    def _setup(self) -> None:
        """`elasticsearch.setup_on_start`: install the template once; failures only logged."""
        if not isinstance(self._output, ElasticsearchOutput):
            return
        try:
            for step in install(self._output, self._settings):
                log.info("setup: %s: %s", step.what, step.note)
        except (OutputError, SetupError) as error:
            log.error("setup at start failed (shipping goes on; run `haproxy-receiver setup` "
                      "to retry): %s", self._output.redact(str(error)))

    def _due(self, shipment: _Shipment, caught_up: bool) -> bool:
        """Full, or old enough, or (latency) the spool is read to its end and no request is in
        flight: then waiting would only delay these events. Under load requests are in flight,
        so batches keep growing towards `batch_events` while they are."""
        settings = self._settings
        if len(shipment.records) >= settings.batch_events or shipment.size >= settings.batch_bytes:
            return True
        if caught_up and (self._lingered(shipment) or self._age_left(shipment) <= 0):
            return True
        return time.monotonic() - shipment.started >= settings.batch_age

    def _lingered(self, shipment: _Shipment) -> bool:
        return self._busy == 0 and self._linger_left(shipment) <= 0

    def _linger_left(self, shipment: _Shipment) -> float:
        # From the oldest event's spooling: a few ms of latency buy batches large enough that
        # the per-request cost (~0.1-0.3 ms of CPU) stays small per event at moderate rates.
        return shipment.oldest + self._linger - time.time()

    def _age_left(self, shipment: _Shipment) -> float:
        return shipment.oldest + self._settings.batch_age - time.time()

    def _submit(self, shipment: _Shipment, stop: threading.Event) -> bool:
        """Wait for a free in-flight slot (or stop), then start delivering."""
        while not self._slots.acquire(timeout=_IDLE_WAIT / 5):
            self._acknowledge_finished()
            if stop.is_set():
                self._start(shipment, slot=False)
                return False
        self._start(shipment, slot=True)
        return True

    def _start(self, shipment: _Shipment, slot: bool = False) -> None:
        with self._idle:
            self._busy += 1
        self._work.put((shipment, slot))

    def _work_loop(self) -> None:
        while (item := self._work.get()) is not None:
            try:
                self._deliver_shipment(*item)
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    # --- draining ------------------------------------------------------------------------

    def drain(self, deadline: float) -> bool:
        """Let in-flight shipments finish until `deadline` (a `time.monotonic()` value).

        Call it once `stop` is set (before or after `run` returned). Returns True when
        everything read was delivered and acknowledged; what is left stays in the spool
        (nothing is acknowledged after this returns).
        """
        while True:
            reading_done = self._run_exited.is_set()
            if reading_done:  # the reader is single-threaded: only ack once `run` is out
                self._acknowledge_finished()
            with self._idle:
                busy = self._busy
                remaining = deadline - time.monotonic()
                if (busy == 0 and reading_done) or remaining <= 0:
                    break
                self._idle.wait(min(remaining, _IDLE_WAIT / 5))
        self._abandon.set()
        if self._run_exited.is_set():
            self._acknowledge_finished()
        self._closed = True
        for _worker in self._workers:
            self._work.put(None)
        if busy:
            log.warning(
                "shutdown: %d bulk requests still unfinished at the deadline; their events stay "
                "in the spool and are shipped after the restart", busy)
        return busy == 0

    # --- delivering one shipment ---------------------------------------------------------

    def _deliver_shipment(self, shipment: _Shipment, slot: bool) -> None:
        try:
            while True:
                try:
                    if self._deliver(shipment.records):
                        self._finished.put(shipment.batches)
                    return
                except Exception:  # a bug must neither lose the batch nor hold the slot
                    self._log(logging.ERROR, "bug",
                              "shipping a batch failed unexpectedly; trying it again",
                              exc_info=True)
                    if self._abandon.wait(float(self._settings.retry_max)):
                        return
        finally:
            if slot:
                self._slots.release()

    def _deliver(self, records: list[Any]) -> bool:
        """True when every record is delivered or dead-lettered."""
        encoded = encode_batch(
            records, self._reader.identity, self._namer, self._event_id, self._output.wants_ids
        )
        if encoded.unencodable:
            letters = [
                DeadLetter(record.payload, "", "", 0, error_type, reason)
                for record, error_type, reason in encoded.unencodable
            ]
            if not self._dead_letter_or_wait(letters, "undecodable_record"):
                return False
        pending = list(range(len(encoded)))
        limit = max(1, len(pending))
        attempt = 0
        while pending:
            if self._abandon.is_set():
                return False
            chunk, rest = pending[:limit], pending[limit:]
            result = self._send(encoded.subset(chunk), len(chunk))
            outcome = result.request
            if outcome is RequestOutcome.OK:
                retry, _dead = self._settle(encoded, chunk, result)
                pending = rest + retry
                if not retry:
                    attempt = 0
                    continue
                self._metrics.events_retried.inc(len(retry))
                self._log(
                    logging.WARNING, "items",
                    "%d of %d events will be retried: %s", len(retry), len(chunk),
                    _first_reason(result, ItemOutcome.RETRY),
                )
                delay = self._backoff(attempt)
            elif outcome is RequestOutcome.TOO_LARGE:
                if len(chunk) > 1:
                    limit = max(1, len(chunk) // 2)
                    log.warning("bulk request too large (HTTP 413): sending %d events at once",
                                limit)
                    continue
                letter = self._letter(encoded, chunk[0], 413, "request_too_large", result.message)
                if not self._dead_letter_or_wait([letter], "request_too_large"):
                    return False
                pending = rest
                continue
            else:
                self._metrics.events_retried.inc(len(chunk))
                delay = self._whole_request_failed(result, len(chunk), attempt)
            attempt += 1
            if self._abandon.wait(delay):
                return False
        return True

    def _send(self, body: bytes, items: int) -> Classification:
        metrics = self._metrics
        metrics.bulk_in_flight.inc()
        started = time.perf_counter()
        try:
            result = self._output.send(body, items)
        finally:
            metrics.bulk_in_flight.dec()
        metrics.bulk_seconds.observe(time.perf_counter() - started)
        metrics.bulk_requests.labels(result.label).inc()
        metrics.output_up.set(1 if result.request is RequestOutcome.OK else 0)
        return result

    def _settle(
        self, encoded: EncodedBatch, chunk: list[int], result: Classification
    ) -> tuple[list[int], list[int]]:
        """Count delivered items, dead-letter refused ones; return (to retry, dead-lettered)."""
        retry: list[int] = []
        dead: list[int] = []
        letters: dict[str, list[DeadLetter]] = {}
        for failure in result.failures:
            item = chunk[failure.index]
            if failure.outcome is ItemOutcome.RETRY:
                retry.append(item)
            else:
                dead.append(item)
                letters.setdefault(failure.error_type, []).append(self._letter(
                    encoded, item, failure.status, failure.error_type, failure.reason))
        self._metrics.events_shipped.inc(len(chunk) - len(result.failures))
        for reason, group in letters.items():
            if not self._write_dead_letters(group, reason):
                # Not on disk: keep them in the spool (retried; they are refused again).
                retry += [chunk[f.index] for f in result.failures
                          if f.outcome is ItemOutcome.DEAD_LETTER and f.error_type == reason]
        return retry, dead

    def _letter(
        self, encoded: EncodedBatch, item: int, status: int, error_type: str, reason: str
    ) -> DeadLetter:
        return DeadLetter(
            encoded.records[item].payload, encoded.indices[item], encoded.ids[item],
            status, error_type, reason,
        )

    def _dead_letter_or_wait(self, letters: list[DeadLetter], reason: str) -> bool:
        """Write dead letters, retrying while the file cannot be written (False: abandoned).

        The batch must not be given up: an unacknowledged batch would hold the checkpoint."""
        while not self._write_dead_letters(letters, reason):
            if self._abandon.wait(float(self._settings.retry_max)):
                return False
        return True

    def _write_dead_letters(self, letters: list[DeadLetter], reason: str) -> bool:
        try:
            self._dead_letters.write(letters)
        except OSError as error:
            self._log(
                logging.ERROR, "dead-letter-file",
                "cannot write the dead-letter file %s (%s); %d refused events stay in the spool",
                self._dead_letters.path, error.strerror or error, len(letters),
            )
            return False
        self._metrics.events_dead_lettered.labels(reason).inc(len(letters))
        self._log(
            logging.WARNING, f"dead-letter-{reason}",
            "%d events refused by the output (%s: %s) written to %s",
            len(letters), reason, letters[0].reason[:300], self._dead_letters.path,
        )
        if self._settings.dead_letter_index and self._output.wants_ids:
            self._index_dead_letters(letters)
        return True

    def _index_dead_letters(self, letters: list[DeadLetter]) -> None:
        """Best effort: the file already holds them; the index is for searching."""
        lines = bytearray()
        index = orjson.dumps(time.strftime(self._settings.dead_letter_index, time.gmtime()))
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for letter in letters:
            lines += b'{"create":{"_index":' + index
            lines += (b',"_id":' + orjson.dumps(letter.id) if letter.id else b"") + b"}}\n"
            lines += orjson.dumps({
                "@timestamp": now, "error.type": letter.error_type,
                "error.message": letter.reason, "haproxy_receiver.index": letter.index,
                "event.original": dead_letter_line(letter, time.time()).decode().rstrip("\n"),
            }) + b"\n"
        result = self._output.send(bytes(lines), len(letters))
        if not result.delivered_all:
            self._log(
                logging.WARNING, "dead-letter-index",
                "could not index %d dead letters into %s (%s); they are in %s",
                len(letters), self._settings.dead_letter_index,
                result.message or _first_reason(result, None), self._dead_letters.path,
            )

    def _whole_request_failed(self, result: Classification, events: int, attempt: int) -> float:
        refusal = _REFUSALS.get(result.request)
        if refusal is not None:  # no backoff: nothing changes until someone fixes something
            key, what = refusal
            self._log(
                logging.ERROR, key,
                "the output %s (HTTP %s): %s; %d events stay in the spool, retrying every %.0fs",
                what, result.status or "-", result.message, events, self._settings.retry_max,
            )
            return float(self._settings.retry_max)
        delay = self._backoff(attempt)
        self._log(
            logging.WARNING, f"retry-{result.label}",
            "bulk request of %d events failed (%s%s), retrying in %.2fs", events, result.label,
            f", HTTP {result.status}: {result.message}" if result.status else f": {result.message}",
            delay,
        )
        return delay

    def _backoff(self, attempt: int) -> float:
        settings = self._settings
        ceiling = float(settings.retry_max)
        delay: float = min(ceiling, float(settings.retry_initial) * 2.0 ** min(attempt, 30))
        return delay * (0.5 + 0.5 * self._random.random())

    def _acknowledge_finished(self) -> None:
        """Acknowledge delivered batches; only ever called by the thread that reads."""
        while not self._closed:
            try:
                batches = self._finished.get_nowait()
            except queue.Empty:
                return
            for batch in batches:
                try:
                    self._reader.acknowledge(batch)
                except Exception:
                    self._log(logging.ERROR, "ack", "acknowledging a spool batch failed",
                              exc_info=True)


def _first_reason(result: Classification, outcome: ItemOutcome | None) -> str:
    for failure in result.failures:
        if outcome is None or failure.outcome is outcome:
            return f"HTTP {failure.status} {failure.error_type}: {failure.reason[:200]}"
    return result.message
