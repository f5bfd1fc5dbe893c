"""The running receiver: open everything in order, run until a signal, stop in order.

Processes joined by the spool (README, "Process layout"): this one receives and appends raw
messages to the spool; `service.workers` children (receiver/ship/process.py) lease its segments,
parse and ship. Start: spool writer (takes the directory lock, recovers, opens the ledger) →
sockets (bound before any thread starts, so a busy address fails the start) → workers (each
builds its output; a failure there fails the start) → metrics endpoint → listeners. While
running, a worker that died is restarted. Stop (SIGTERM/SIGINT): stop the listeners (they first
read what senders already sent), let the workers deliver what they can, both within
`service.shutdown_grace`, close the spool (what is left stays there for the next start), exit
0. A second signal skips the grace period.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from receiver.config import Settings
from receiver.ingest import Ingest
from receiver.listen import DatagramReader, Listeners, StreamServer, open_listeners, source_filter
from receiver.metrics import CallbackCollector, ReceiverMetrics, serve, udp_socket_drops
from receiver.runtime import tune
from receiver.ship.process import WorkerPool
from receiver.spool import SpoolWriter, collector
from receiver.status import summary_line
from receiver.systemd import ServiceNotifier

log = logging.getLogger(__name__)


class Receiver:
    """Owns every running part; `run()` blocks until a stop signal."""

    def __init__(self, settings: Settings, metrics: ReceiverMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or ReceiverMetrics()
        self.should_exit = threading.Event()
        self.force_exit = threading.Event()  # a second signal: stop without the grace period
        self._readers: list[DatagramReader] = []
        self._streams: StreamServer | None = None
        self._listeners = Listeners()
        self._http: Any = None
        # systemd: READY=1 once listening, STATUS= summary, STOPPING=1, watchdog (receiver/systemd.py)
        self.systemd = ServiceNotifier(lambda: summary_line(self.metrics.registry, self.ready()))

    # --- start ---------------------------------------------------------------------------------
    def start(self) -> None:
        s = self.settings
        self.writer = SpoolWriter(s.spool, self.metrics)
        try:
            self._listeners = open_listeners(s.listen)
            self.shipping = WorkerPool(s, self.metrics, self.writer.ledger)
            self.shipping.start()
            self._start_metrics()
            tune()
            self._start_listeners()
        except BaseException:
            self._listeners.close()
            if hasattr(self, "shipping"):
                self.shipping.stop(0.0)
            self.writer.close()
            raise
        for listener in self._listeners.all():
            log.info("listening on %s", listener.name)
            self.metrics.messages_received.labels(listener.name, listener.transport)  # idle ones too

    def _start_metrics(self) -> None:
        m = self.metrics
        m.add_collector(collector(Path(self.settings.spool.dir), self.writer.ledger))
        m.add_collector(CallbackCollector(lambda: [(
            "udp_receive_drops", "Datagrams the kernel dropped on our UDP sockets (buffer full).",
            float(udp_socket_drops(self._listeners.inodes())))]))
        if self.settings.metrics.listen:
            self._http = serve(m.registry, self.settings.metrics.listen, self.ready)
            log.info("metrics on http://%s/metrics", self.settings.metrics.listen)

    def _start_listeners(self) -> None:
        block = self.settings.spool.when_full == "block"
        self.ingest = Ingest(self.writer, self.metrics, block=block,
                             max_message=self.settings.listen.max_message_bytes)
        wait = self.writer.wait_for_room if block else (lambda _timeout: True)
        allow = source_filter(self.settings.listen)
        for listener in self._listeners.datagram:
            reader = DatagramReader(listener, self.ingest, wait, self.metrics, allow)
            reader.start()
            self._readers.append(reader)
        if self._listeners.stream:
            has_room = self.writer.has_room if block else (lambda: True)
            self._streams = StreamServer(self._listeners.stream, self.settings.listen,
                                         self.ingest, self.metrics, has_room)
            self._streams.start()

    def ready(self) -> tuple[bool, str]:
        """Readiness: the spool accepts events and the workers are alive."""
        if not self.writer.has_room():
            return False, "spool full or not writable"
        if not self.shipping.alive():
            return False, "a worker is not running"
        return True, "ready"

    # --- run and stop --------------------------------------------------------------------------
    def run(self) -> int:
        """Start, wait for SIGTERM/SIGINT, stop gracefully; returns the exit status."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.systemd.starting("starting: opening the spool and binding the listeners")
            self.start()
            self.systemd.ready()
            while not self.should_exit.wait(1.0):
                self.shipping.supervise()
                self.systemd.tick()
            self.systemd.stopping(f"stopping: shipping what is spooled for up to "
                                  f"{self.settings.service.shutdown_grace:g} s")
            self.stop()
        finally:
            self.systemd.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.should_exit.is_set():
            self.force_exit.set()
            log.warning("second %s: stopping without waiting for the shipper", signal.Signals(signum).name)
        self.should_exit.set()

    def stop(self) -> None:
        log.info("stopping: closing listeners")
        # One deadline for the whole stop: the listeners read what the kernel already took
        # from senders (usually milliseconds), the shipper gets the rest of the grace period.
        grace = 0.0 if self.force_exit.is_set() else float(self.settings.service.shutdown_grace)
        deadline = time.monotonic() + grace
        self.ingest.stopping.set()
        for reader in self._readers:
            reader.stop(deadline)
        if self._streams is not None:
            self._streams.stop(deadline, self.force_exit)
        for reader in self._readers:
            reader.join(max(0.0, deadline - time.monotonic()) + 2.0)
        self._listeners.close()
        grace = 0.0 if self.force_exit.is_set() else max(0.0, deadline - time.monotonic())
        self.shipping.stop(grace, self.force_exit)
        if self._http is not None:
            self._http.shutdown()
        self.writer.close()
        log.info("stopped")
