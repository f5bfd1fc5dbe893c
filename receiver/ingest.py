"""From received messages to spooled events: parse, stamp the sender, pack, append.

Listeners hand over whole batches (one socket drain, one TCP read), so every cost here that is
not per message is paid once per batch: one lock, one spool write, one metric update each.
An event counts as accepted once `SpoolWriter.append` took it; what the spool refuses under its
`when_full` policy is counted as dropped by the spool itself; what the listener still holds
when the process stops is counted here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Sequence
from typing import Any

import msgpack
import orjson

from receiver.event import PAYLOAD_VERSION, encode_event
from receiver.metrics import Metrics
from receiver.parse import TAG_FAILURE, Parser
from receiver.spool import SpoolWriter

log = logging.getLogger(__name__)

SOURCE_FIELD = "log.source.address"


class Ingest:
    """Parses message batches and appends them to the spool; safe to call from any thread."""

    def __init__(self, parser: Parser, writer: SpoolWriter, metrics: Metrics, *, block: bool) -> None:
        self._parser = parser
        self._block = block
        self._writer = writer
        self._metrics = metrics
        self._lock = threading.Lock()
        self._packer = msgpack.Packer()
        self.stopping = threading.Event()
        self._received: dict[str, tuple[Any, Any]] = {}
        self._parsed: dict[str, Any] = {}

    def accept(
        self, messages: Sequence[bytes], source: str | Sequence[str | None] | None,
        listener: str, transport: str,
    ) -> int:
        """Store a batch; `source` is one sender for the batch or one per message.

        Returns how many events the spool accepted. With `when_full = "block"` this waits for
        room (the caller's socket is not read meanwhile, which is the backpressure).
        """
        if not messages:
            return 0
        now = time.time()
        parse = self._parser.parse
        formats: list[str] = []
        note_format = formats.append
        failures: Tally[str] = Tally()
        one_sender = source is None or isinstance(source, str)
        with self._lock:
            pack = self._packer.pack
            dumps = orjson.dumps
            payloads: list[bytes] = []
            keep = payloads.append
            for i, message in enumerate(messages):
                document = parse(message, now)
                sender = source if one_sender else source[i]  # type: ignore[index]
                if sender is not None:
                    document[SOURCE_FIELD] = sender
                note_format(document.get("haproxy.log_format", "unknown"))
                if "tags" in document and TAG_FAILURE in document["tags"]:
                    failures[str(document.get("error.type", "unknown"))] += 1
                try:
                    # encode_event inline (receiver/event.py owns the layout): one call less
                    keep(pack((PAYLOAD_VERSION, document.get("@timestamp", ""),
                               dumps(document))))
                except (TypeError, ValueError) as error:
                    keep(encode_event(self._unencodable(document, message, error), pack))
            accepted = self._append_all(payloads)
        self._count(messages, listener, transport, Tally(formats), failures)
        return accepted

    def _unencodable(self, document: dict[str, Any], message: bytes, error: Exception) -> dict[str, Any]:
        """A document JSON cannot carry (e.g. an integer beyond 64 bits): keep the line as text."""
        self._metrics.parse_failures.labels("unencodable").inc()
        text = message.decode("utf-8", "backslashreplace")
        return {
            "@timestamp": document.get("@timestamp"),
            "event.original": text,
            "message": text,
            "error.message": f"document could not be encoded as JSON: {error}",
            "tags": [TAG_FAILURE],
        }

    def _append_all(self, payloads: list[bytes]) -> int:
        accepted: int = self._writer.append(payloads)
        while accepted < len(payloads) and self._block:
            if self.stopping.is_set():
                lost = len(payloads) - accepted
                self._metrics.events_dropped.labels("shutdown_spool_full").inc(lost)
                log.error("stopping with a full spool: %d received events could not be spooled", lost)
                break
            if self._writer.wait_for_room(0.5):
                accepted += self._writer.append(payloads[accepted:])
        return accepted

    def _count(self, messages: Sequence[bytes], listener: str, transport: str,
               formats: Tally[str], failures: Tally[str]) -> None:
        m = self._metrics
        received = self._received.get(listener)
        if received is None:  # labels() costs µs per call: once per listener, not per batch
            received = self._received[listener] = (
                m.messages_received.labels(listener, transport),
                m.bytes_received.labels(listener, transport))
        received[0].inc(len(messages))
        received[1].inc(sum(map(len, messages)))
        parsed = self._parsed
        for name, count in formats.items():
            child = parsed.get(name)
            if child is None:
                child = parsed[name] = m.events_parsed.labels(name)
            child.inc(count)
        for reason, count in failures.items():
            m.parse_failures.labels(reason).inc(count)
