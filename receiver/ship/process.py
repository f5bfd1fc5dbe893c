"""The ship process: spool reader + shipper in a child process, so shipping gets its own core.

The receiving process (listen → parse → spool append) and the shipping process (spool read →
bulk requests → acknowledgements) share nothing but the spool directory: the reader tails the
files the writer appends to and takes no lock, and segment deletion is the reader's alone.
One interpreter per side means one GIL per side: on a 2-core machine each side has a core.

Parent side, `ShipProcess`:
- starts the child as a fresh interpreter (`python -m receiver.ship.process`: it inherits
  neither the parent's threads nor the spool's lock file descriptor, only one end of a socket
  pair carrying pickled messages; no multiprocessing helper processes) and waits until it
  reports started (or why it could not start, raised as `OutputError`/`SpoolError` as in one
  process);
- relays the child's metrics: the child sends a snapshot of its shipping metrics every
  `SNAPSHOT_INTERVAL`, the parent serves the latest through a collector, and the parent's own
  copies of those metrics are unregistered so every name is exposed exactly once
  (`spool_corrupt_records` is the sum of both sides: recovery counts in the parent, reading in
  the child);
- restarts a child that died (logged; the spool keeps everything, the event ids make re-sent
  documents harmless);
- at stop, asks the child to ship what is spooled within the grace period and waits for it.

Child side, `child_main`: builds the spool reader, output and `Shipper` exactly as the one-process
service did, runs the reader loop in a thread, and answers the parent's commands. It ignores
SIGINT/SIGTERM (a signal to the process group is the parent's to handle) and dies with the
parent (PR_SET_PDEATHSIG, and end-of-file on the pipe), so a `kill -9` of the receiver never
leaves an orphan reading the spool beside the next instance.
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
from collections.abc import Iterable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from receiver.config import Settings
from receiver.metrics import Metrics

log = logging.getLogger(__name__)

SNAPSHOT_INTERVAL = 0.5
START_TIMEOUT = 60.0
_PR_SET_PDEATHSIG = 1
_DRAIN_POLL = 0.05
SHIP_NICENESS = 10  # added to the receiving process's niceness


def ship_metrics(metrics: Metrics) -> list[Any]:
    """The metrics the ship process owns (all but `spool_corrupt_records`, which both sides count)."""
    return [
        metrics.events_shipped, metrics.events_retried, metrics.events_dead_lettered,
        metrics.bulk_requests, metrics.bulk_seconds, metrics.bulk_in_flight,
        metrics.bulk_bytes_sent, metrics.output_up,
    ]


def _snapshot(metrics: Metrics) -> tuple[list[Metric], float]:
    families = [family for metric in ship_metrics(metrics) for family in metric.collect()]
    return families, _counter_total(metrics.spool_corrupt_records)


def _counter_total(counter: Any) -> float:
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                return float(sample.value)
    return 0.0


class _Relayed(Collector):
    """Serves the child's latest snapshot in the parent's registry."""

    def __init__(self, metrics: Metrics) -> None:
        self._own_corrupt = metrics.spool_corrupt_records
        self._families, self._child_corrupt = _snapshot(Metrics())  # zeros until the child reports
        self._corrupt_base = 0.0  # what children that exited had counted
        self._bases: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def update(self, families: list[Metric], corrupt: float) -> None:
        self._families, self._child_corrupt = families, corrupt

    def child_restarted(self) -> None:
        """A new child counts from zero: keep the counters monotonic across restarts."""
        self._corrupt_base += self._child_corrupt
        self._child_corrupt = 0.0
        for family in self._families:
            if family.type in ("counter", "histogram"):
                for sample in family.samples:
                    if not sample.name.endswith("_created"):
                        key = (sample.name, tuple(sorted(sample.labels.items())))
                        self._bases[key] = self._bases.get(key, 0.0) + sample.value

    def collect(self) -> Iterable[Metric]:
        bases = self._bases
        for family in self._families:
            if bases and family.type in ("counter", "histogram"):
                family = _shifted(family, bases)
            yield family
        corrupt = next(iter(self._own_corrupt.collect()))
        total = _counter_total(self._own_corrupt) + self._corrupt_base + self._child_corrupt
        corrupt.samples = [
            sample._replace(value=total) if sample.name.endswith("_total") else sample
            for sample in corrupt.samples
        ]
        yield corrupt


def _shifted(family: Metric, bases: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> Metric:
    copy = Metric(family.name, family.documentation, family.type, family.unit)
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for sample in family.samples:
        key = (sample.name, tuple(sorted(sample.labels.items())))
        seen.add(key)
        copy.samples.append(sample._replace(value=sample.value + bases.get(key, 0.0)))
    return copy


class ShipProcess:
    """Starts, supervises, relays and stops the ship process (parent side)."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._settings = settings
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._relay_thread: threading.Thread | None = None
        self._stopping = False
        self.restarts = 0
        for metric in [*ship_metrics(metrics), metrics.spool_corrupt_records]:
            metrics.registry.unregister(metric)
        self._relayed = _Relayed(metrics)
        metrics.add_collector(self._relayed)

    def start(self) -> None:
        """Start the child and wait until it runs; raises what it could not start with."""
        ours, theirs = socket.socketpair()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "receiver.ship.process", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        parent_end = Connection(ours.detach())
        self._process, self._conn = process, parent_end
        parent_end.send(self._settings)
        self._await_start(parent_end, process)
        self._relay_thread = threading.Thread(
            target=self._relay, args=(parent_end,), name="ship-relay", daemon=True
        )
        self._relay_thread.start()
        log.info("ship process started (pid %d)", process.pid)

    def _await_start(self, conn: Connection, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if conn.poll(0.1):
                try:
                    kind, *rest = conn.recv()
                except EOFError:
                    break
                if kind == "started":
                    return
                if kind == "failed":
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(5.0)
                    _raise_start_failure(*rest)
                if kind == "metrics":
                    self._relayed.update(*rest)
            elif process.poll() is not None:
                break
        process.kill()
        process.wait()
        raise RuntimeError(f"the ship process did not start (exit status {process.returncode})")

    def _relay(self, conn: Connection) -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return
            if message[0] == "metrics":
                self._relayed.update(*message[1:])

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def supervise(self) -> None:
        """Restart a child that died (called periodically by the service's main thread)."""
        if self._stopping or self._process is None or self._process.poll() is None:
            return
        log.error("the ship process exited unexpectedly (exit status %s); restarting it; "
                  "spooled events are shipped from the checkpoint", self._process.returncode)
        self._close_conn()
        self._relayed.child_restarted()
        self.restarts += 1
        try:
            self.start()
        except Exception as error:  # keep receiving; try again at the next supervision
            log.error("restarting the ship process failed: %s", error)

    def stop(self, grace: float, force: threading.Event | None = None) -> None:
        """Ask the child to ship what is spooled within `grace` seconds, then wait for it."""
        self._stopping = True
        process, conn = self._process, self._conn
        if process is None or conn is None:
            return
        deadline = time.monotonic() + grace
        forced = False
        with contextlib.suppress(OSError):
            conn.send(("stop", grace))
        while process.poll() is None and time.monotonic() < deadline + 5.0:
            if force is not None and force.is_set() and not forced:
                forced = True
                with contextlib.suppress(OSError):
                    conn.send(("force",))
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(_DRAIN_POLL)
        if process.poll() is None:
            log.warning("the ship process did not stop in time; killing it (its unacknowledged "
                        "events stay in the spool)")
            process.kill()
            process.wait()
        if self._relay_thread is not None:
            self._relay_thread.join(1.0)  # the final snapshot, sent just before it exited
        self._close_conn()

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _raise_start_failure(kind: str, message: str) -> None:
    from receiver.ship.errors import OutputError
    from receiver.spool import SpoolError

    if kind == "output":
        raise OutputError(message)
    if kind == "spool":
        raise SpoolError(message)
    raise RuntimeError(f"the ship process could not start: {message}")


# --- child side --------------------------------------------------------------------------------

def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the pipe's end-of-file still stops us
        pass


def child_main(fd: int) -> None:
    """Entry point of the ship process: `fd` is its end of the socket pair."""
    _die_with_parent()
    with contextlib.suppress(OSError):
        # Receiving comes first: a datagram not read in time is lost, an event not yet shipped
        # waits in the spool. When both want the CPU (udp-100k on two cores: 27-28 % -> 17-25 %
        # lost), the ship process yields and catches up afterwards.
        os.nice(SHIP_NICENESS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    conn = Connection(fd)
    if os.getppid() == 1:  # the parent died before PR_SET_PDEATHSIG took effect
        return
    try:
        settings: Settings = conn.recv()
    except EOFError:
        return
    from receiver.logs import setup_logging
    from receiver.runtime import tune

    setup_logging(settings.service.log_level, settings.service.log_format)  # as the parent's
    tune()
    _ChildShipper(settings, conn).run()


class _ChildShipper:
    def __init__(self, settings: Settings, conn: Connection) -> None:
        self._settings = settings
        self._conn = conn
        self._metrics = Metrics()

    def run(self) -> None:
        import sys

        from receiver.ship.errors import OutputError
        from receiver.ship.output import make_output
        from receiver.ship.shipper import Shipper
        from receiver.spool import SpoolError, SpoolReader

        s = self._settings
        try:
            reader = SpoolReader(Path(s.spool.dir), self._metrics)
            output = make_output(s.elasticsearch, self._metrics, sys.stdout.buffer)
            shipper = Shipper(s.elasticsearch, reader, output, self._metrics,
                              dead_letter_path=str(dead_letter_path(s)))
        except OutputError as error:
            self._conn.send(("failed", "output", str(error)))
            return
        except SpoolError as error:
            self._conn.send(("failed", "spool", str(error)))
            return
        except Exception as error:
            log.exception("the ship process could not start")
            self._conn.send(("failed", "other", f"{type(error).__name__}: {error}"))
            return
        stop = threading.Event()
        thread = threading.Thread(target=shipper.run, args=(stop,), name="shipper", daemon=True)
        thread.start()
        self._conn.send(("started",))
        grace = self._serve(thread)
        force = threading.Event()
        deadline = time.monotonic() + grace
        self._ship_what_is_spooled(deadline, thread, force)
        stop.set()
        shipper.drain(0.0 if force.is_set() else deadline)
        thread.join(max(deadline - time.monotonic(), 1.0))
        reader.close()
        self._send_snapshot()

    def _serve(self, thread: threading.Thread) -> float:
        """Send metrics snapshots until the parent says stop; returns the grace period."""
        while True:
            self._send_snapshot()
            try:
                if self._conn.poll(SNAPSHOT_INTERVAL):
                    message = self._conn.recv()
                    if message[0] == "stop":
                        return float(message[1])
            except (EOFError, OSError):  # the parent is gone: nothing left to report to
                return 0.0
            if not thread.is_alive():
                log.error("the shipper thread stopped; exiting so the receiver restarts us")
                raise SystemExit(3)

    def _ship_what_is_spooled(self, deadline: float, thread: threading.Thread,
                              force: threading.Event) -> None:
        from receiver.spool import spool_stats

        directory = Path(self._settings.spool.dir)
        while time.monotonic() < deadline and thread.is_alive():
            if self._forced():
                force.set()
                return
            if spool_stats(directory).events_pending == 0:
                return
            time.sleep(_DRAIN_POLL)
        pending = spool_stats(directory).events_pending
        if pending:
            log.warning("shutdown: %d events stay in the spool and ship after the next start",
                        pending)

    def _forced(self) -> bool:
        try:
            return self._conn.poll(0) and self._conn.recv()[0] == "force"
        except (EOFError, OSError):
            return True

    def _send_snapshot(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(("metrics", *_snapshot(self._metrics)))


def dead_letter_path(settings: Settings) -> Path:
    configured = settings.elasticsearch.dead_letter_file
    return Path(configured) if configured else Path(settings.spool.dir) / "dead-letter.jsonl"


if __name__ == "__main__":
    child_main(int(sys.argv[1]))
