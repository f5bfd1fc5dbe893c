"""One process's import: units -> `ImportSource` -> the live path's `Shipper` -> Elasticsearch.

Nothing here parses, encodes, batches or delivers: the shipper does, with the configured
`elasticsearch.*` settings (batch sizes, `max_in_flight`, retries with backoff on 429 and 5xx,
dead letters), exactly as for the spool. What an import adds:
- the parse settings without `parse.max_past`: an old file's events keep the time they were
  logged at (the window is there to stop a live sender's broken clock, not history);
- a document hook: `log.file.path`, the `import` tag, and `--since`/`--until`;
- `CountingOutput`: how many items Elasticsearch already had (409 on `create`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from receiver.config import ElasticsearchSettings, Seconds, Settings
from receiver.event import Received
from receiver.importer.source import FILE_SCHEME, FileTally, ImportSource, Unit
from receiver.metrics import WorkerMetrics
from receiver.ship.classify import Classification, RequestOutcome
from receiver.ship.dead_letter import dead_letter_path
from receiver.ship.output import Output

IMPORT_TAG = "import"
FILE_PATH_FIELD = "log.file.path"
# After the input is read and everything sent: how long an interrupted import lets the
# requests in flight finish before it gives up on them (they are sent again by a rerun).
INTERRUPT_GRACE = 5.0
_TICK = 0.1


class CannotImport(Exception):
    """The import cannot start (output unreachable, dead-letter file not writable)."""


class ImportHook:
    """Completes each document (receiver.ship.encode.DocumentHook): the file it came from,
    the `import` tag; leaves out events outside `[since, until)` (ISO 8601 UTC text, compared
    as text: `@timestamp` always has the same width)."""

    def __init__(self, by_listener: dict[str, FileTally], since: str | None = None,
                 until: str | None = None) -> None:
        self._by_listener = by_listener
        self._paths: dict[str, str | None] = {}
        self.since = since
        self.until = until

    def __call__(self, received: Received, document: dict[str, Any]) -> bool:
        listener = received.listener
        path = self._paths.get(listener, "")
        if path == "":
            path = self._paths[listener] = (
                listener[len(FILE_SCHEME):] if listener.startswith(FILE_SCHEME) else None)
        if path is not None:
            document[FILE_PATH_FIELD] = path
        tags = document.get("tags")
        if tags:
            tags.append(IMPORT_TAG)
        else:
            document["tags"] = [IMPORT_TAG]
        if (self.since or self.until) and not self.within(document):
            tally = self._by_listener.get(listener)
            if tally is not None:
                tally.outside += 1
            return False
        return True

    def within(self, document: dict[str, Any]) -> bool:
        stamp = document.get("@timestamp")
        if not isinstance(stamp, str):
            return True
        return (not self.since or stamp >= self.since) and (not self.until or stamp < self.until)


class CountingOutput:
    """An output that counts what its bulk answers said: items delivered, and of them those
    Elasticsearch already had (409 on `create`: "already there")."""

    def __init__(self, inner: Output) -> None:
        self._inner = inner
        self.wants_ids = inner.wants_ids
        self._lock = threading.Lock()
        self.delivered = 0
        self.existing = 0

    def describe(self) -> str:
        return self._inner.describe()

    def send(self, body: bytes, items: int, index: str | None = None) -> Classification:
        result = self._inner.send(body, items, index)
        if result.request is RequestOutcome.OK:
            with self._lock:
                self.delivered += items - len(result.failures)
                self.existing += result.existing
        return result

    def setup(self) -> None:
        self._inner.setup()

    def destination(self) -> ElasticsearchSettings | None:
        return self._inner.destination()

    def close(self) -> None:
        self._inner.close()


def import_parse_settings(settings: Settings) -> Any:
    """The parse settings of an import: `parse.max_past` lifted (see the module docstring)."""
    return dataclasses.replace(settings.parse, max_past=Seconds(0))


def check_dead_letter_file(path: Path) -> None:
    """Refuse to start when refused documents could not be written (the delivery would wait
    for the file for ever)."""
    probe = path if path.exists() else next(
        (parent for parent in path.parents if parent.exists()), Path("/"))
    if not os.access(probe, os.W_OK):
        raise CannotImport(
            f"the dead-letter file {path} cannot be written ({probe} is not writable): set "
            "elasticsearch.dead_letter_file (or HAPROXY_RECEIVER_ELASTICSEARCH__DEAD_LETTER_FILE)"
            " to a writable place")


def make_output(settings: Settings, metrics: WorkerMetrics) -> Output:
    """The configured output, reached once before anything is read: an import that cannot
    reach Elasticsearch says so at once instead of retrying for ever."""
    from receiver.ship.errors import OutputError
    from receiver.ship.output import make_output as make

    try:
        output = make(settings.elasticsearch, metrics, sys.stdout.buffer)
    except OutputError as error:
        raise CannotImport(str(error)) from None
    probe = getattr(output, "probe", None)
    if probe is not None:
        try:
            probe()
        except OutputError as error:
            output.close()
            raise CannotImport(f"cannot use the output: {error}") from None
    return output


class Import:
    """The source, the shipper and the counts of one process."""

    def __init__(self, settings: Settings, next_unit: Callable[[], Unit | None],
                 tallies: dict[int, FileTally], *, stdin: BinaryIO | None = None,
                 since: str | None = None, until: str | None = None,
                 output: Output | None = None) -> None:
        from receiver.ship.shipper import Shipper

        self.tallies = tallies
        self.metrics = WorkerMetrics()
        self.source = ImportSource(next_unit, tallies, stdin=stdin,
                                   max_line=int(settings.listen.max_message_bytes))
        dead_letters = dead_letter_path(settings)
        check_dead_letter_file(dead_letters)
        self.dead_letter_path = dead_letters
        inner = output if output is not None else make_output(settings, self.metrics)
        self.output = CountingOutput(inner)
        self.hook = ImportHook(self.source.by_listener, since, until)
        # The dead-letter index's documents go past the counting: they are not the import's.
        self.shipper = Shipper(settings.elasticsearch, self.source, self.output, self.metrics,
                               str(dead_letters), import_parse_settings(settings), self.hook,
                               letters_output=inner)
        self.interrupted = False

    def run(self, stop: threading.Event, tick: Callable[[], None] | None = None) -> None:
        """Ship every unit; returns when all is read and acknowledged, or `stop` was set
        (interrupted: what was in flight gets INTERRUPT_GRACE seconds)."""
        shipper = self.shipper
        shipper.finish()  # a partial shipment goes as soon as nothing more is to be read
        thread = threading.Thread(target=shipper.run, args=(stop,), name="import-reader",
                                  daemon=True)
        thread.start()
        completed = False
        try:
            while thread.is_alive() and not stop.is_set():
                if self.source.exhausted and shipper.caught_up():
                    completed = True
                    break
                stop.wait(_TICK)
                if tick is not None:
                    tick()
        finally:  # also on KeyboardInterrupt: a short grace, then the summary
            self.interrupted = not completed
            stop.set()
            grace = INTERRUPT_GRACE if self.interrupted else 60.0
            shipper.drain(time.monotonic() + grace)
            thread.join(grace)
            self.source.close()
            self.output.close()
