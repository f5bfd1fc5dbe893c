"""The running receiver: open everything in order, run until a signal, stop in order.

Start: spool (takes the directory lock, recovers) → sockets (bound before any thread starts, so
a busy address fails the start) → output (probes Elasticsearch) → metrics endpoint → shipper
→ listeners. Stop (SIGTERM/SIGINT): close the listeners, let the shipper deliver what it can
within `service.shutdown_grace`, close the spool (what is left stays there for the next start),
exit 0. A second signal skips the grace period.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from receiver.config import Settings
from receiver.ingest import Ingest
from receiver.listen import DatagramReader, Listeners, StreamServer, open_listeners, source_filter
from receiver.metrics import CallbackCollector, Metrics, serve, udp_socket_drops
from receiver.parse import Parser
from receiver.ship import Shipper, make_output
from receiver.spool import SpoolReader, SpoolWriter, collector, spool_stats

log = logging.getLogger(__name__)


class Receiver:
    """Owns every running part; `run()` blocks until a stop signal."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.should_exit = threading.Event()
        self.force_exit = False
        self._readers: list[DatagramReader] = []
        self._streams: StreamServer | None = None
        self._listeners = Listeners()
        self._http: Any = None

    # --- start ---------------------------------------------------------------------------------
    def start(self) -> None:
        s = self.settings
        self.writer = SpoolWriter(s.spool, self.metrics)
        try:
            self._listeners = open_listeners(s.listen)
            self.reader = SpoolReader(Path(s.spool.dir), self.metrics)
            self.output = make_output(s.elasticsearch, self.metrics, sys.stdout.buffer)
            self._start_metrics()
            self.shipper = Shipper(s.elasticsearch, self.reader, self.output, self.metrics,
                                   dead_letter_path=str(self._dead_letter_path()))
            self._ship_stop = threading.Event()
            self._ship_thread = threading.Thread(target=self.shipper.run, args=(self._ship_stop,),
                                                 name="shipper", daemon=True)
            self._ship_thread.start()
            self._start_listeners()
        except BaseException:
            self._listeners.close()
            self.writer.close()
            raise
        for listener in self._listeners.all():
            log.info("listening on %s", listener.name)

    def _dead_letter_path(self) -> Path:
        configured = self.settings.elasticsearch.dead_letter_file
        return Path(configured) if configured else Path(self.settings.spool.dir) / "dead-letter.jsonl"

    def _start_metrics(self) -> None:
        m = self.metrics
        m.add_collector(collector(Path(self.settings.spool.dir)))
        m.add_collector(CallbackCollector(lambda: [(
            "udp_receive_drops", "Datagrams the kernel dropped on our UDP sockets (buffer full).",
            float(udp_socket_drops(self._listeners.inodes())))]))
        if self.settings.metrics.listen:
            self._http = serve(m, self.settings.metrics.listen, self.ready)
            log.info("metrics on http://%s/metrics", self.settings.metrics.listen)

    def _start_listeners(self) -> None:
        block = self.settings.spool.when_full == "block"
        self.ingest = Ingest(Parser(self.settings.parse), self.writer, self.metrics, block=block)
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
        """Readiness: the spool accepts events and the shipper is alive."""
        if not self.writer.has_room():
            return False, "spool full or not writable"
        if not self._ship_thread.is_alive():
            return False, "shipper stopped"
        return True, "ready"

    # --- run and stop --------------------------------------------------------------------------
    def run(self) -> int:
        """Start, wait for SIGTERM/SIGINT, stop gracefully; returns the exit status."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            while not self.should_exit.wait(1.0):
                pass
            self.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def _ship_what_is_spooled(self, deadline: float) -> None:
        """Give the shipper until `deadline` to empty the spool (a second signal cuts it short)."""
        directory = Path(self.settings.spool.dir)
        while time.monotonic() < deadline and not self.force_exit and self._ship_thread.is_alive():
            if spool_stats(directory).events_pending == 0:
                return
            time.sleep(0.05)
        pending = spool_stats(directory).events_pending
        if pending:
            log.warning("shutdown: %d events stay in the spool and ship after the next start", pending)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.should_exit.is_set():
            self.force_exit = True
            log.warning("second %s: stopping without waiting for the shipper", signal.Signals(signum).name)
        self.should_exit.set()

    def stop(self) -> None:
        log.info("stopping: closing listeners")
        self.ingest.stopping.set()
        for reader in self._readers:
            reader.stop()
        if self._streams is not None:
            self._streams.stop()
        for reader in self._readers:
            reader.join(2.0)
        self._listeners.close()
        grace = 0.0 if self.force_exit else self.settings.service.shutdown_grace
        deadline = time.monotonic() + grace
        self._ship_what_is_spooled(deadline)
        self._ship_stop.set()
        self.shipper.drain(deadline)
        self._ship_thread.join(max(deadline - time.monotonic(), 1.0))
        if self._http is not None:
            self._http.shutdown()
        self.reader.close()
        self.writer.close()
        log.info("stopped")
