"""`import --workers N`: N processes share the units of an import (files, and pieces of large
plain files), each with its own source, shipper and connections, as one process would.

A process is one interpreter with one GIL: parsing and encoding, most of an import's work,
then use N cores. The units are handed out in order from one list through a shared counter (a
process that finishes a unit takes the next), so a few large files keep every process busy
to the end. Each process reports its tallies twice a second and when done; the parent sums
them for the progress line and the summary. Processes are started fresh (`spawn`: nothing of
the parent's state but the settings and the units), ignore SIGINT (the parent asks them to
stop), and die with the parent (PR_SET_PDEATHSIG): a `kill -9` of the import leaves none
behind, and a rerun finishes the work exactly once.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import queue
import signal
import time
from multiprocessing.sharedctypes import Synchronized
from typing import Any, TextIO

from receiver.config import Settings
from receiver.importer.plan import Plan
from receiver.importer.report import Progress, Totals, exit_status, summary
from receiver.importer.run import INTERRUPT_GRACE, CannotImport, Import
from receiver.importer.source import FileTally, Unit
from receiver.ship.dead_letter import dead_letter_path

REPORT_INTERVAL = 0.5
_PR_SET_PDEATHSIG = 1
# (kind, worker, tallies, delivered, existing, detail)
Report = tuple[str, int, dict[int, FileTally], int, int, str]


def run_workers(settings: Settings, plan: Plan, options: Any, err: TextIO, terminal: bool) -> int:
    context = multiprocessing.get_context("spawn")
    units = plan.units(options.workers, options.piece_bytes)
    counter = context.Value("l", 0)
    stop = context.Event()
    reports: multiprocessing.Queue[Report] = context.Queue()
    blank = {number: FileTally(tally.path, tally.size, tally.units)
             for number, tally in plan.tallies.items() if not tally.errors}
    processes = [
        context.Process(target=_child, name=f"import-{number}", daemon=True,
                        args=(settings, units, counter, stop, reports, number, blank,
                              options.since, options.until, os.getpid()))
        for number in range(min(options.workers, max(1, len(units))))
    ]
    started = time.monotonic()
    for process in processes:
        process.start()
    latest: dict[int, tuple[dict[int, FileTally], int, int]] = {}
    finished: set[int] = set()
    failures: list[str] = []
    progress = Progress(err) if terminal else None
    interrupted = False

    def totals() -> tuple[Totals, list[FileTally]]:
        tallies = {number: FileTally(t.path, t.size, t.units, errors=list(t.errors),
                                     finished=t.finished if t.errors else 0)
                   for number, t in plan.tallies.items()}
        delivered = existing = 0
        for worker_tallies, worker_delivered, worker_existing in latest.values():
            delivered += worker_delivered
            existing += worker_existing
            for number, tally in worker_tallies.items():
                tallies[number].add(tally)
        values = list(tallies.values())
        return Totals.of(values, delivered, existing), values

    try:
        while len(finished) < len(processes):
            try:
                report = reports.get(timeout=0.1)
            except queue.Empty:
                gone = [n for n, p in enumerate(processes) if not p.is_alive() and n not in finished]
                for number in gone:  # died without a last report (killed)
                    with contextlib.suppress(queue.Empty):
                        while True:  # its last words may still be in the pipe
                            _take(reports.get(timeout=0.2), latest, finished, failures)
                    if number not in finished:
                        finished.add(number)
                        failures.append(f"worker {number} exited with status "
                                        f"{processes[number].exitcode}")
                        interrupted = True
            else:
                _take(report, latest, finished,
                      failures)
            if progress is not None and latest:
                progress.update(totals()[0])
    except KeyboardInterrupt:
        interrupted = True
        stop.set()
        deadline = time.monotonic() + INTERRUPT_GRACE + 5.0
        while len(finished) < len(processes) and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                _take(reports.get(timeout=0.1), latest, finished, failures)
    for process in processes:
        process.join(1.0)
        if process.is_alive():
            process.kill()
    if progress is not None:
        if latest:
            progress.update(totals()[0], force=True)
        progress.close()
    final, files = totals()
    for failure in dict.fromkeys(failures):  # the same refusal from every worker: once
        err.write(f"haproxy-receiver: import: {failure}\n")
    if failures and not latest:
        return 1
    interrupted = interrupted or bool(failures)
    err.write(summary(files, final, time.monotonic() - started, interrupted=interrupted,
                      dead_letter_file=str(dead_letter_path(settings))) + "\n")
    return exit_status(final, interrupted)


def _take(report: Report, latest: dict[int, tuple[dict[int, FileTally], int, int]],
          finished: set[int], failures: list[str]) -> None:
    kind, worker, tallies, delivered, existing, detail = report
    if kind == "failed":
        failures.append(detail)
        finished.add(worker)
        return
    latest[worker] = (tallies, delivered, existing)
    if kind == "done":
        finished.add(worker)
        if detail:
            failures.append(f"worker {worker}: {detail}")


def _child(settings: Settings, units: list[Unit], counter: Synchronized[int], stop: Any,
           reports: multiprocessing.Queue[Report], number: int,
           tallies: dict[int, FileTally], since: str | None, until: str | None,
           parent: int) -> None:
    import threading

    from receiver.logs import setup_logging

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent asks us to stop
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before we asked to die with it
        return
    setup_logging(settings.service.log_level, settings.service.log_format)

    def next_unit() -> Unit | None:
        with counter.get_lock():
            index = counter.value
            if index >= len(units):
                return None
            counter.value = index + 1
        return units[index]

    try:
        job = Import(settings, next_unit, tallies, since=since, until=until)
    except CannotImport as error:
        reports.put(("failed", number, {}, 0, 0, str(error)))
        return
    halt = threading.Event()
    next_report = 0.0

    def tick() -> None:
        nonlocal next_report
        if stop.is_set():
            halt.set()
        now = time.monotonic()
        if now >= next_report:
            next_report = now + REPORT_INTERVAL
            reports.put(("progress", number, _touched(tallies), job.output.delivered,
                         job.output.existing, ""))

    job.run(halt, tick)
    reports.put(("done", number, _touched(tallies), job.output.delivered, job.output.existing,
                 "interrupted" if job.interrupted else ""))
    reports.close()
    reports.join_thread()


def _touched(tallies: dict[int, FileTally]) -> dict[int, FileTally]:
    """The tallies this process counted something in (what it reports)."""
    return {number: tally for number, tally in tallies.items()
            if tally.consumed or tally.lines or tally.finished or tally.errors or tally.blank}
