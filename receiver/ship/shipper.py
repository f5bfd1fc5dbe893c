"""The shipper: source -> parsed and encoded batches -> shipments delivered in worker threads ->
acknowledgements.

A reading thread (`run`) reads spool batches and collects them into a shipment until the batch
policy says send (ship/batching.py), each batch joining the one read before it where the source
allows (Source.join), and turns them into bulk body lines (ship/encode.py: parsing happens
here) as the shipment goes, or when a batch that cannot join comes; then one of
`max_in_flight` delivery threads delivers it (ship/delivery.py: retries, 413 halving, dead
letters) and acknowledges every spool batch of the shipment with how many of its events were
shipped and dead-lettered. Nothing is
acknowledged that was not delivered or dead-lettered, so on any failure the events simply stay
in the spool. HTTP, gzip and the JSON codecs release the GIL part of the time; several workers
(processes, receiver/workers/) are what use several cores. The records come from a `Source`
(ship/source.py): a spool reader, or a Kafka consumer in the worker tier.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter as Tally

from receiver.config import ElasticsearchSettings, ParseSettings
from receiver.metrics import WorkerMetrics
from receiver.parse import Parser
from receiver.ratelimit import RateLimitedLog
from receiver.ship.batching import BatchPolicy, Shipment, payload_bytes
from receiver.ship.dead_letter import DeadLetters
from receiver.ship.delivery import Delivery
from receiver.ship.encode import BulkEncoder, DocumentHook, EncodedBatch
from receiver.ship.output import Output
from receiver.ship.source import Source
from receiver.spool.records import Batch

log = logging.getLogger(__name__)

# Longest single wait for new spool data, so a stop request is seen promptly.
_IDLE_WAIT = 0.25
# Longest single wait for company of a partial shipment. The wait ends at once when `finish`
# is called, and a stop without it (a test, the Kafka member) is seen within this long. At
# everyday rates one wait per shipment (the default `batch_age` is 1 s) means one read of
# what arrived meanwhile and one encode call per bulk request, not one per 0.25 s.
_COMPANY_WAIT = 1.0


SpoolSource = Source  # the name of the seam before it had a second source


def _failure_label(error: Exception) -> str:
    """The `bulk_requests_total` outcome of a request that failed before a bulk body was sent,
    as ElasticsearchOutput.send labels a failed probe."""
    from receiver.ship.errors import OutputUnavailable

    if isinstance(error, OutputUnavailable):
        return "connection_error"
    return "auth_error" if "credentials" in str(error) else "rejected"


class Shipper:
    """Ships spooled events to an output with batching, concurrency, retries and dead letters."""

    def __init__(
        self,
        settings: ElasticsearchSettings,
        reader: Source,
        output: Output,
        metrics: WorkerMetrics,
        dead_letter_path: str,
        parse: ParseSettings | None = None,
        hook: DocumentHook | None = None,
        letters_output: Output | None = None,
    ) -> None:
        """`letters_output`: where the dead-letter index's documents go, when not to `output`
        (an import counts what `output` delivered, and these are not its documents)."""
        self._settings = settings
        self._reader = reader
        self._output = output
        self._policy = BatchPolicy(settings)
        self._abandon = threading.Event()  # drain's deadline passed: stop retrying
        dead_letters = DeadLetters(dead_letter_path, letters_output or output,
                                   settings.dead_letter_index)
        self._delivery = Delivery(settings, output, metrics, dead_letters, self._abandon)
        self._parse = parse or ParseSettings()
        self._metrics = metrics
        self._hook = hook
        self._encoder = BulkEncoder(settings, Parser(self._parse), metrics, output.wants_ids,
                                    hook)
        self._slots = threading.BoundedSemaphore(settings.max_in_flight)
        # Daemon workers (not an executor): a request stuck until its timeout must not hold
        # the process at exit once drain's deadline has passed.
        self._work: queue.SimpleQueue[tuple[Shipment, bool] | None] = queue.SimpleQueue()
        self._busy = 0  # shipments queued or being delivered
        self._idle = threading.Condition()
        self._workers = [
            threading.Thread(target=self._work_loop, name=f"ship-{n}", daemon=True)
            for n in range(settings.max_in_flight)
        ]
        for worker in self._workers:
            worker.start()
        self._run_exited = threading.Event()
        self._run_exited.set()
        self._finishing = threading.Event()  # stopping: partial shipments go at once
        self._read_all = False  # the last read found nothing
        self._building = 0  # events in the shipment being collected
        self._log = RateLimitedLog(log)
        # When the reading loop last went round (it does at least every _IDLE_WAIT): a worker
        # whose loop stops turning is wedged, and the receiving process restarts it.
        self.last_turn = time.monotonic()
        self._waiting_for_slot = False
        metrics.output_up.set(0)

    # --- the reading thread --------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Read, batch and hand shipments to delivery threads until `stop` is set."""
        self._run_exited.clear()
        try:
            self._run(stop)
        finally:
            self._run_exited.set()

    def _run(self, stop: threading.Event) -> None:
        log.info("shipping to %s", self._output.describe())
        if not self._choose_destination(stop):
            return
        if self._settings.setup_on_start:
            self._output.setup()
        policy = self._policy
        shipment = Shipment()
        waited = False  # the last turn waited for company: read what came before it goes
        while not stop.is_set():
            self.last_turn = time.monotonic()
            if not waited and (policy.due(shipment) or (self._read_all and shipment.records
                                                        and self._finishing.is_set())):
                self._encode_held(shipment)
                policy.sent(shipment)
                if not self._submit(shipment, stop):
                    return
                shipment = Shipment()
                self._building = 0
                continue
            events, size = policy.room(shipment)
            try:
                batch = self._reader.read(events, size)
            except Exception:  # a damaged spool must not kill shipping silently
                self._log(logging.ERROR, "read", "reading the spool failed", exc_info=True)
                stop.wait(1.0)
                continue
            self._read_all = batch is None
            waited = False
            if batch is None:
                if shipment.records and not self._finishing.is_set():
                    # Waiting for company (BatchPolicy.company_wait): whatever arrives
                    # meanwhile is read in one go when the wait ends, and goes with this
                    # shipment (left for the next, it would make that one due at once: two
                    # requests a budget). Waking on each append (the writer's every batch), or
                    # every _IDLE_WAIT, would cost a read and an encode call per wake-up at
                    # everyday rates; `finish` cuts the wait short.
                    pause = policy.company_wait(shipment)
                    if pause > 0:
                        self._finishing.wait(min(_COMPANY_WAIT, pause))
                        waited = True
                elif not shipment.records:
                    self._reader.wait(_IDLE_WAIT)
                continue
            if not batch.records:  # a damaged stretch, skipped: nothing to deliver
                self._reader.acknowledge(batch)
                continue
            self._hold(shipment, batch)
            self._building = shipment.records
        if shipment.records:  # already read: give it a chance during drain
            self._encode_held(shipment)
            self._start(shipment)

    def _hold(self, shipment: Shipment, batch: Batch) -> None:
        """`batch` goes with the shipment, encoded when it goes: joined to the batch held (read
        before it, Source.join), or held in its place (which is encoded now)."""
        held = shipment.held
        events, payload = len(batch.records), payload_bytes(batch)
        estimate = self._policy.estimate(payload)
        if held is not None and self._reader.join(held, batch):
            shipment.hold(held, events, payload, estimate)
            return
        self._encode_held(shipment)
        shipment.hold(batch, events, payload, estimate)

    def _encode_held(self, shipment: Shipment) -> None:
        batch = shipment.held
        if batch is None:
            return
        encoded = self._encoder.encode(batch.records, batch.identity)
        self._policy.encoded(shipment.held_payload, encoded)
        shipment.settle(encoded)

    def _choose_destination(self, stop: threading.Event) -> bool:
        """Ask the output where documents go (a data stream or daily indices, by what the
        server has: receiver/ship/destination.py) before encoding any; until the server
        answers nothing could be delivered anyway. False: stopped meanwhile."""
        delay: float = self._settings.retry_initial
        while not stop.is_set():
            self.last_turn = time.monotonic()
            try:
                chosen = self._output.destination()
            except Exception as error:  # OutputUnavailable, OutputError: the server is not there
                # Counted as a bulk request would count it (a failed probe before a bulk
                # request is one too), so `status` and the alerts see the output down.
                self._metrics.bulk_requests.labels(_failure_label(error)).inc()
                self._log(logging.WARNING, "destination", "cannot ask %s where documents go "
                          "(retrying): %s", self._output.describe(), error)
                stop.wait(delay)
                delay = min(delay * 2, self._settings.retry_max)
                continue
            if chosen is not None and chosen != self._settings:
                from receiver.ship.destination import parse_settings_for

                self._encoder = BulkEncoder(chosen, Parser(parse_settings_for(chosen, self._parse)),
                                            self._metrics, self._output.wants_ids, self._hook)
            if chosen is not None:
                log.info("documents go to %s %s", "data stream" if chosen.data_stream
                         else "indices", chosen.data_stream or chosen.index)
            return True
        return False

    def _submit(self, shipment: Shipment, stop: threading.Event) -> bool:
        """Wait for a free in-flight slot (or stop), then start delivering."""
        self._waiting_for_slot = True  # the delivery threads' beats are ours meanwhile
        try:
            while not self._slots.acquire(timeout=_IDLE_WAIT / 5):
                if stop.is_set():
                    self._start(shipment)
                    return False
        finally:
            self._waiting_for_slot = False
        self._start(shipment, slot=True)
        return True

    def stillness(self) -> float:
        """Seconds the shipping has shown no sign of life (the parent kills a worker still for
        too long): the reading loop's turns, and while it waits for a free in-flight slot, the
        delivery threads' beats (a request ending, a back-off waiting on purpose)."""
        now = time.monotonic()
        still = now - self.last_turn
        if self._waiting_for_slot:
            still = min(still, now - self._delivery.liveness.last_beat)
        return still

    def _start(self, shipment: Shipment, slot: bool = False) -> None:
        """Queue for delivery; `slot`: it holds an in-flight slot (a shipment handed over at
        stop holds none, so that drain can still finish it)."""
        with self._idle:
            self._busy += 1
        self._work.put((shipment, slot))

    # --- delivery threads ----------------------------------------------------------------

    def _work_loop(self) -> None:
        while (item := self._work.get()) is not None:
            shipment, slot = item
            try:
                self._deliver(shipment)
            finally:
                if slot:
                    self._slots.release()
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    def _deliver(self, shipment: Shipment) -> None:
        encoded = EncodedBatch.join(shipment.parts, [len(b.records) for b in shipment.batches])
        shipment.parts.clear()  # one copy of the body in memory, not two
        # The spool payloads only go to the dead letters of records that could not be decoded.
        payloads = shipment.payloads() if encoded.unencodable else []
        while True:
            try:
                dead = self._delivery.deliver(encoded, payloads)
            except Exception:  # a bug must neither lose the batch nor hold the slot
                self._log(logging.ERROR, "bug", "shipping a batch failed unexpectedly; trying it "
                          "again", exc_info=True)
                if self._delivery.liveness.wait(self._abandon, float(self._settings.retry_max)):
                    return
                continue
            if dead is not None:
                self._acknowledge(shipment, dead)
            return

    def _acknowledge(self, shipment: Shipment, dead: dict[int, str]) -> None:
        """Report each spool batch: its events shipped, but those dead-lettered (by reason)."""
        first = 0
        for batch in shipment.batches:
            last = first + len(batch.records)
            reasons = Tally(dead[i] for i in range(first, last) if i in dead) if dead else Tally()
            shipped = len(batch.records) - sum(reasons.values())
            try:
                self._reader.acknowledge(batch, shipped, tuple(reasons.items()))
            except Exception:
                self._log(logging.ERROR, "ack", "acknowledging a spool batch failed", exc_info=True)
            first = last

    # --- stopping ------------------------------------------------------------------------

    def finish(self) -> None:
        """Stopping: send what is read at once instead of waiting for company."""
        self._finishing.set()

    def caught_up(self) -> bool:
        """After `finish`: everything readable was read, delivered and acknowledged."""
        with self._idle:
            return self._finishing.is_set() and self._read_all and self._busy == 0 \
                and not self._building


    def drain(self, deadline: float) -> bool:
        """Let shipments in delivery finish until `deadline` (a `time.monotonic()` value).

        Call it once `stop` is set (before or after `run` returned). Returns True when
        everything read was delivered and acknowledged; what is left stays in the spool.
        """
        while True:
            with self._idle:
                busy = self._busy
                remaining = deadline - time.monotonic()
                if (busy == 0 and self._run_exited.is_set()) or remaining <= 0:
                    break
                self._idle.wait(min(remaining, _IDLE_WAIT / 5))
        self._abandon.set()
        for _worker in self._workers:
            self._work.put(None)
        if busy:
            log.warning(
                "shutdown: %d bulk requests still unfinished at the deadline; their events stay "
                "in the spool and are shipped after the restart", busy)
        return busy == 0
