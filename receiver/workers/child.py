"""The child's side of a parse-and-ship worker: `python -m receiver.workers.child FD`.

`child_main` builds its spool reader (talking to the parent's ledger through `RemoteLedger`,
ledger_link.py), output and `Shipper`, runs the shipper in a thread and answers the parent
(receiver/workers/pool.py) in the main thread, in the messages of protocol.py. It ignores
SIGINT/SIGTERM (a signal to the process group is the parent's to handle) and dies with the parent
(PR_SET_PDEATHSIG, and end-of-file on the pipe), so a `kill -9` of the receiver never leaves an
orphan reading the spool beside the next instance.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

from receiver.config import Settings
from receiver.logs import setup_logging
from receiver.metrics import WorkerMetrics
from receiver.parse import compiled
from receiver.runtime import tune
from receiver.ship import nesting
from receiver.ship.dead_letter import dead_letter_path
from receiver.ship.errors import OutputError
from receiver.ship.output import Output, make_output
from receiver.ship.shipper import Shipper
from receiver.spool import SpoolError, SpoolReader
from receiver.workers import protocol
from receiver.workers.ledger_link import RemoteLedger
from receiver.workers.protocol import SNAPSHOT_INTERVAL, Failed, Force, Report, Setup, Started, Stop

if TYPE_CHECKING:
    from receiver.kafka.producer import Forwarder

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_DRAIN_POLL = 0.05
WORKER_NICENESS = 10  # added to the receiving process's niceness


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
        setup = protocol.receive_in_child(conn)
    except (EOFError, OSError):
        return
    if not isinstance(setup, Setup):
        raise protocol.ProtocolError(f"a worker's first message was {setup!r}, not its setup")
    settings, number = setup.settings, setup.number
    setup_logging(settings.service.log_level, settings.service.log_format)  # as the parent's
    tune()
    _Child(settings, number, conn).run()


def _say_what_was_not_built(number: int) -> None:
    """The compiled parts of the hot path are optional at install: say which are missing."""
    missing = [source for source, built in (("receiver/parse/_whole.c", compiled.COMPILED),
                                             ("receiver/ship/_nested.c", nesting.COMPILED))
               if not built]
    if missing:
        log.info("worker %d runs without %s (not built at install: no C compiler or Python "
                 "headers there): the same documents, ~1-2 µs of CPU an event more each",
                 number, " and ".join(missing))


class _Child:
    def __init__(self, settings: Settings, number: int, conn: Connection) -> None:
        self._settings = settings
        self._number = number
        self._conn = conn
        self._ledger = RemoteLedger(conn)
        self._metrics = WorkerMetrics()
        self._forced = threading.Event()
        self._shipper: Shipper | Forwarder | None = None
        self._last_values: list[float] = []

    def run(self) -> None:
        s = self._settings
        output: Output | None = None
        try:
            reader = SpoolReader(Path(s.spool.dir), self._ledger)
            shipper: Shipper | Forwarder
            if s.kafka.bootstrap_servers:  # the worker tier ships; here the spool goes to Kafka
                from receiver.kafka.producer import Forwarder

                shipper = Forwarder(s, reader, self._metrics, str(dead_letter_path(s)))
            else:
                output = make_output(s.elasticsearch, self._metrics, sys.stdout.buffer)
                shipper = Shipper(s.elasticsearch, reader, output, self._metrics,
                                  str(dead_letter_path(s)), s.parse)
                _say_what_was_not_built(self._number)
        except OutputError as error:
            protocol.send(self._conn, Failed("output", str(error)))
            return
        except SpoolError as error:
            protocol.send(self._conn, Failed("spool", str(error)))
            return
        except Exception as error:
            log.exception("worker %d could not start", self._number)
            protocol.send(self._conn, Failed("other", f"{type(error).__name__}: {error}"))
            return
        self._shipper = shipper
        self._ledger.send(Started())  # before the shipper asks for its first lease
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
        if output is not None:
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
                    message = protocol.receive_in_child(self._conn)
                    if isinstance(message, Stop):
                        return message.grace, message.catch_up
                    self._news(message)
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
                message = protocol.receive_in_child(self._conn)
                if isinstance(message, Force):
                    self._forced.set()
                else:
                    self._news(message)
        except (EOFError, OSError):
            self._forced.set()

    def _news(self, message: protocol.ToChild) -> None:
        """A lease or a seal for the reader; anything else (a stop repeated while draining, a
        `Force` before the stop) changes nothing."""
        if isinstance(message, protocol.Granted | protocol.Sealed):
            self._ledger.on_message(message)

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
            self._ledger.send(Report(families if changed else None, silence))


if __name__ == "__main__":
    child_main(int(sys.argv[1]))
