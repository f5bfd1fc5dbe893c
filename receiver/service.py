"""The running receiver: open everything in order, run until a signal, stop in order.

Processes joined by the spool (README, "Process layout"): this one receives and appends raw
messages to the spool; `service.workers` children (receiver/workers/) lease its segments,
parse and ship. Start: spool writer (takes the directory lock, recovers, opens the ledger) →
sockets (bound before any thread starts, so a busy address fails the start) → workers (each
builds its output; a failure there fails the start) → metrics endpoint → listeners. While
running, a worker that died or wedged is restarted. Reload (SIGHUP): the configuration is read
again; an invalid one is refused and the running one kept; listeners, allowlist, limits, TLS,
logging, parsing, Elasticsearch and batching change live (listeners the new file still names
keep their sockets and connections; workers are restarted, and what they held is shipped again
from the acknowledged prefixes, recognised by its ids); `spool.*` and `metrics.*` need a
restart, which is logged. Stop (SIGTERM/SIGINT): stop the listeners (they first read what
senders already sent), let the workers deliver what they can, both within
`service.shutdown_grace`, close the spool (what is left stays there for the next start), exit
0. A second signal skips the grace period.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from receiver.config import ConfigError, ListenSettings, Settings, redacted
from receiver.ingest import Ingest
from receiver.listen import (
    DatagramReader,
    Listener,
    ListenError,
    Listeners,
    StreamServer,
    open_listeners,
    source_filter,
    tls_context,
)
from receiver.logs import setup_logging
from receiver.metrics import CallbackCollector, ReceiverMetrics, bind_http, udp_socket_drops
from receiver.runtime import tune
from receiver.spool import SpoolWriter, collector
from receiver.status import summary_line
from receiver.systemd import ServiceNotifier
from receiver.workers.pool import WorkerPool

log = logging.getLogger(__name__)

_RESTART_ONLY = ("spool", "metrics")  # sections a reload cannot change
# How long a reload waits for the stream listeners' loop to take a `[listen]` change. It takes
# it in milliseconds, unless a connection's batch is waiting for room in a full spool (`block`):
# then the change completes when the loop goes on, and the reload does not wait for that.
RECONFIGURE_WAIT = 2.0


@dataclasses.dataclass
class _PendingListen:
    """A `[listen]` change the stream listeners' loop has not taken yet."""

    future: concurrent.futures.Future[None]
    opened: Listeners
    kept: set[int]
    settings: ListenSettings


class Receiver:
    """Owns every running part; `run()` blocks until a stop signal."""

    def __init__(self, settings: Settings, metrics: ReceiverMetrics | None = None,
                 loader: Callable[[], Settings] | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or ReceiverMetrics()
        self._loader = loader  # reads the configuration again (SIGHUP); None: no reload
        self._reload = threading.Event()
        self.should_exit = threading.Event()
        self.force_exit = threading.Event()  # a second signal: stop without the grace period
        self._readers: list[DatagramReader] = []
        self._streams: StreamServer | None = None
        self._listeners = Listeners()
        self._pending_listen: _PendingListen | None = None
        self._applied_listen = settings.listen  # what the running listeners were opened with
        self._http: Any = None
        self._serving_http = False
        # systemd: READY=1 once listening, STATUS= summary, STOPPING=1, watchdog (receiver/systemd.py)
        self.systemd = ServiceNotifier(lambda: summary_line(self.metrics.registry, self.ready()))

    # --- start ---------------------------------------------------------------------------------
    def start(self) -> None:
        s = self.settings
        self.writer = SpoolWriter(s.spool, self.metrics)
        try:
            self._listeners = open_listeners(s.listen)
            self._bind_metrics()
            self.shipping = WorkerPool(s, self.metrics, self.writer.ledger)
            self.shipping.start()
            self._start_metrics()
            tune()
            self._start_listeners()
        except BaseException:
            self._listeners.close()
            if self._http is not None and not self._serving_http:
                self._http.server_close()
                self._http = None
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
        if self._http is not None:
            threading.Thread(target=self._http.serve_forever, name="metrics-http", daemon=True).start()
            self._serving_http = True
            log.info("metrics on http://%s/metrics", self.settings.metrics.listen)

    def _bind_metrics(self) -> None:
        listen = self.settings.metrics.listen
        if not listen:
            return
        try:
            self._http = bind_http(self.metrics.registry, listen, self.ready)
        except OSError as error:
            raise ListenError(f"metrics.listen = {listen!r}: cannot listen: {error.strerror}") from None

    def _start_listeners(self) -> None:
        block = self.settings.spool.when_full == "block"
        self.ingest = Ingest(self.writer, self.metrics, block=block,
                             max_message=self.settings.listen.max_message_bytes)
        self._start_readers(self._listeners.datagram, self.settings.listen)
        if self._listeners.stream:
            self._start_streams(self._listeners, self.settings.listen)

    def _start_readers(self, listeners: list[Listener], settings: ListenSettings) -> None:
        block = self.settings.spool.when_full == "block"
        wait = self.writer.wait_for_room if block else (lambda _timeout: True)
        allow = source_filter(settings)
        for listener in listeners:
            reader = DatagramReader(listener, self.ingest, wait, self.metrics, allow)
            reader.heartbeat = self.systemd.watchdog.heartbeat(listener.name)
            self.ingest.heartbeats.append(reader.heartbeat)
            reader.start()
            self._readers.append(reader)

    def _start_streams(self, listeners: Listeners, settings: ListenSettings) -> None:
        has_room = self.writer.has_room if self.settings.spool.when_full == "block" else (lambda: True)
        self._streams = StreamServer(listeners.stream, settings, self.ingest, self.metrics, has_room)
        self._streams.heartbeat = self.systemd.watchdog.heartbeat("stream listeners")
        self.ingest.heartbeats.append(self._streams.heartbeat)
        self._streams.start()

    def ready(self) -> tuple[bool, str]:
        """Readiness: the spool accepts events and the workers are alive."""
        if not self.writer.has_room():
            return False, "spool full or not writable"
        if not self.shipping.alive():
            return False, "a worker is not running"
        if self.settings.kafka.bootstrap_servers and self.metrics.registry.get_sample_value(
                "haproxy_receiver_kafka_up") == 0:  # relayed from the producing workers
            return False, "Kafka unreachable for longer than kafka.unreachable_after"
        return True, "ready"

    # --- run and stop --------------------------------------------------------------------------
    def run(self) -> int:
        """Start, wait for SIGTERM/SIGINT, stop gracefully; returns the exit status."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hangup)
        try:
            self.systemd.starting("starting: opening the spool and binding the listeners")
            self.start()
            self.systemd.ready()
            while not self.should_exit.wait(0.25):
                if self._reload.is_set():
                    self._reload.clear()
                    self.reload()
                self._finish_pending_listen()
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

    def _on_hangup(self, signum: int, frame: FrameType | None) -> None:
        self._reload.set()

    # --- reload ----------------------------------------------------------------------------------
    def reload(self) -> None:
        """Read the configuration again and apply what changed (see the module docstring)."""
        if self._loader is None:
            log.warning("reload: this instance was started without a configuration to read again")
            return
        log.info("reload: reading the configuration again")
        try:
            new = self._loader()
        except ConfigError as error:
            log.error("reload: the new configuration is refused, the running one stays: %s", error)
            return
        old = self.settings
        fixed = [f"{section}.{name}" for section in _RESTART_ONLY
                 for name, value in dataclasses.asdict(getattr(new, section)).items()
                 if value != dataclasses.asdict(getattr(old, section))[name]]
        if fixed:
            log.warning("reload: %s change only at a restart; the running values stay",
                        ", ".join(fixed))
            new = dataclasses.replace(new, **{section: getattr(old, section)
                                              for section in _RESTART_ONLY})
        if new == old:
            log.info("reload: nothing else changed")
            return
        self.systemd.reloading()
        try:
            self._apply(old, new)
        finally:
            self.systemd.ready()

    def _apply(self, old: Settings, new: Settings) -> None:
        if (new.service.log_level, new.service.log_format) != (old.service.log_level,
                                                                 old.service.log_format):
            setup_logging(new.service.log_level, new.service.log_format)
        if new.listen != old.listen:
            try:
                self._reload_listeners(new.listen)
            except ListenError as error:
                log.error("reload: the new listeners cannot be used, the running ones stay: %s",
                          error)
                new = dataclasses.replace(new, listen=old.listen)
            except Exception:  # a reload never ends the process
                log.exception("reload: changing the listeners failed; the running ones stay")
                new = dataclasses.replace(new, listen=old.listen)
        workers = (new.parse, new.elasticsearch, new.service.workers, new.kafka)
        if workers != (old.parse, old.elasticsearch, old.service.workers, old.kafka):
            self.shipping.restart(new, float(new.service.shutdown_grace))
            if self.shipping.settings is not new:  # refused: the old workers run again
                new = dataclasses.replace(new, parse=old.parse, elasticsearch=old.elasticsearch,
                                          kafka=old.kafka, service=dataclasses.replace(
                                              new.service, workers=old.service.workers))
        self.settings = new
        changed = [section for section in dataclasses.asdict(new)  # what was not refused
                   if getattr(new, section) != getattr(old, section)]
        log.info("reload: done (%s)", ", ".join(changed) or "nothing changed")
        log.debug("reload: running with %s", redacted(new))

    def _reload_listeners(self, settings: ListenSettings) -> None:
        """New listeners bound, the ones still named kept with their sockets, the rest ended as
        at stop (what their senders already sent is read)."""
        if self._pending_listen is not None:
            raise ListenError("the previous [listen] change still waits for the stream listeners "
                              "(held by a full spool under spool.when_full = block); send SIGHUP "
                              "again once it is applied")
        tls_context(settings)  # refuse an unusable certificate before anything changes
        opened = open_listeners(settings, reuse=self._listeners)
        kept = {id(listener) for listener in opened.all()}
        grace = float(self.settings.service.shutdown_grace)
        deadline = time.monotonic() + grace
        allow = source_filter(settings)
        for reader in list(self._readers):
            if id(reader.listener) in kept:
                reader.allow = allow
                continue
            reader.stop(deadline)
            reader.join(max(0.0, deadline - time.monotonic()) + 2.0)
            if reader.heartbeat is not None:
                self.systemd.watchdog.remove(reader.heartbeat)
                self.ingest.heartbeats.remove(reader.heartbeat)
            self._readers.remove(reader)
        reading = {id(reader.listener) for reader in self._readers}
        self._start_readers([item for item in opened.datagram if id(item) not in reading], settings)
        if self._streams is not None:
            future = self._streams.reconfigure(settings, opened.stream, grace)
            try:
                future.result(RECONFIGURE_WAIT)
            except TimeoutError:
                log.warning("reload: the stream listeners are waiting for room in the spool "
                            "(spool.when_full = block); the [listen] change completes once they "
                            "go on")
                self._pending_listen = _PendingListen(future, opened, kept, settings)
                return
            except BaseException:
                self._close_fresh(opened)
                raise
        elif opened.stream:
            self._start_streams(opened, settings)
        self._swap_listeners(opened, kept, settings)

    def _finish_pending_listen(self) -> None:
        """A `[listen]` change that waited for the stream listeners: complete it once they took
        it (or log why they could not)."""
        pending = self._pending_listen
        if pending is None or not pending.future.done():
            return
        self._pending_listen = None
        error = pending.future.exception()
        if error is not None:
            log.error("reload: the new listeners cannot be used, the running ones stay: %s", error)
            self._close_fresh(pending.opened)
            self.settings = dataclasses.replace(self.settings, listen=self._applied_listen)
            return
        self._swap_listeners(pending.opened, pending.kept, pending.settings)
        log.info("reload: the [listen] change is applied")

    def _close_fresh(self, opened: Listeners) -> None:
        """Close what a failed change bound anew (the running listeners stay)."""
        running = {id(listener) for listener in self._listeners.all()}
        for listener in opened.all():
            if id(listener) not in running:
                listener.close()

    def _swap_listeners(self, opened: Listeners, kept: set[int], settings: ListenSettings) -> None:
        for listener in self._listeners.all():
            if id(listener) not in kept:
                listener.close()
                log.info("reload: stopped listening on %s", listener.name)
        for listener in opened.all():
            if listener not in self._listeners.all():
                log.info("reload: listening on %s", listener.name)
        self._listeners = opened
        self._applied_listen = settings
        self.ingest.max_message = settings.max_message_bytes

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
        self._finish_pending_listen()
        if self._pending_listen is not None:  # the loop never took it: close its sockets too
            self._close_fresh(self._pending_listen.opened)
        self._listeners.close()
        grace = 0.0 if self.force_exit.is_set() else max(0.0, deadline - time.monotonic())
        self.shipping.stop(grace, self.force_exit)
        if self._http is not None:
            self._http.shutdown()
        self.writer.close()
        log.info("stopped")
