"""The process's own log: one setup for every command and for the worker processes.

`setup_logging(level, format)` sends log records to stderr (stdout carries documents when no
Elasticsearch is configured) either as text for people or, with `format="json"`, as one JSON
object per line shaped after the Elastic Common Schema, so Filebeat, Vector, Fluent Bit or
journald-to-Elasticsearch pipelines index them without a parser:

    {"@timestamp":"2026-03-01T12:00:00.123Z","log.level":"warning","log.logger":"receiver.listen",
     "message":"...","process.pid":4242,"process.thread.name":"recv udp://…","ecs.version":"8.11.0"}

plus `error.type`, `error.message` and `error.stack_trace` when the record carries an
exception. Keys are flat and dotted (ECS allows both forms; flat keys are what `jq '."log.level"'`
and Elasticsearch's dotted-field expansion read directly). The receiving process and its ship
process both call `setup_logging`, so their lines look alike on the shared stderr.
"""

from __future__ import annotations

import datetime
import logging
import sys
from typing import Any, Literal, TextIO

import orjson

LogFormat = Literal["text", "json"]
ECS_VERSION = "8.11.0"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class EcsJsonFormatter(logging.Formatter):
    """One ECS-shaped JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        document: dict[str, Any] = {
            "@timestamp": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "log.level": record.levelname.lower(),
            "log.logger": record.name,
            "message": record.getMessage(),
            "process.pid": record.process,
            "process.thread.name": record.threadName,
            "ecs.version": ECS_VERSION,
        }
        if record.exc_info and record.exc_info[0] is not None:
            error_type, error, _ = record.exc_info
            document["error.type"] = f"{error_type.__module__}.{error_type.__qualname__}".removeprefix(
                "builtins.")
            document["error.message"] = str(error)
            document["error.stack_trace"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["error.stack_trace"] = record.exc_text
        if record.stack_info:
            document["log.origin.stack_trace"] = self.formatStack(record.stack_info)
        # default=str: a message argument orjson cannot encode must not lose the line.
        return orjson.dumps(document, default=str).decode()


def formatter(log_format: LogFormat) -> logging.Formatter:
    if log_format == "json":
        return EcsJsonFormatter()
    return logging.Formatter(TEXT_FORMAT)


def setup_logging(level: str, log_format: LogFormat = "text", stream: TextIO | None = None) -> None:
    """Configure the root logger once per process; calling again replaces the handler (a
    command that learns its settings late, or a test, may call it twice)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
