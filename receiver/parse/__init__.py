"""Parsing: one syslog message (bytes) -> one flat Elastic Common Schema document (dict).

Owns the chain: syslog header (`syslog.py`) -> body format detection -> the body's parser
(`jsonbody.py`, `httplog.py`, `tcplog.py`, `messages.py`) -> field names and types
(`fields.py`) -> `@timestamp` (`timestamps.py`) -> derived fields, labels and GeoIP (`geo.py`).

Guarantees: `Parser.parse` never raises and always returns a document with `@timestamp`
(`2026-11-25T18:21:08.761Z`: from the body's date, else the syslog header's, else the receive
time) and `haproxy.log_format` (`json`, `httplog`, `httpslog`, `tcplog`, `clf`, `error`, `connect`,
`text`). What cannot be understood is kept as `message` with `error.message`/`error.type` and
the tag `_haproxy_parse_failure`. Repaired JSON is tagged `_json_repaired` and lists what was
repaired in `haproxy.repairs`; a line cut short (HAProxy's `len`) is tagged `_truncated` and
keeps every field that is still whole. `event.original` (the body as text; undecodable bytes
shown as `\\xNN`) is kept on every tagged event, and on all with `parse.keep_original`.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from receiver.config import ParseSettings
from receiver.parse import httplog, jsonbody, messages
from receiver.parse.fields import DATE_MS, DATE_OFFSET, EPOCH, Collected, FieldMapper
from receiver.parse.syslog import DATE_ISO, DATE_RFC3164, parse_header
from receiver.parse.timestamps import Timestamps

__all__ = ["TAG_FAILURE", "TAG_REPAIRED", "TAG_TRUNCATED", "Parser"]

log = logging.getLogger(__name__)

TAG_FAILURE = "_haproxy_parse_failure"
TAG_REPAIRED = "_json_repaired"
TAG_TRUNCATED = "_truncated"
_STRIP = b"\n\r\0"
_NOT_HTTP = frozenset(("tcplog", "connect", "error"))


class Parser:
    """Turns syslog messages into documents; one per thread (it keeps per-second caches)."""

    def __init__(self, settings: ParseSettings) -> None:
        self.settings = settings
        self.timestamps = Timestamps(settings.timezone)
        self.mapper = FieldMapper(settings)
        self.labels = dict(settings.labels)
        self.pinned = settings.format
        self.keep_original = settings.keep_original
        self.response_captures_only = bool(
            settings.capture_response_headers and not settings.capture_request_headers
        )
        self.geo: Any = None
        if settings.geoip_database or settings.asn_database:
            from receiver.parse.geo import GeoEnricher

            self.geo = GeoEnricher(settings.geoip_database, settings.asn_database)
        self._internal_errors = 0
        # Straight-line httplog/httpslog reading in ECS mode (tests compare it with the general
        # path by switching it off).
        self.fast_paths = settings.field_names == "ecs"
        # A body starting with `{` goes straight to the JSON reader (see `_body`).
        self.json_first = self.pinned in ("auto", "json")

    def parse(self, message: bytes, received_at: float) -> dict[str, Any]:
        """One syslog message -> one document. Never raises, never returns None."""
        try:
            return self._parse(message, received_at)
        except Exception as problem:  # the promise is "never raises": keep the event
            return self._internal_error(message, received_at, problem)

    # -- the chain ---------------------------------------------------------------------------

    def _parse(self, message: bytes, received_at: float) -> dict[str, Any]:
        data = message.rstrip(_STRIP)
        try:
            text = data.decode()
        except UnicodeDecodeError:
            text = data.decode("utf-8", "backslashreplace")
        doc: dict[str, Any] = {}
        body, header_date, header_kind, header_format = parse_header(text, doc)
        doc["haproxy.syslog_format"] = header_format
        tags: list[str] = []
        seen: Collected | None
        if body[:1] == "{" and self.json_first:
            # The usual case inline (what `_body` -> `_json` would do, minus two calls).
            try:
                fields = orjson.loads(body)
            except orjson.JSONDecodeError:
                seen = self._json_repaired(jsonbody.repair(body), body, doc, tags)
            else:
                if type(fields) is dict:
                    doc["haproxy.log_format"] = "json"
                    seen = self.mapper.map(fields, doc, True)
                else:
                    seen = self._json_repaired(jsonbody.not_an_object(), body, doc, tags)
        else:
            seen = self._body(body, doc, tags)
        stamp: str | None = None
        if seen is not None:
            date = seen.date
            if date is not None:
                if seen.date_kind == DATE_MS and type(date) is str:
                    stamp = self.timestamps.haproxy_date(date)
                else:
                    stamp = self._body_date(seen)
        if stamp is None:
            if header_kind == DATE_RFC3164:
                stamp = self.timestamps.rfc3164(header_date, received_at)
            elif header_kind == DATE_ISO:
                stamp = self.timestamps.iso8601(header_date)
            if stamp is None:
                stamp = self.timestamps.epoch(received_at)
        doc["@timestamp"] = stamp
        if seen is not None:
            if seen.duration_ms is not None and seen.duration_ms < 9_000_000_000_000:
                doc["event.duration"] = seen.duration_ms * 1_000_000
            if seen.status is not None or seen.termination is not None:
                doc["event.outcome"] = _outcome(seen)
        if self.geo is not None:
            self.geo.enrich(doc)
        if self.labels:
            doc.update(self.labels)
        if tags:
            doc["tags"] = tags
            doc["event.original"] = body
        elif self.keep_original:
            doc["event.original"] = body
        return doc

    def _body(self, body: str, doc: dict[str, Any], tags: list[str]) -> Collected | None:
        """Detect the body's format and map it; returns what the mapper collected."""
        pinned = self.pinned
        if not body:
            return self._failure(body, doc, tags, "empty", "the message has no body")
        first = body[0]
        if first == "{" and pinned == "auto":
            return self._json(body, doc, tags)
        if pinned == "text":
            doc["message"] = body
            doc["haproxy.log_format"] = "text"
            return None
        if first == "{" and pinned in ("auto", "json"):
            return self._json(body, doc, tags)
        if pinned == "json":
            return self._failure(body, doc, tags, "not_json", "body is not a JSON object")
        if self.fast_paths and pinned in ("auto", "httplog"):
            fast = httplog.fast_httplog(body, doc, self.mapper, self.response_captures_only)
            if fast is not None:
                log_format, truncated, seen = fast
                doc["haproxy.log_format"] = log_format
                if truncated:
                    tags.append(TAG_TRUNCATED)
                return seen
        if pinned in ("auto", "httplog", "tcplog"):
            line = httplog.parse_traffic(body, self.response_captures_only)
            if line is not None:
                return self._traffic(line, doc, tags)
        if pinned in ("auto", "clf", "httplog"):
            line = httplog.parse_clf(body, self.response_captures_only)
            if line is not None:
                return self._traffic(line, doc, tags)
        if pinned in ("auto", "httplog", "tcplog"):
            raw = messages.parse_error_line(body)
            if raw is not None:
                doc["message"] = raw["error_message"]
                doc["haproxy.log_format"] = "error"
                return self.mapper.map(raw, doc, http=False)
        if pinned == "auto":
            raw = messages.parse_connect(body)
            if raw is not None:
                doc["haproxy.log_format"] = "connect"
                return self.mapper.map(raw, doc, http=False)
            if messages.parse_message(body, doc):
                doc["haproxy.log_format"] = "text"
                return None
            if first == "{":
                return self._json(body, doc, tags)
        return self._failure(
            body, doc, tags, "unknown_format",
            "no HAProxy log format matches this body"
            if pinned == "auto" else f"body is not in the pinned format {pinned!r}",
        )

    def _json(self, body: str, doc: dict[str, Any], tags: list[str]) -> Collected | None:
        try:
            fields = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._json_repaired(jsonbody.repair(body), body, doc, tags)
        if type(fields) is dict:
            doc["haproxy.log_format"] = "json"
            return self.mapper.map(fields, doc, http=True)
        return self._json_repaired(jsonbody.not_an_object(), body, doc, tags)

    def _json_repaired(
        self, result: jsonbody.JsonResult, body: str, doc: dict[str, Any], tags: list[str]
    ) -> Collected | None:
        """A body strict JSON could not read as an object: what the tolerant decoder made of
        it (`jsonbody.decode`'s result, without decoding twice)."""
        if result.error is not None and not result.fields:
            return self._failure(body, doc, tags, "json_unreadable", result.error)
        doc["haproxy.log_format"] = "json"
        if result.repairs or result.error is not None:
            tags.append(TAG_REPAIRED)
            repairs = result.repairs
            if result.error is not None:
                repairs = [*repairs, f"partly read: {result.error}"]
            doc["haproxy.repairs"] = repairs
        if result.truncated:
            tags.append(TAG_TRUNCATED)
        return self.mapper.map(result.fields, doc, http=True)

    def _traffic(
        self, line: httplog.TrafficLine, doc: dict[str, Any], tags: list[str]
    ) -> Collected:
        log_format, raw, truncated = line
        doc["haproxy.log_format"] = log_format
        if truncated:
            tags.append(TAG_TRUNCATED)
        return self.mapper.map(raw, doc, http=log_format not in _NOT_HTTP)

    def _body_date(self, seen: Collected) -> str | None:
        value = seen.date
        kind = seen.date_kind
        timestamps = self.timestamps
        if type(value) is str:
            if kind == DATE_MS:
                return timestamps.haproxy_date(value)
            if kind == DATE_OFFSET:
                return timestamps.haproxy_date_offset(value)
        if kind == EPOCH and isinstance(value, int | float | str) and not isinstance(
            value, bool
        ):
            try:
                seconds = float(value)
            except ValueError:
                return None
            if 0 < seconds < 32503680000:  # before year 3000
                return timestamps.epoch(seconds)
        return None

    @staticmethod
    def _failure(
        body: str, doc: dict[str, Any], tags: list[str], kind: str, reason: str
    ) -> None:
        doc["message"] = body
        doc["haproxy.log_format"] = "text"
        doc["error.type"] = kind
        doc["error.message"] = reason
        tags.append(TAG_FAILURE)
        return None

    def _internal_error(
        self, message: bytes, received_at: float, problem: Exception
    ) -> dict[str, Any]:
        self._internal_errors += 1
        if self._internal_errors <= 10 or self._internal_errors % 10000 == 0:
            log.warning(
                "parser error #%d (event kept as text): %r", self._internal_errors, problem
            )
        try:
            text = bytes(message).decode("utf-8", "backslashreplace")
        except Exception:  # not bytes-like at all
            text = repr(message)
        try:
            stamp = self.timestamps.epoch(float(received_at))
        except Exception:
            stamp = "1970-01-01T00:00:00.000Z"
        return {
            "@timestamp": stamp,
            "event.original": text,
            "message": text,
            "haproxy.log_format": "text",
            "error.type": "internal",
            "error.message": f"parser error: {type(problem).__name__}: {problem}",
            "tags": [TAG_FAILURE],
        }


def _outcome(seen: Collected) -> str:
    """failure: an HTTP error status or a session ended by anything but normal completion
    or HAProxy's own response (redirect, return); success otherwise."""
    if seen.status is not None and seen.status >= 400:
        return "failure"
    state = seen.termination
    if state and state[0] not in "-L":
        return "failure"
    return "success"
