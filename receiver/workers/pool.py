"""The parent's side of the parse-and-ship workers: `WorkerPool` starts, supervises, relays and
stops the child processes (receiver/workers/child.py) that read the spool, parse, and ship.

The receiving process (listen → frame → spool append) and its `service.workers` workers (spool
read → parse → bulk requests) share the spool directory and nothing else but a socket pair per
worker carrying the messages of protocol.py: the worker asks for a lease on a segment, reports
each delivered batch and, every `SNAPSHOT_INTERVAL`, what its metrics counted. The ledger (in the
receiving process, spool/ledger.py) answers, keeps the acknowledged prefixes and counts shipped
and dead-lettered events exactly once. One interpreter per process means one GIL each: every
worker can use a core.

Parent side, `WorkerPool`:
- starts each worker as a fresh interpreter (`python -m receiver.workers.child FD`: it inherits
  neither the parent's threads nor the spool's lock file descriptor, only its end of the pair)
  and waits until it reports started (or why it could not start, raised as
  `OutputError`/`SpoolError` as in one process);
- relays each worker's messages to the ledger and its metrics to a `Relayed` collector;
- restarts a worker that died (logged; what it held is leased again from the acknowledged
  prefixes, and the event ids make re-sent documents harmless): at once after a long run, later
  and later after one that could not start or died soon after starting (a crash loop must not
  spin, and a missing worker is always started again);
- at stop, asks every worker to ship what is spooled within the grace period and waits for them.

This module imports neither the shipper nor the HTTP stack: the receiving process never loads
them (the child does, in its own interpreter).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection

from receiver.config import Settings
from receiver.metrics import ReceiverMetrics, Relayed
from receiver.ship.errors import OutputError
from receiver.spool.errors import SpoolError
from receiver.spool.ledger import Lease, Ledger
from receiver.workers import protocol
from receiver.workers.protocol import (
    Acknowledged,
    AskLease,
    Failed,
    Force,
    Granted,
    Released,
    Report,
    Sealed,
    Setup,
    Started,
    Stop,
)

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0
# A worker that ran this long before it died is started again at once; one that died sooner, or
# could not start, after RESTART_DELAYS[0] seconds, doubling up to RESTART_DELAYS[1].
RAN_LONG_ENOUGH = 30.0
RESTART_DELAYS = (0.5, 30.0)
_DRAIN_POLL = 0.05


class _Worker:
    """One worker process as the parent sees it."""

    def __init__(self, number: int, process: subprocess.Popen[bytes], conn: Connection) -> None:
        self.number = number
        self.process = process
        self.conn = conn
        self.send_lock = threading.Lock()
        self.relay: threading.Thread | None = None
        self.started_at = self.last_report = time.monotonic()
        self.loop_silence = 0.0  # how long its shipper loop had not turned, at the last report

    def send(self, message: protocol.ToChild) -> None:
        with self.send_lock, contextlib.suppress(OSError):
            protocol.send(self.conn, message)

    def grant(self, lease: Lease) -> None:
        """The ledger found a segment for this worker, which asked earlier."""
        self.send(Granted(lease))


class WorkerPool:
    """Starts, supervises, relays and stops the workers (parent side)."""

    def __init__(self, settings: Settings, metrics: ReceiverMetrics, ledger: Ledger) -> None:
        self._settings = settings
        self._ledger = ledger
        self._workers: dict[int, _Worker] = {}
        self._stopping = False
        self.restarts = 0
        self._delays: dict[int, tuple[float, float]] = {}  # missing worker: (start it at, delay)
        self._relayed = Relayed()
        metrics.add_collector(self._relayed)
        ledger.on_sealed(self._sealed)

    @property
    def size(self) -> int:
        return int(self._settings.service.workers)

    @property
    def settings(self) -> Settings:
        """The settings the running workers were started with."""
        return self._settings

    def restart(self, settings: Settings, grace: float) -> None:
        """A reload: stop the workers (they ship what they hold within `grace`; the rest is
        shipped again from the acknowledged prefixes) and start them with `settings`; if those
        cannot start (an output refused), the previous ones run again."""
        previous = self._settings
        self.stop(grace, catch_up=False)  # receiving goes on: there is always more to read
        self._stopping = False
        self._settings = settings
        try:
            self.start()
        except Exception as error:
            log.error("reload: workers cannot start with the new configuration (%s); they run "
                      "with the previous one", error)
            self._stopping = False
            self._settings = previous
            try:
                self.start()
            except Exception as again:  # supervise() keeps trying; the spool holds what comes
                self._stopping = False
                log.error("reload: the workers cannot start with the previous configuration "
                          "either (%s); trying again", again)

    def start(self) -> None:
        """Start every worker and wait until each runs; raises what one could not start with."""
        self._delays.clear()
        try:
            for number in range(self.size):
                self._start(number)
        except BaseException:
            self.stop(0.0)
            raise

    def _start(self, number: int) -> None:
        ours, theirs = socket.socketpair()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "receiver.workers.child", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        worker = _Worker(number, process, Connection(ours.detach()))
        worker.send(Setup(self._settings, number))
        self._await_start(worker)
        self._workers[number] = worker
        worker.relay = threading.Thread(target=self._relay, args=(worker,),
                                        name=f"worker-{number}-relay", daemon=True)
        worker.relay.start()
        log.info("worker %d started (pid %d)", number, process.pid)

    def _await_start(self, worker: _Worker) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        conn, process = worker.conn, worker.process
        while time.monotonic() < deadline:
            try:
                message = protocol.receive_in_parent(conn) if conn.poll(0.1) else None
            except (EOFError, OSError):  # it died: its exit status says more than the socket
                break
            if message is None:
                if process.poll() is not None:
                    break
                continue
            if isinstance(message, Started):
                return
            if isinstance(message, Failed):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(5.0)
                conn.close()
                _raise_start_failure(message)
        process.kill()
        process.wait()
        conn.close()
        raise RuntimeError(f"worker {worker.number} did not start (exit status {process.returncode})")

    def _relay(self, worker: _Worker) -> None:
        """Everything a worker says, until it exits."""
        ledger, number = self._ledger, worker.number
        while True:
            try:
                message = protocol.receive_in_parent(worker.conn)
            except (EOFError, OSError):
                return
            match message:
                case Acknowledged(ack):
                    ledger.acknowledge(number, ack)
                case AskLease():  # answered at once: a lease, or None and one comes later
                    worker.send(Granted(ledger.lease(number, worker.grant)))
                case Released(segment, read, offset):
                    ledger.release(number, segment, read, offset)
                case Report(families, loop_silence):
                    if families is not None:  # None: nothing changed since the last
                        self._relayed.update(number, families)
                    worker.last_report, worker.loop_silence = time.monotonic(), loop_silence

    def _sealed(self, worker: object, segment: int, end: int) -> None:
        target = self._workers.get(worker) if isinstance(worker, int) else None
        if target is not None:
            target.send(Sealed(segment, end))

    def alive(self) -> bool:
        return len(self._workers) == self.size and all(
            w.process.poll() is None for w in self._workers.values())

    def supervise(self) -> None:
        """Restart a worker that died or was wedged, and start again one that could not start
        (called periodically by the service's main thread)."""
        if self._stopping:
            return
        for number, worker in list(self._workers.items()):
            if worker.process.poll() is None:
                silent = max(time.monotonic() - worker.last_report, worker.loop_silence)
                # Silent this long, or its shipper loop still this long (it turns at least 4
                # times a second), it is wedged: killed and started again.
                if silent < self._settings.service.worker_stall_timeout:
                    continue
                log.error("worker %d made no progress for %.0f s; killing it", number, silent)
                worker.process.kill()
                worker.process.wait()
            self._forget(worker)
            self.restarts += 1
            if time.monotonic() - worker.started_at >= RAN_LONG_ENOUGH:
                self._delays.pop(number, None)
                when = "restarting it"
            else:
                when = f"starting it again in {self._postpone(number):g} s"
            log.error("worker %d exited unexpectedly (exit status %s); %s; what it held is "
                      "shipped again from the acknowledged prefixes", number,
                      worker.process.returncode, when)
        for number in range(self.size):
            if number in self._workers or time.monotonic() < self._delays.get(number, (0, 0))[0]:
                continue
            try:
                self._start(number)
            except Exception as error:  # keep receiving; the spool holds what comes meanwhile
                log.error("starting worker %d failed: %s; trying again in %g s", number, error,
                          self._postpone(number))

    def _postpone(self, number: int) -> float:
        """The next start of worker `number` waits twice as long as the previous wait."""
        first, longest = RESTART_DELAYS
        previous = self._delays.get(number, (0.0, first / 2))[1]
        delay = min(longest, previous * 2)
        self._delays[number] = (time.monotonic() + delay, delay)
        return delay

    def _forget(self, worker: _Worker) -> None:
        """After the worker's exit: read what it still said, then give back what it held."""
        if worker.relay is not None:
            worker.relay.join(5.0)
        worker.conn.close()
        self._workers.pop(worker.number, None)
        self._relayed.gone(worker.number)
        self._ledger.worker_gone(worker.number)

    def stop(self, grace: float, force: threading.Event | None = None,
             catch_up: bool = True) -> None:
        """Ask every worker to ship what is spooled (`catch_up`; else only what it holds)
        within `grace` seconds, then wait for them."""
        self._stopping = True
        workers = list(self._workers.values())
        deadline = time.monotonic() + grace
        for worker in workers:
            worker.send(Stop(grace, catch_up))
        forced = False
        while any(w.process.poll() is None for w in workers) and time.monotonic() < deadline + 5.0:
            if force is not None and force.is_set() and not forced:
                forced = True
                for worker in workers:
                    worker.send(Force())
            with contextlib.suppress(subprocess.TimeoutExpired):
                workers[0].process.wait(_DRAIN_POLL)
        for worker in workers:
            if worker.process.poll() is None:
                log.warning("worker %d did not stop in time; killing it (its unacknowledged "
                            "events stay in the spool)", worker.number)
                worker.process.kill()
                worker.process.wait()
            self._forget(worker)


def _raise_start_failure(failed: Failed) -> None:
    if failed.kind == "output":
        raise OutputError(failed.message)
    if failed.kind == "spool":
        raise SpoolError(failed.message)
    raise RuntimeError(f"a worker could not start: {failed.message}")
