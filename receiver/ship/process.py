"""Parse-and-ship workers: child processes that read the spool, parse, and ship.

The receiving process (listen → frame → spool append) and its `service.workers` workers (spool
read → parse → bulk requests) share the spool directory and nothing else but a socket pair per
worker carrying small pickled messages: the worker asks for a lease on a segment, reports each
delivered batch and, every `SNAPSHOT_INTERVAL`, what its metrics counted. The ledger (in the
receiving process, spool/ledger.py) answers, keeps the acknowledged prefixes and counts shipped
and dead-lettered events exactly once. One interpreter per process means one GIL each: every
worker can use a core.

Parent side, `WorkerPool`:
- starts each worker as a fresh interpreter (`python -m receiver.ship.process FD`: it inherits
  neither the parent's threads nor the spool's lock file descriptor, only its end of the pair)
  and waits until it reports started (or why it could not start, raised as
  `OutputError`/`SpoolError` as in one process);
- relays each worker's messages to the ledger and its metrics to a `Relayed` collector;
- restarts a worker that died (logged; what it held is leased again from the acknowledged
  prefixes, and the event ids make re-sent documents harmless): at once after a long run, later
  and later after one that could not start or died soon after starting (a crash loop must not
  spin, and a missing worker is always started again);
- at stop, asks every worker to ship what is spooled within the grace period and waits for them.

Child side, `child_main`: builds its spool reader, output and `Shipper`, runs the shipper in a
thread and answers the parent in the main thread. It ignores SIGINT/SIGTERM (a signal to the
process group is the parent's to handle) and dies with the parent (PR_SET_PDEATHSIG, and
end-of-file on the pipe), so a `kill -9` of the receiver never leaves an orphan reading the spool
beside the next instance.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from receiver.config import Settings
from receiver.metrics import ReceiverMetrics, Relayed, WorkerMetrics
from receiver.spool.ledger import Ack, Lease, Ledger
from receiver.spool.reader import LeaseNews

if TYPE_CHECKING:
    from receiver.ship.shipper import Shipper

log = logging.getLogger(__name__)

SNAPSHOT_INTERVAL = 1.0  # a scrape every 15 s or more sees at most this much lag
START_TIMEOUT = 60.0
# A worker silent this long, or whose shipper loop has not turned for this long (it turns at
# least 4 times a second), is wedged: it is killed and started again.
WEDGED_AFTER = 60.0
# A worker that ran this long before it died is started again at once; one that died sooner, or
# could not start, after RESTART_DELAYS[0] seconds, doubling up to RESTART_DELAYS[1].
RAN_LONG_ENOUGH = 30.0
RESTART_DELAYS = (0.5, 30.0)
_PR_SET_PDEATHSIG = 1
_DRAIN_POLL = 0.05
WORKER_NICENESS = 10  # added to the receiving process's niceness


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

    def send(self, message: tuple[Any, ...]) -> None:
        with self.send_lock, contextlib.suppress(OSError):
            self.conn.send(message)

    def grant(self, lease: Lease) -> None:
        """The ledger found a segment for this worker, which asked earlier."""
        self.send(("lease", lease))


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
                [sys.executable, "-m", "receiver.ship.process", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        worker = _Worker(number, process, Connection(ours.detach()))
        worker.send((self._settings, number))
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
                message = conn.recv() if conn.poll(0.1) else None
            except (EOFError, OSError):  # it died: its exit status says more than the socket
                break
            if message is None:
                if process.poll() is not None:
                    break
                continue
            kind, *rest = message
            if kind == "started":
                return
            if kind == "failed":
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(5.0)
                conn.close()
                _raise_start_failure(*rest)
        process.kill()
        process.wait()
        conn.close()
        raise RuntimeError(f"worker {worker.number} did not start (exit status {process.returncode})")

    def _relay(self, worker: _Worker) -> None:
        """Everything a worker says, until it exits."""
        ledger, number = self._ledger, worker.number
        while True:
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                return
            kind = message[0]
            if kind == "ack":
                ledger.acknowledge(number, message[1])
            elif kind == "lease":  # answered at once: a lease, or None and one comes later
                worker.send(("lease", ledger.lease(number, worker.grant)))
            elif kind == "release":
                ledger.release(number, *message[1:])
            elif kind == "metrics":
                if message[1] is not None:  # None: nothing changed since the last
                    self._relayed.update(number, message[1])
                worker.last_report, worker.loop_silence = time.monotonic(), message[2]

    def _sealed(self, worker: object, segment: int, end: int) -> None:
        target = self._workers.get(worker) if isinstance(worker, int) else None
        if target is not None:
            target.send(("sealed", segment, end))

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
                if silent < WEDGED_AFTER:
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
            worker.send(("stop", grace, catch_up))
        forced = False
        while any(w.process.poll() is None for w in workers) and time.monotonic() < deadline + 5.0:
            if force is not None and force.is_set() and not forced:
                forced = True
                for worker in workers:
                    worker.send(("force",))
            with contextlib.suppress(subprocess.TimeoutExpired):
                workers[0].process.wait(_DRAIN_POLL)
        for worker in workers:
            if worker.process.poll() is None:
                log.warning("worker %d did not stop in time; killing it (its unacknowledged "
                            "events stay in the spool)", worker.number)
                worker.process.kill()
                worker.process.wait()
            self._forget(worker)


def _raise_start_failure(kind: str, message: str) -> None:
    from receiver.ship.errors import OutputError
    from receiver.spool import SpoolError

    if kind == "output":
        raise OutputError(message)
    if kind == "spool":
        raise SpoolError(message)
    raise RuntimeError(f"a worker could not start: {message}")


# --- child side --------------------------------------------------------------------------------

class RemoteLedger(LeaseNews):
    """The worker's `LedgerClient` (spool/reader.py): the ledger is in the parent, across the
    socket pair. Leases and seals arrive in the worker's main thread (`on_message`)."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self._conn = conn
        self._send_lock = threading.Lock()
        self._asked = False  # a request the parent has not granted yet
        self._answered = False  # ... but answered: it grants one later

    def send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            self._conn.send(message)

    def on_message(self, message: tuple[Any, ...]) -> None:
        if message[0] == "sealed":
            self.sealed(message[1], message[2])
        elif message[0] == "lease":
            with self._news:
                if message[1] is None:
                    self._answered = True
                else:
                    self._granted.append(message[1])
                    self._asked = False
                self._news.notify_all()

    def lease(self) -> Lease | None:
        with self._news:
            if self._granted:
                return self._granted.pop(0)
            if self._asked:
                return None
            self._asked, self._answered = True, False
        self.send(("lease",))
        with self._news:  # the parent answers at once
            self._news.wait_for(lambda: bool(self._granted) or self._answered, 5.0)
            return self._granted.pop(0) if self._granted else None

    def acknowledge(self, ack: Ack) -> None:
        self.send(("ack", ack))

    def release(self, segment: int, read: int, offset: int) -> None:
        self._forget(segment)
        self.send(("release", segment, read, offset))


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the pipe's end-of-file still stops us
        pass


def child_main(fd: int) -> None:
    """Entry point of a worker process: `fd` is its end of the socket pair."""
    _die_with_parent()
    with contextlib.suppress(OSError):
        # Receiving comes first: a datagram not read in time is lost, an event not yet shipped
        # waits in the spool. When both want the CPU, the workers yield and catch up afterwards.
        os.nice(WORKER_NICENESS)
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):  # the receiving process's to handle
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    conn = Connection(fd)
    if os.getppid() == 1:  # the parent died before PR_SET_PDEATHSIG took effect
        return
    try:
        settings, number = conn.recv()
    except EOFError:
        return
    from receiver.logs import setup_logging
    from receiver.runtime import tune

    setup_logging(settings.service.log_level, settings.service.log_format)  # as the parent's
    tune()
    _Child(settings, number, conn).run()


class _Child:
    def __init__(self, settings: Settings, number: int, conn: Connection) -> None:
        self._settings = settings
        self._number = number
        self._conn = conn
        self._ledger = RemoteLedger(conn)
        self._metrics = WorkerMetrics()
        self._forced = threading.Event()
        self._shipper: Shipper | None = None
        self._last_values: list[float] = []

    def run(self) -> None:
        from receiver.ship.errors import OutputError
        from receiver.ship.output import make_output
        from receiver.ship.shipper import Shipper
        from receiver.spool import SpoolError, SpoolReader

        s = self._settings
        try:
            reader = SpoolReader(Path(s.spool.dir), self._ledger)
            output = make_output(s.elasticsearch, self._metrics, sys.stdout.buffer)
            shipper = Shipper(s.elasticsearch, reader, output, self._metrics,
                              str(dead_letter_path(s)), s.parse)
        except OutputError as error:
            self._conn.send(("failed", "output", str(error)))
            return
        except SpoolError as error:
            self._conn.send(("failed", "spool", str(error)))
            return
        except Exception as error:
            log.exception("worker %d could not start", self._number)
            self._conn.send(("failed", "other", f"{type(error).__name__}: {error}"))
            return
        self._shipper = shipper
        self._ledger.send(("started",))  # before the shipper asks for its first lease
        stop = threading.Event()
        thread = threading.Thread(target=shipper.run, args=(stop,), name="shipper", daemon=True)
        thread.start()
        grace, catch_up = self._serve(thread)
        deadline = time.monotonic() + grace
        shipper.finish()
        while catch_up and time.monotonic() < deadline and thread.is_alive() \
                and not self._forced.is_set():
            if shipper.caught_up():
                break
            self._poll(_DRAIN_POLL)
        stop.set()
        shipper.drain(time.monotonic() if self._forced.is_set() else deadline)
        thread.join(max(deadline - time.monotonic(), 1.0))
        reader.close()
        output.close()
        self._send_snapshot()

    def _serve(self, thread: threading.Thread) -> tuple[float, bool]:
        """Answer the parent until it says stop; returns the grace period and whether to ship
        what is spooled (at a stop) or only what is held (a reload)."""
        next_snapshot = 0.0
        while True:
            now = time.monotonic()
            if now >= next_snapshot:
                self._send_snapshot()
                next_snapshot = now + SNAPSHOT_INTERVAL
            try:
                if self._conn.poll(max(0.0, next_snapshot - time.monotonic())):
                    message = self._conn.recv()
                    if message[0] == "stop":
                        return float(message[1]), bool(message[2])
                    self._ledger.on_message(message)
            except (EOFError, OSError):  # the parent is gone: nothing left to report to
                return 0.0, False
            if not thread.is_alive():
                log.error("worker %d: the shipper thread stopped; exiting so the receiver "
                          "restarts us", self._number)
                raise SystemExit(3)

    def _poll(self, timeout: float) -> None:
        """While draining: leases, seals and a `force` still arrive."""
        try:
            if self._conn.poll(timeout):
                message = self._conn.recv()
                if message[0] == "force":
                    self._forced.set()
                else:
                    self._ledger.on_message(message)
        except (EOFError, OSError):
            self._forced.set()

    def _send_snapshot(self) -> None:
        """What the metrics counted, when it changed (an idle worker sends `None`: collecting
        and pickling every family twice a second was most of what an idle worker cost); and
        how long the shipper's loop has been still, always (the parent's wedge watch)."""
        silence = 0.0 if self._shipper is None else self._shipper.stillness()
        families = list(self._metrics.registry.collect())
        values = [sample.value for family in families for sample in family.samples]
        changed = values != self._last_values
        self._last_values = values
        with contextlib.suppress(OSError):
            self._ledger.send(("metrics", families if changed else None, silence))


def dead_letter_path(settings: Settings) -> Path:
    configured = settings.elasticsearch.dead_letter_file
    return Path(configured) if configured else Path(settings.spool.dir) / "dead-letter.jsonl"


if __name__ == "__main__":
    child_main(int(sys.argv[1]))
