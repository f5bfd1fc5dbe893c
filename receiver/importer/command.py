"""`haproxy-receiver import PATH...`: plan, run (one process or `--workers`), report, exit status.

Exit status 0 only when every line of every file is in Elasticsearch: shipped now or already
there. 1 when a file could not be read whole, an event was dead-lettered, or the import was
interrupted (then running the same command again finishes it, exactly once). 2 for a wrong
argument.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO, TextIO
from zoneinfo import ZoneInfo

from receiver.config import Settings
from receiver.event import Received, decode
from receiver.importer.plan import PIECE_BYTES, Plan, make_plan
from receiver.importer.report import Progress, Totals, exit_status, summary
from receiver.importer.run import CannotImport, Import, ImportHook, import_parse_settings
from receiver.importer.source import ImportSource

log = logging.getLogger(__name__)


class UsageError(ValueError):
    """A wrong argument (exit status 2)."""


@dataclass(frozen=True)
class Options:
    paths: list[str]
    since: str | None = None  # `@timestamp` text, UTC, inclusive
    until: str | None = None  # exclusive
    dry_run: bool = False
    workers: int = 1
    progress: bool | None = None  # None: when stderr is a terminal
    piece_bytes: int = PIECE_BYTES  # --workers: the size large plain files are shared out in
    metrics: str = ""  # HOST:PORT serving the import's metrics while it runs


def period_bound(text: str, zone: str, option: str) -> str:
    """`2026-11-01`, `2026-11-01T06:00`, `2026-11-01 06:00:00+01:00`, `...Z` -> the
    `@timestamp` text it stands for (UTC, ms); a time without an offset is in `zone`
    (`parse.timezone`, the zone HAProxy's dates are read in)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a date or time (ISO 8601, e.g. 2026-11-01 or "
                         "2026-11-01T06:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def run_import(settings: Settings, options: Options, stdin: BinaryIO, err: TextIO) -> int:
    plan = make_plan(options.paths)
    if options.workers > 1 and plan.reads_stdin:
        raise UsageError("standard input (`-`) is read by one process: leave out --workers")
    if options.workers > 1 and options.metrics:
        raise UsageError("--metrics serves one process's counters: leave out --workers")
    terminal = err.isatty() if options.progress is None else options.progress
    if options.dry_run:
        return _dry_run(settings, plan, options, stdin, err)
    if options.workers > 1:
        from receiver.importer.workers import run_workers

        return run_workers(settings, plan, options, err, terminal)
    units = iter(plan.units())
    started = time.monotonic()
    try:
        job = Import(settings, lambda: next(units, None), plan.tallies, stdin=stdin,
                     since=options.since, until=options.until)
    except CannotImport as error:
        err.write(f"haproxy-receiver: import: {error}\n")
        return 1
    progress = Progress(err) if terminal else None
    server = None
    if options.metrics:
        from receiver.metrics import serve

        try:
            server = serve(job.metrics.registry, options.metrics, lambda: (True, "importing"))
        except (OSError, ValueError) as error:
            err.write(f"haproxy-receiver: import: --metrics {options.metrics}: {error}\n")
            return 2

    def totals() -> Totals:
        return Totals.of(plan.tallies.values(), job.output.delivered, job.output.existing)

    def tick() -> None:
        if progress is not None:
            progress.update(totals())

    stop = threading.Event()
    try:
        job.run(stop, tick)
    except KeyboardInterrupt:
        job.interrupted = True
    if server is not None:
        server.shutdown()
        server.server_close()
    if progress is not None:
        progress.update(totals(), force=True)
        progress.close()
    final = totals()
    err.write(summary(list(plan.tallies.values()), final, time.monotonic() - started,
                      interrupted=job.interrupted,
                      dead_letter_file=str(job.dead_letter_path)) + "\n")
    return exit_status(final, job.interrupted)


def _dry_run(settings: Settings, plan: Plan, options: Options, stdin: BinaryIO,
             err: TextIO) -> int:
    """Read and parse every line as an import would; count per file and format; send nothing."""
    from prometheus_client import CollectorRegistry

    from receiver.metrics import ParseMetrics
    from receiver.parse import Parser
    from receiver.ship.encode import BulkEncoder

    started = time.monotonic()
    units = iter(plan.units())
    source = ImportSource(lambda: next(units, None), plan.tallies, stdin=stdin,
                          max_line=int(settings.listen.max_message_bytes))
    hook = ImportHook(source.by_listener, options.since, options.until)
    encoder = BulkEncoder(settings.elasticsearch, Parser(import_parse_settings(settings)),
                          ParseMetrics(CollectorRegistry()))
    while (batch := source.read(1000, 1 << 20)) is not None:
        tally = plan.tallies[batch.segment]
        for record in batch.records:
            received = decode(record.payload)
            assert isinstance(received, Received)
            document = encoder.document(received)
            if hook(received, document):
                tally.formats[str(document.get("haproxy.log_format", "unknown"))] += 1
        source.acknowledge(batch, len(batch.records))
    source.close()
    final = Totals.of(plan.tallies.values(), 0, 0)
    err.write(summary(list(plan.tallies.values()), final, time.monotonic() - started,
                      dry_run=True) + "\n")
    return 1 if final.failed_files else 0
