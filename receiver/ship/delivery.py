"""Delivering one encoded bulk body until every event in it is delivered or dead-lettered.

Sends through the `Output`, reads its `Classification` (ship/classify.py) and acts on it:
retries what may succeed later (the whole request, or single items) with exponential backoff
and jitter, halves the request on 413, waits slowly on refused credentials or requests (nothing
changes until someone fixes something), and dead-letters what never will be accepted. Returns
which events were dead-lettered and why, so the shipper can report each spool batch's outcome;
gives up only when told to (`abandon`, at shutdown), and then the events stay in the spool.
"""

from __future__ import annotations

import logging
import random
import threading
import time

from receiver.config import ElasticsearchSettings
from receiver.metrics import ShipMetrics
from receiver.ratelimit import RateLimitedLog
from receiver.ship.classify import Classification, ItemOutcome, RequestOutcome
from receiver.ship.dead_letter import DeadLetter, DeadLetters
from receiver.ship.encode import EncodedBatch
from receiver.ship.liveness import Liveness
from receiver.ship.output import Output

log = logging.getLogger(__name__)

# Whole-request answers retried at `retry_max`: log key and what the output did.
_REFUSALS = {
    RequestOutcome.AUTH: ("auth", "refused our credentials"),
    RequestOutcome.REJECTED: ("rejected", "rejected the bulk request"),
}
UNDECODABLE = "undecodable_record"
TOO_LARGE = "request_too_large"


class Delivery:
    """Delivers encoded batches through one output; thread-safe (no state between calls but the
    backoff's random source and the rate-limited log)."""

    def __init__(self, settings: ElasticsearchSettings, output: Output, metrics: ShipMetrics,
                 dead_letters: DeadLetters, abandon: threading.Event,
                 liveness: Liveness | None = None) -> None:
        self._settings = settings
        # Beats at each request's end and through back-offs (see liveness.py).
        self.liveness = liveness or Liveness()
        self._output = output
        self._metrics = metrics
        self._dead_letters = dead_letters
        self._abandon = abandon
        self._log = RateLimitedLog(log)
        self._random = random.Random()

    def deliver(self, encoded: EncodedBatch, payloads: list[bytes]) -> dict[int, str] | None:
        """Deliver every item; returns {record index: reason} of the dead-lettered ones, or None
        when abandoned (nothing of it is to be acknowledged). `payloads[i]` is record i's spool
        payload (kept in the dead-letter file when it could not even be decoded)."""
        dead: dict[int, str] = {}
        if encoded.unencodable:
            letters = [DeadLetter(None, payloads[record], "", doc_id, 0, error_type, reason)
                       for record, error_type, reason, doc_id in encoded.unencodable]
            if not self._dead_letter_or_wait(letters, UNDECODABLE):
                return None
            dead.update((record, UNDECODABLE) for record, *_ in encoded.unencodable)
        pending = list(range(len(encoded)))
        limit = max(1, len(pending))
        attempt = 0
        while pending:
            if self._abandon.is_set():
                return None
            chunk, rest = pending[:limit], pending[limit:]
            result = self._send(encoded.subset(chunk), len(chunk), encoded.request_index)
            outcome = result.request
            if outcome is RequestOutcome.OK:
                retry = self._settle(encoded, chunk, result, dead)
                pending = rest + retry
                if not retry:
                    attempt = 0
                    continue
                self._metrics.events_retried.inc(len(retry))
                self._log(logging.WARNING, "items", "%d of %d events will be retried: %s",
                          len(retry), len(chunk), _first_reason(result, ItemOutcome.RETRY))
                delay = self._backoff(attempt)
            elif outcome is RequestOutcome.TOO_LARGE:
                if len(chunk) > 1:
                    limit = max(1, len(chunk) // 2)
                    log.warning("bulk request too large (HTTP 413): sending %d events at once", limit)
                    continue
                letter = self._letter(encoded, chunk[0], 413, TOO_LARGE, result.message)
                if not self._dead_letter_or_wait([letter], TOO_LARGE):
                    return None
                dead[encoded.records[chunk[0]]] = TOO_LARGE
                pending = rest
                continue
            else:
                self._metrics.events_retried.inc(len(chunk))
                delay = self._whole_request_failed(result, len(chunk), attempt)
            attempt += 1
            if self.liveness.wait(self._abandon, delay):
                return None
        return dead

    def _send(self, body: bytes, items: int, index: str | None) -> Classification:
        metrics = self._metrics
        metrics.bulk_in_flight.inc()
        started = time.perf_counter()
        try:
            result = self._output.send(body, items, index)
        finally:
            metrics.bulk_in_flight.dec()
            self.liveness.beat()
        metrics.bulk_seconds.observe(time.perf_counter() - started)
        metrics.bulk_requests.labels(result.label).inc()
        metrics.output_up.set(1 if result.request is RequestOutcome.OK else 0)
        return result

    def _settle(self, encoded: EncodedBatch, chunk: list[int], result: Classification,
                dead: dict[int, str]) -> list[int]:
        """Dead-letter refused items (noting them in `dead`); returns the items to retry."""
        retry: list[int] = []
        letters: dict[str, list[tuple[int, DeadLetter]]] = {}
        for failure in result.failures:
            item = chunk[failure.index]
            if failure.outcome is ItemOutcome.RETRY:
                retry.append(item)
            else:
                letters.setdefault(failure.error_type, []).append((item, self._letter(
                    encoded, item, failure.status, failure.error_type, failure.reason)))
        for reason, group in letters.items():
            if self._dead_letters.keep([letter for _, letter in group], reason):
                dead.update((encoded.records[item], reason) for item, _ in group)
            else:  # not on disk: keep them in the spool (retried; they are refused again)
                retry += [item for item, _ in group]
        return retry

    def _letter(self, encoded: EncodedBatch, item: int, status: int, error_type: str,
                reason: str) -> DeadLetter:
        return DeadLetter(encoded.document(item), b"", encoded.indices[item], encoded.id(item),
                          status, error_type, reason)

    def _dead_letter_or_wait(self, letters: list[DeadLetter], reason: str) -> bool:
        """Write dead letters, retrying while the file cannot be written (False: abandoned).
        The batch must not be given up: an unacknowledged batch would hold its segment."""
        while not self._dead_letters.keep(letters, reason):
            if self.liveness.wait(self._abandon, float(self._settings.retry_max)):
                return False
        return True

    def _whole_request_failed(self, result: Classification, events: int, attempt: int) -> float:
        refusal = _REFUSALS.get(result.request)
        if refusal is not None:  # no backoff: nothing changes until someone fixes something
            key, what = refusal
            self._log(logging.ERROR, key,
                      "the output %s (HTTP %s): %s; %d events stay in the spool, retrying every "
                      "%.0fs", what, result.status or "-", result.message, events,
                      self._settings.retry_max)
            return float(self._settings.retry_max)
        delay = self._backoff(attempt)
        self._log(logging.WARNING, f"retry-{result.label}",
                  "bulk request of %d events failed (%s%s), retrying in %.2fs", events,
                  result.label, f", HTTP {result.status}: {result.message}" if result.status
                  else f": {result.message}", delay)
        return delay

    def _backoff(self, attempt: int) -> float:
        settings = self._settings
        ceiling = float(settings.retry_max)
        delay: float = min(ceiling, float(settings.retry_initial) * 2.0 ** min(attempt, 30))
        return delay * (0.5 + 0.5 * self._random.random())


def _first_reason(result: Classification, outcome: ItemOutcome | None) -> str:
    for failure in result.failures:
        if outcome is None or failure.outcome is outcome:
            return f"HTTP {failure.status} {failure.error_type}: {failure.reason[:200]}"
    return result.message
