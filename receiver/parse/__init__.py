"""Parsing: one syslog message (bytes) -> one flat Elastic Common Schema document (dict).

Owns the chain: syslog header (`syslog.py`) -> body format detection -> the body's reader
(`jsonbody.py`, `traffic.py` for httplog/httpslog/tcplog, `clf.py`, `epochlog.py` for the
epoch-stamped custom format, `plainrequest.py` for a custom format with an unquoted request,
`messages.py`) -> field names and types (`fields.py`, applied by `mapper.py`) -> `@timestamp`
(`timestamps.py`) -> derived fields, categorisation, labels and GeoIP (`geo.py`).

Guarantees: `Parser.parse` never raises and always returns a document with `@timestamp`
(`2026-11-25T18:21:08.761Z`: from the body's date, else the syslog header's, else the receive
time; a claimed time outside `parse.max_past`/`max_future` of the receive time, or one that
names no real moment, is replaced by the receive time and kept as `haproxy.claimed_time`) and
`haproxy.log_format` (`json`, `httplog`, `httpslog`, `tcplog`, `clf`, `tcpclf`, `error`,
`connect`, `text`). No value is ever put under a name it may not have: a text line whose parts
cannot all be placed is not read at all. What cannot be understood is kept once, as `message`,
with `error.message`/`error.type` and the tag `_haproxy_parse_failure` (a body that is mostly
not text, e.g. a binary datagram, is kept base64-encoded in `event.original` instead, so that a
document stays within 1.4 bytes per byte received). Repaired JSON is tagged `_json_repaired`
and lists what was repaired in `haproxy.repairs`; a line cut short (HAProxy's `len`) is tagged
`_truncated` and keeps every field that is still whole. `event.original` (the body as text;
undecodable bytes shown as `\\xNN`) is kept on repaired and cut events, and on all with
`parse.keep_original`. The caller adds `log.source.address`.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import orjson

from receiver.config import ParseSettings
from receiver.parse import (
    clf,
    compiled,
    epochlog,
    jsonbody,
    messages,
    plainrequest,
    traffic,
    wrappers,
)
from receiver.parse.fields import (
    CLAIMED_TIME,
    DATE_MS,
    DATE_OFFSET,
    EPOCH,
    EVENT_CATEGORY,
    EVENT_DURATION,
    EVENT_OUTCOME,
    EVENT_TYPE,
    Collected,
)
from receiver.parse.mapper import FieldMapper
from receiver.parse.syslog import DATE_ISO, DATE_RFC3164, SYSLOG_FORMAT, parse_header
from receiver.parse.timestamps import Timestamps

__all__ = ["ERROR_TYPES", "LOG_FORMATS", "TAG_FAILURE", "TAG_REPAIRED", "TAG_TIME", "TAG_TRUNCATED", "Parser"]

log = logging.getLogger(__name__)

TAG_FAILURE = "_haproxy_parse_failure"
TAG_REPAIRED = "_json_repaired"
TAG_TRUNCATED = "_truncated"
TAG_TIME = "_timestamp_out_of_range"
# Fields this module writes (the variables' fields are named in fields.py).
DURATION = EVENT_DURATION
OUTCOME = EVENT_OUTCOME
KIND = "event.kind"
CATEGORY = EVENT_CATEGORY
TYPE = EVENT_TYPE
ORIGINAL = "event.original"
MESSAGE = "message"
LOG_FORMAT = "haproxy.log_format"
ERROR_TYPE = "error.type"
ERROR_MESSAGE = "error.message"
STRUCTURED_DATA = "haproxy.structured_data"  # an RFC 5424 SD field that is not SD elements

_STRIP = b"\n\r\0 \t"  # line ends and blanks around the message are not part of it
_BLANKS = (" ", "\t")
_NOT_HTTP = frozenset(("tcplog", "tcpclf", "connect", "error"))
# ECS categorisation by format (shared tuples: documents only read them).
_WEB = {KIND: "event", CATEGORY: ("web",), TYPE: ("access",)}
_NETWORK = {KIND: "event", CATEGORY: ("network",), TYPE: ("connection",)}
_CATEGORIES: dict[str, dict[str, Any]] = {
    "httplog": _WEB, "httpslog": _WEB, "clf": _WEB, "tcplog": _NETWORK, "tcpclf": _NETWORK,
    "error": _NETWORK, "connect": {**_NETWORK, TYPE: ("connection", "start")},
    "text": {KIND: "event"},
}
# Every value of `haproxy.log_format` and of `error.type` on a failure: the metrics label
# events by them, and a label takes no value from outside a set known here.
LOG_FORMATS = frozenset(("json", *_CATEGORIES))
_JSON_CATEGORIES = (_WEB, _NETWORK)  # JSON: web when it carries a status or a request
ERROR_TYPES = frozenset(("empty", "not_json", "unknown_format", "json_unreadable", "binary",
                         "internal"))
# A body is binary when more than this share of its bytes are control characters or not
# UTF-8: kept base64 (1.33 bytes per byte) rather than escaped (`\u0001`, `\\xff`: 5-6).
_BINARY_SHARE = 0.125
_CONTROL_BYTES = bytes(b for b in range(32) if b != 9) + b"\x7f"


def not_text(data: bytes) -> int:
    """How many bytes of `data` are control characters (but tab) or not UTF-8."""
    controls = len(data) - len(data.translate(None, _CONTROL_BYTES))
    return controls + len(data) - len(data.decode("utf-8", "ignore").encode())


def is_binary(data: bytes) -> bool:
    """Mostly not text (more than one byte in eight): kept base64, not as a message."""
    return not_text(data) > len(data) * _BINARY_SHARE


class Parser:
    """Turns syslog messages into documents; one per thread (it keeps per-second caches)."""

    def __init__(self, settings: ParseSettings) -> None:
        self.settings = settings
        self.timestamps = Timestamps(settings.timezone, settings.max_future, settings.max_past)
        self.mapper = FieldMapper(settings)
        self.labels = dict(settings.labels)
        self.pinned = settings.format
        self.keep_original = settings.keep_original
        self.response_captures_only = bool(
            settings.capture_response_headers and not settings.capture_request_headers
        )
        self.request_captures = len(settings.capture_request_headers) or -1
        self.response_captures = len(settings.capture_response_headers) or -1
        self.geo: Any = None
        if settings.geoip_database or settings.asn_database:
            from receiver.parse.geo import GeoEnricher

            self.geo = GeoEnricher(settings.geoip_database, settings.asn_database)
        self._internal_errors = 0
        # The receive-time window of the last second seen: (earliest, latest, from, until).
        self._window: tuple[str, str, float, float] = ("", "", 0.0, 0.0)
        # The standard httplog/httpslog/tcplog layouts read by one pattern (tests compare it
        # with the structural reading by switching it off).
        self.fast_paths = True
        # A body starting with `{` goes straight to the JSON reader (see `_body`).
        self.json_first = self.pinned in ("auto", "json")
        # The usual event of a key layout written by one generated function
        # (`compiled.compile_event`; tests compare it with the general way by switching it off).
        self.whole_events = not self.mapper.raw_names
        # ... its checks and writes run as compiled steps where they were built (tests switch
        # this off to compare with the generated Python lines)
        self.compiled_steps = compiled.COMPILED
        self._events: dict[Any, compiled.EventFunction | None] = {}
        # Nothing for `_complete` to add to an untagged document (checked once, not per event).
        self._plain = self.geo is None and not self.labels and not self.keep_original

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
        tags: list[str] = []
        seen: Collected | None
        # What container tooling puts around a line is never around one starting with `<PRI>`
        # (tested here: the usual case costs no call).
        if text[:1] == "<":
            body, header_date, header_kind, _ = parse_header(text, doc)  # and syslog_format
        else:
            body, header_date, header_kind = self._unwrapped(text, doc, tags)
        if body[:1] == "{" and self.json_first:
            if self.whole_events:  # the usual JSON event in one generated function
                try:
                    fields = orjson.loads(body)
                except orjson.JSONDecodeError:
                    fields = None
                if type(fields) is dict:
                    doc[LOG_FORMAT] = "json"
                    keys = tuple(fields)
                    event = self._events.get(keys)
                    if event is None and keys not in self._events:
                        event = self._new_event(keys, keys, False, _JSON_CATEGORIES)
                    if event is not None and (written := event(
                            fields.values(), doc, received_at, self, self.mapper, True)):
                        return self._written_whole(written, doc, tags, body)
                    seen = self.mapper.map(fields, doc, True)
                else:
                    seen = self._json(body, doc, tags)
            else:
                seen = self._json(body, doc, tags)
        elif self.pinned == "auto" and (line := traffic.read(
                body, self.response_captures_only, self.fast_paths)) is not None:
            # the usual text line, without `_body`; the usual event in one generated function
            if self.whole_events and not line[3]:
                log_format, keys, values = line[0], line[1], line[2]
                event = self._events.get((log_format, keys))
                if event is None and (log_format, keys) not in self._events:
                    event = self._new_event((log_format, keys), keys, True,
                                            _CATEGORIES[log_format])
                doc[LOG_FORMAT] = log_format
                http = log_format not in _NOT_HTTP
                if event is not None and (written := event(
                        values, doc, received_at, self, self.mapper, http)):
                    return self._written_whole(written, doc, tags, body)
                seen = self.mapper.map_values(keys, values, doc, http)
            else:
                seen = self._traffic(line, doc, tags)
        elif body[:1] in _BLANKS:  # blanks after the header (checked here: rare)
            body = body.lstrip(" \t")
            seen = self._body(body, doc, tags)
        else:
            seen = self._body(body, doc, tags, self.pinned == "auto")
        failed = TAG_FAILURE in tags if tags else False
        if failed and doc.get(SYSLOG_FORMAT) == "rfc5424":
            retried = self._custom_sd(text, doc, tags)
            if retried is not None:
                body, seen = retried
                failed = False
        if failed:
            self._keep_unparsed(body, data, doc)
        # `@timestamp`, the usual case inline (the body's `%t`, inside the window); `_stamp`
        # for everything else.
        stamp = None
        if seen is not None:
            date = seen.date
            if seen.date_kind == DATE_MS and type(date) is str:
                stamp = self.timestamps.haproxy_date(date)
                if stamp is not None:
                    window = self._window
                    if not window[2] <= received_at < window[3]:  # another second
                        window = self._window = self._window_at(received_at)
                    if not window[0] <= stamp <= window[1]:
                        stamp = None
        if stamp is None:
            self._stamp(doc, seen, header_date, header_kind, received_at, tags)
        else:
            doc["@timestamp"] = stamp
        log_format = doc[LOG_FORMAT]
        # event.outcome: failure for an HTTP error status, or a session ended by anything but
        # normal completion (`-`) or HAProxy's own response (`L`: redirect, return).
        if seen is not None:
            duration = seen.duration_ms
            if duration is not None and duration < 9_000_000_000_000:
                doc[DURATION] = duration * 1_000_000
            status = seen.status
            if status is not None or seen.termination is not None:
                state = seen.termination
                failure = (status is not None and status >= 400) or bool(
                    state and state[0] not in "-L")
                # A body not read to its end may have lost what says it failed.
                if failure or not seen.partial:
                    doc[OUTCOME] = "failure" if failure else "success"
            elif log_format == "error":
                doc[OUTCOME] = "failure"
        if failed:
            doc[KIND] = "pipeline_error"
        else:
            categories = _CATEGORIES.get(log_format)
            if categories is None:  # json: web when it carries a status or a request
                categories = _WEB if seen is not None and (
                    seen.status is not None or seen.request_line) else _NETWORK
            doc.update(categories)
        return self._complete(doc, tags, body)

    def _written_whole(self, written: int, doc: dict[str, Any], tags: list[str], body: str
                       ) -> dict[str, Any]:
        """A document a whole-event function wrote: tagged when its date was passed over for
        the receive time, then completed (a plain untagged one is already whole)."""
        if written == compiled.WRITTEN_CLAIMED:
            tags.append(TAG_TIME)
        elif not tags and self._plain:
            return doc
        return self._complete(doc, tags, body)

    def _complete(self, doc: dict[str, Any], tags: list[str], body: str) -> dict[str, Any]:
        """What every document gets last: GeoIP, labels, tags and `event.original`."""
        if self.geo is not None:
            self.geo.enrich(doc)
        if self.labels:
            doc.update(self.labels)
        if tags:
            doc["tags"] = tags
            if TAG_FAILURE not in tags and (
                self.keep_original or TAG_REPAIRED in tags or TAG_TRUNCATED in tags
            ):
                doc[ORIGINAL] = body
        elif self.keep_original:
            doc[ORIGINAL] = body
        return doc

    def _new_event(self, cache_key: Any, keys: tuple[str, ...], text: bool,
                   categories: dict[str, Any] | tuple[dict[str, Any], dict[str, Any]]
                   ) -> compiled.EventFunction | None:
        """The whole-event function of a shape not seen yet (None past the bound: the general
        way then)."""
        if len(self._events) >= compiled.MAX_SHAPES:
            return None
        event = compiled.compile_event(keys, text, self.mapper.content_names, categories,
                                       self.compiled_steps)
        self._events[cache_key] = event
        return event

    def _body(self, body: str, doc: dict[str, Any], tags: list[str], traffic_tried: bool = False
              ) -> Collected | None:
        """Detect the body's format and map it; returns what the mapper collected.
        `traffic_tried`: `traffic.read` already said the body is not a traffic line."""
        pinned = self.pinned
        if not body:
            return self._failure(doc, tags, "empty", "the message has no body")
        first = body[0]
        if pinned == "text":
            doc[MESSAGE] = body
            doc[LOG_FORMAT] = "text"
            return None
        if first == "{" and pinned in ("auto", "json"):
            return self._json(body, doc, tags)
        if pinned == "json":
            return self._failure(doc, tags, "not_json", "body is not a JSON object")
        if pinned in ("auto", "httplog", "tcplog") and not traffic_tried:
            line = traffic.read(body, self.response_captures_only, self.fast_paths)
            if line is not None:
                return self._traffic(line, doc, tags)
        if pinned in ("auto", "clf", "httplog", "tcplog"):
            line = clf.read(body, self.request_captures, self.response_captures,
                            self.fast_paths)
            if line is not None:
                return self._traffic(line, doc, tags)
        if pinned in ("auto", "httplog") and first == "[":
            line = epochlog.read(body)
            if line is not None:
                return self._traffic(line, doc, tags)
        if pinned in ("auto", "httplog") and body.find(" [", 0, 120) > 0:
            line = plainrequest.read(body, self.response_captures_only)
            if line is not None:
                return self._traffic(line, doc, tags)
        if pinned in ("auto", "httplog", "tcplog"):
            error = messages.parse_error_line(body)
            if error is not None:
                raw, text = error
                doc[MESSAGE] = text
                doc[LOG_FORMAT] = "error"
                return self.mapper.map(raw, doc, http=False)
        if pinned == "auto":
            connect = messages.parse_connect(body)
            if connect is not None:
                doc[LOG_FORMAT] = "connect"
                return self.mapper.map(connect, doc, http=False)
            if messages.parse_message(body, doc):
                doc[LOG_FORMAT] = "text"
                return None
        reason = "no HAProxy log format matches this body" if pinned == "auto" else (
            f"body is not in the pinned format {pinned!r}")
        return self._failure(doc, tags, "unknown_format", reason)

    @staticmethod
    def _unwrapped(text: str, doc: dict[str, Any], tags: list[str]) -> tuple[str, str, int]:
        """A line without `<PRI>` first: what container tooling put around it peeled off
        (`wrappers.py`), then its header read; (body, header date, date kind). The wrappers'
        date stands for the header's when the line has none."""
        peeled = wrappers.peel(text, doc)
        if peeled is None:
            body, date, kind, _ = parse_header(text, doc)
            return body, date, kind
        body, date, kind, _ = parse_header(peeled.text, doc)
        if not kind and peeled.date:
            date, kind = peeled.date, DATE_ISO
        tags.extend(peeled.tags)
        return body, date, kind

    def _custom_sd(self, text: str, doc: dict[str, Any], tags: list[str]
                   ) -> tuple[str, Collected | None] | None:
        """An RFC 5424 frame whose SD field is a bare token (HAProxy's `log-profile ... sd
        "custom-sd"` writes its text there as it is): the body after it, read, or None when it
        reads no better. Tried only when the body with the token did not read at all."""
        if text[:1] != "<":  # the frame inside a wrapper
            peeled = wrappers.peel(text, {})
            text = text if peeled is None else peeled.text
        parts = text.split(" ", 7)
        if len(parts) < 8 or parts[6] == "-" or parts[6][:1] == "[":
            return None
        attempt: dict[str, Any] = {}
        attempt_tags: list[str] = []
        seen = self._body(parts[7], attempt, attempt_tags)
        if TAG_FAILURE in attempt_tags:
            return None
        for name in (LOG_FORMAT, ERROR_TYPE, ERROR_MESSAGE):
            doc.pop(name, None)
        tags.remove(TAG_FAILURE)
        tags.extend(attempt_tags)
        doc[STRUCTURED_DATA] = parts[6]
        doc.update(attempt)
        return parts[7], seen

    def _json(self, body: str, doc: dict[str, Any], tags: list[str]) -> Collected | None:
        try:
            fields = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._json_repaired(jsonbody.repair(body), doc, tags)
        if type(fields) is dict:
            doc[LOG_FORMAT] = "json"
            return self.mapper.map(fields, doc, True)
        return self._json_repaired(jsonbody.not_an_object(), doc, tags)

    def _json_repaired(
        self, result: jsonbody.JsonResult, doc: dict[str, Any], tags: list[str]
    ) -> Collected | None:
        """A body strict JSON could not read as an object: what the tolerant decoder made of
        it (`jsonbody.decode`'s result, without decoding twice)."""
        if result.error is not None and not result.fields:
            return self._failure(doc, tags, "json_unreadable", result.error)
        doc[LOG_FORMAT] = "json"
        if result.repairs or result.error is not None:
            tags.append(TAG_REPAIRED)
            repairs = result.repairs
            if result.error is not None:
                repairs = [*repairs, f"partly read: {result.error}"]
            doc["haproxy.repairs"] = repairs
        if result.truncated:
            tags.append(TAG_TRUNCATED)
        seen = self.mapper.map(result.fields, doc, http=True)
        seen.partial = result.truncated or result.error is not None
        if result.trailing:
            doc["haproxy.trailing_text"] = result.trailing
        return seen

    def _traffic(
        self, line: traffic.TrafficLine, doc: dict[str, Any], tags: list[str]
    ) -> Collected:
        log_format, keys, values, truncated = line
        doc[LOG_FORMAT] = log_format
        seen = self.mapper.map_values(keys, values, doc, log_format not in _NOT_HTTP)
        if truncated:
            tags.append(TAG_TRUNCATED)
            seen.partial = True
        return seen

    # -- the time ----------------------------------------------------------------------------

    def _window_at(self, received_at: float) -> tuple[str, str, float, float]:
        second = float(int(received_at))
        earliest, latest = self.timestamps.window(received_at)
        return earliest, latest, second, second + 1.0

    def _stamp(self, doc: dict[str, Any], seen: Collected | None, header_date: str,
               header_kind: int, received_at: float, tags: list[str]) -> None:
        """`@timestamp`: the body's date, else the header's, if it names a real moment within
        the window around the receive time; else the receive time. A date passed over (as
        logged) is kept in `haproxy.claimed_time` and tagged: also a body's date that names no
        real moment when the header's then stamps the event."""
        timestamps = self.timestamps
        stamp: str | None = None
        claimed: Any = None
        if seen is not None and seen.date is not None:
            date = seen.date
            if seen.date_kind == DATE_MS and type(date) is str:
                stamp = timestamps.haproxy_date(date)
            else:
                stamp = self._body_date(seen)
            if stamp is None:
                claimed = date
        if stamp is None and header_kind:
            if header_kind == DATE_RFC3164:
                stamp = timestamps.rfc3164(header_date, received_at)
            elif header_kind == DATE_ISO:
                stamp = timestamps.iso8601(header_date)
            if stamp is None and claimed is None:
                claimed = header_date
        if stamp is not None:
            earliest, latest = timestamps.window(received_at)
            if not earliest <= stamp <= latest:
                if claimed is None:
                    claimed = seen.date if seen is not None and seen.date is not None else (
                        header_date)
                stamp = None
        if stamp is None:
            stamp = timestamps.epoch(received_at)
        doc["@timestamp"] = stamp
        if claimed is not None:
            doc[CLAIMED_TIME] = str(claimed)
            tags.append(TAG_TIME)

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
            if 0 < seconds < 253402300800:  # before year 10000
                whole, dot, fraction = value.partition(".") if type(value) is str else ("", "", "")
                if dot and whole.isdigit() and fraction[:3].isdigit():
                    # `%Ts.%ms` as written: its milliseconds, not a float's rounding of them
                    return f"{timestamps.epoch(float(whole))[:-4]}{fraction[:3]:0<3}Z"
                return timestamps.epoch(seconds)
        return None

    # -- what else a document says -----------------------------------------------------------

    @staticmethod
    def _failure(doc: dict[str, Any], tags: list[str], kind: str, reason: str) -> None:
        doc[LOG_FORMAT] = "text"
        doc[ERROR_TYPE] = kind
        doc[ERROR_MESSAGE] = reason
        tags.append(TAG_FAILURE)
        return None

    @staticmethod
    def _keep_unparsed(body: str, data: bytes, doc: dict[str, Any]) -> None:
        """An unparsed body, kept once: as `message` (what a person reads and searches), or,
        when it is mostly not text, base64-encoded in `event.original` (the raw event)."""
        size = len(data)
        if size:
            share = not_text(data)
            if share > size * _BINARY_SHARE:
                doc[MESSAGE] = f"binary data: {size} bytes, {share * 100 // size}% not text"
                doc[ORIGINAL] = base64.b64encode(data).decode("ascii")
                doc[ERROR_TYPE] = "binary"
                doc[ERROR_MESSAGE] = (
                    "not a HAProxy log line; event.original holds the bytes base64-encoded")
                return
        doc[MESSAGE] = body

    def _internal_error(
        self, message: bytes, received_at: float, problem: Exception
    ) -> dict[str, Any]:
        self._internal_errors += 1
        if self._internal_errors <= 10 or self._internal_errors % 10000 == 0:
            log.warning(
                "parser error #%d (event kept as text): %r", self._internal_errors, problem
            )
        try:
            data = bytes(message)
        except Exception:  # not bytes-like at all
            data = repr(message).encode()
        try:
            stamp = self.timestamps.epoch(float(received_at))
        except Exception:
            stamp = "1970-01-01T00:00:00.000Z"
        doc: dict[str, Any] = {
            "@timestamp": stamp,
            LOG_FORMAT: "text",
        }
        self._keep_unparsed(data.decode("utf-8", "backslashreplace"), data, doc)
        doc[ERROR_TYPE] = "internal"
        doc[ERROR_MESSAGE] = f"parser error: {type(problem).__name__}: {problem}"
        doc[KIND] = "pipeline_error"
        doc["tags"] = [TAG_FAILURE]
        return doc
