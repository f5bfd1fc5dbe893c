"""The receive path after the socket: received messages become spool records and are appended.

Nothing is parsed here (receiver/parse runs in the workers that ship, behind the spool): a
message is stored as it arrived, with its receive time, sender and listener (receiver/event.py),
so the receiving process only reads, frames and appends (~1-2 µs a message) and a burst waits
in the spool instead of in the kernel's buffers.

Listeners hand over whole batches (one socket drain, one stream read), so every cost that is not
per message is paid once per batch: one lock, one spool write, one metric update each. A message
is counted received before it is appended; it counts as accepted once `SpoolWriter.append` took
it; what the spool refuses under its `when_full` policy is counted dropped by the spool itself;
what the listener still holds when the process stops is counted here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from receiver.event import FrameEncoder, Peer
from receiver.metrics import ReceiverMetrics
from receiver.spool import SpoolWriter
from receiver.systemd import Heartbeat

log = logging.getLogger(__name__)


class Ingest:
    """Appends message batches to the spool; safe to call from any thread."""

    def __init__(self, writer: SpoolWriter, metrics: ReceiverMetrics, *, block: bool,
                 max_message: int = 64 * 1024) -> None:
        self._block = block
        self.max_message = max_message  # listen.max_message_bytes (a reload changes it)
        self._writer = writer
        self._metrics = metrics
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._encoders: dict[str, FrameEncoder] = {}
        # The receive loops' watchdog heartbeats: waiting for room under `block` is how a full
        # spool pushes back, not a wedged loop, so the wait keeps them beating.
        self.heartbeats: list[Heartbeat] = []
        self._received: dict[str, tuple[Any, Any]] = {}

    def accept(self, messages: Sequence[bytes], peers: Peer | list[Peer], listener: str,
               transport: str, cut: frozenset[int] = frozenset()) -> int:
        """Store a batch; `peers` is one (address, port) for the batch (a stream connection) or a
        list of one per message (datagrams); `cut` holds the indexes of messages the listener cut.

        Returns how many the spool accepted. With `when_full = "block"` this waits for room
        (the caller's socket is not read meanwhile, which is the backpressure).
        """
        if not messages:
            return 0
        self._count(messages, listener, transport)
        if max(map(len, messages)) > self.max_message:
            messages, cut = self._cut(messages, listener, cut)
        now = time.time()
        with self._lock:
            encoder = self._encoders.get(listener)
            if encoder is None:
                encoder = self._encoders[listener] = FrameEncoder(listener)
            if isinstance(peers, list):
                payloads = encoder.encode_each(messages, now, peers, cut)
            else:
                payloads = encoder.encode(messages, now, peers, cut)
            return self._append_all(payloads)

    def _cut(self, messages: Sequence[bytes], listener: str,
             cut: frozenset[int]) -> tuple[list[bytes], frozenset[int]]:
        """Messages longer than `listen.max_message_bytes` (a datagram: streams are cut by their
        framer) are cut to it and flagged, so one message costs at most that much anywhere."""
        limit = self.max_message
        long = {i for i, message in enumerate(messages) if len(message) > limit}
        self._metrics.messages_truncated.labels(listener).inc(len(long))
        return [m[:limit] if i in long else m for i, m in enumerate(messages)], cut | long

    def _append_all(self, payloads: list[bytes]) -> int:
        accepted: int = self._writer.append(payloads)
        while accepted < len(payloads) and self._block:
            if self.stopping.is_set():
                lost = len(payloads) - accepted
                self._metrics.events_dropped.labels("shutdown_spool_full").inc(lost)
                log.error("stopping with a full spool: %d received events could not be spooled", lost)
                break
            for heartbeat in self.heartbeats:
                heartbeat.beat()
            if self._writer.wait_for_room(0.5):
                accepted += self._writer.append(payloads[accepted:])
        return accepted

    def _count(self, messages: Sequence[bytes], listener: str, transport: str) -> None:
        received = self._received.get(listener)
        if received is None:  # labels() costs µs per call: once per listener, not per batch
            received = self._received[listener] = (
                self._metrics.messages_received.labels(listener, transport),
                self._metrics.bytes_received.labels(listener, transport))
        received[0].inc(len(messages))
        received[1].inc(sum(map(len, messages)))
