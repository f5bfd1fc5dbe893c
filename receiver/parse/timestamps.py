"""Date conversion for every date form HAProxy writes, to `@timestamp` strings.

Owns: turning `%t`/`%tr` (`25/Nov/2026:18:21:08.761`), `%Tl`/`%T` (`25/Nov/2026:18:21:17 +0000`),
`%Ts` (epoch seconds), the RFC 3164 header date (`Nov 25 18:17:32`, no year) and ISO 8601
(`2026-11-25T18:17:32.190752+00:00`) into one form: ISO 8601 UTC with milliseconds,
`2026-11-25T18:21:08.761Z` (the shipper takes the index date from its first 10 characters).
A date that names no real moment (day 32, offset +99:00, a year that leaves 1..9999 once
converted to UTC) converts to None, never to an exception.

HAProxy's `%t`-style dates and the RFC 3164 date carry no zone; they are read in the zone of
`parse.timezone` (default UTC). RFC 3164 carries no year either: the year chosen is the latest
that does not put the event more than a day after the receive time, so a Dec 31 line received
on Jan 1 is last year's, a Jan 1 line from a clock a little ahead received on Dec 31 is next
year's, and a Jan 21 line read on Nov 30 is this January's.

`window(received_at)` gives the bounds, as `@timestamp` strings, of the times an event may
claim (`parse.max_future`, `parse.max_past`); ISO strings of one width compare as text.

Every conversion is cached per second of input (the expensive part, calendar arithmetic, runs
once per second per form); the caches are cleared when they grow past a bound.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import TypeVar
from zoneinfo import ZoneInfo

K = TypeVar("K")
V = TypeVar("V")

MONTHS = {
    "Jan": 1, "Feb": 2, "Mar": 3, "Apr": 4, "May": 5, "Jun": 6,
    "Jul": 7, "Aug": 8, "Sep": 9, "Oct": 10, "Nov": 11, "Dec": 12,
}
_CACHE_LIMIT = 4096
_DIGITS = frozenset("0123456789")


def _iso_seconds(moment: datetime) -> str:
    """`2026-11-25T18:21:08.` for an aware datetime, in UTC (the part cached per second).
    Raises OverflowError when UTC falls outside years 1..9999 (callers turn that into None)."""
    utc = moment.astimezone(UTC)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}."
    )


def _ms3(fraction: str) -> str | None:
    """Three millisecond digits from a fraction of any length (`7` -> `700`), or None."""
    if not fraction:
        return "000"
    if not _DIGITS.issuperset(fraction):
        return None
    return (fraction + "00")[:3]


def _parse_offset(text: str) -> timedelta | None:
    """`+0000`, `-0530`, `+00:00`, `Z` -> offset; None when malformed."""
    if text in ("Z", "z"):
        return timedelta(0)
    sign = text[:1]
    digits = text[1:].replace(":", "")
    if sign not in ("+", "-") or len(digits) != 4 or not digits.isdigit():
        return None
    minutes = int(digits[:2]) * 60 + int(digits[2:])
    if minutes >= 24 * 60:
        return None
    return timedelta(minutes=-minutes if sign == "-" else minutes)


class Timestamps:
    """Converts HAProxy's dates to `@timestamp` strings; one instance per parser (not shared
    between threads: the caches are plain dicts)."""

    def __init__(self, zone: str = "UTC", max_future: float = 0, max_past: float = 0) -> None:
        self.zone: tzinfo = UTC if zone in ("UTC", "utc", "Z", "") else ZoneInfo(zone)
        # 0: no bound (a window of 10,000 years covers every date there is).
        self.max_future = max_future or 315_576_000_000.0
        self.max_past = max_past or 315_576_000_000.0
        self._windows: dict[int, tuple[str, str]] = {}
        self._clf: dict[str, str | None] = {}
        # Whole `%t` texts seen before: at high rates each millisecond repeats many times.
        self._clf_whole: dict[str, str] = {}
        self._offset: dict[str, str | None] = {}
        self._iso: dict[str, str | None] = {}
        self._syslog: dict[tuple[str, int], str | None] = {}
        self._epoch: dict[int, str] = {}
        # The last `epoch` answer: a receive batch's records share one receive time.
        self._last_epoch: tuple[float, str] = (-1.0, "")

    # -- forms -------------------------------------------------------------------------------

    def haproxy_date(self, text: str) -> str | None:
        """`%t`/`%tr`: `25/Nov/2026:18:21:08.761` (ms optional) in the configured zone."""
        whole = self._clf_whole.get(text)
        if whole is not None:
            return whole
        result = self._haproxy_date(text)
        if result is not None:
            self._remember(self._clf_whole, text, result)
        return result

    def _haproxy_date(self, text: str) -> str | None:
        key = text[:20]
        prefix = self._clf.get(key)
        if prefix is None:
            if key in self._clf or len(key) != 20:
                return None
            prefix = self._clf_prefix(key)
            self._remember(self._clf, key, prefix)
            if prefix is None:
                return None
        if len(text) == 24 and text[20] == "." and text[21:24].isdigit():
            return prefix + text[21:24] + "Z"  # the usual `.761`
        rest = text[20:]
        if not rest:
            return prefix + "000Z"
        if rest[0] != ".":
            return None
        ms = _ms3(rest[1:])
        return None if ms is None else prefix + ms + "Z"

    def haproxy_date_offset(self, text: str) -> str | None:
        """`%Tl`/`%T`/CLF: `25/Nov/2026:18:21:17 +0000` (an optional `.mmm` before the zone)."""
        cached = self._offset.get(text)
        if cached is not None or text in self._offset:
            return cached
        result: str | None = None
        date, _, offset_text = text.partition(" ")
        delta = _parse_offset(offset_text)
        if delta is not None and len(date) >= 20:
            moment = self._clf_datetime(date[:20], tzinfo_for(delta))
            ms = _ms3(date[21:]) if len(date) > 20 and date[20] == "." else "000"
            if moment is not None and ms is not None and len(date) in (20, 24):
                result = _utc_prefix(moment)
                if result is not None:
                    result += ms + "Z"
        self._remember(self._offset, text, result)
        return result

    def iso8601(self, text: str) -> str | None:
        """RFC 5424 / `timed` / `iso` headers: `2026-11-25T18:17:32.190752+00:00`; a zone-less
        date is read in the configured zone."""
        if len(text) < 19 or text[10] not in "Tt ":
            return None
        tail = text[19:]
        fraction = ""
        if tail.startswith("."):
            end = 1
            while end < len(tail) and tail[end] in _DIGITS:
                end += 1
            fraction, tail = tail[1:end], tail[end:]
        key = text[:19] + tail
        prefix = self._iso.get(key)
        if prefix is None:
            if key in self._iso:
                return None
            prefix = self._iso_prefix(text[:19], tail)
            self._remember(self._iso, key, prefix)
            if prefix is None:
                return None
        ms = _ms3(fraction)
        return None if ms is None else prefix + ms + "Z"

    def rfc3164(self, text: str, received_at: float) -> str | None:
        """`Nov 25 18:17:32` (day may be space-padded): year chosen closest to `received_at`."""
        key = (text, int(received_at) // 3600)
        cached = self._syslog.get(key)
        if cached is not None or key in self._syslog:
            return cached
        result = self._rfc3164_uncached(text, received_at)
        self._remember(self._syslog, key, result)
        return result

    def epoch(self, seconds: float) -> str:
        """Epoch seconds (`%Ts`, receive time) -> `@timestamp`; always succeeds for sane input."""
        last = self._last_epoch
        if last[0] == seconds:
            return last[1]
        stamp = self._epoch_stamp(seconds)
        self._last_epoch = (seconds, stamp)
        return stamp

    def _epoch_stamp(self, seconds: float) -> str:
        whole = int(seconds)
        prefix = self._epoch.get(whole)
        if prefix is None:
            try:
                prefix = _iso_seconds(datetime.fromtimestamp(whole, UTC))
            except (OverflowError, OSError, ValueError):
                prefix = _iso_seconds(datetime.fromtimestamp(int(time.time()), UTC))
            self._remember(self._epoch, whole, prefix)
        ms = int((seconds - whole) * 1000)
        return f"{prefix}{min(max(ms, 0), 999):03d}Z"

    # -- helpers -----------------------------------------------------------------------------

    def _clf_datetime(self, key: str, zone: tzinfo) -> datetime | None:
        # key: dd/Mon/yyyy:hh:mm:ss
        if key[2] != "/" or key[6] != "/" or key[11] != ":" or key[14] != ":" or key[17] != ":":
            return None
        month = MONTHS.get(key[3:6])
        digits = key[0:2] + key[7:11] + key[12:14] + key[15:17] + key[18:20]
        if month is None or not digits.isdigit() or not digits.isascii():
            return None
        try:
            return datetime(
                int(key[7:11]), month, int(key[0:2]),
                int(key[12:14]), int(key[15:17]), int(key[18:20]), tzinfo=zone,
            )
        except ValueError:
            return None

    def _clf_prefix(self, key: str) -> str | None:
        moment = self._clf_datetime(key, self.zone)
        return None if moment is None else _utc_prefix(moment)

    def _iso_prefix(self, seconds: str, zone_text: str) -> str | None:
        if not seconds.replace("-", "").replace(":", "").replace("T", "").replace(
            "t", ""
        ).replace(" ", "").isdigit() or not seconds.isascii():
            return None
        try:
            moment = datetime(
                int(seconds[0:4]), int(seconds[5:7]), int(seconds[8:10]),
                int(seconds[11:13]), int(seconds[14:16]), int(seconds[17:19]),
            )
        except ValueError:
            return None
        if seconds[4] != "-" or seconds[7] != "-" or seconds[13] != ":" or seconds[16] != ":":
            return None
        if zone_text:
            delta = _parse_offset(zone_text)
            if delta is None:
                return None
            moment = moment.replace(tzinfo=tzinfo_for(delta))
        else:
            moment = moment.replace(tzinfo=self.zone)
        return _utc_prefix(moment)

    def _rfc3164_uncached(self, text: str, received_at: float) -> str | None:
        parts = text.split()
        if len(parts) != 3 or len(parts[2]) != 8:
            return None
        month = MONTHS.get(parts[0])
        clock = parts[2]
        if month is None or not parts[1].isdigit() or clock[2] != ":" or clock[5] != ":":
            return None
        hms = clock[0:2] + clock[3:5] + clock[6:8]
        if not hms.isdigit() or not hms.isascii():
            return None
        try:
            received = datetime.fromtimestamp(received_at, UTC)
        except (OverflowError, OSError, ValueError):
            return None
        latest = received + _YEAR_LEEWAY
        # Feb 29 exists one year in four: look back far enough to find one.
        for year in range(received.year + 1, received.year - 8, -1):
            try:
                candidate = datetime(
                    year, month, int(parts[1]),
                    int(clock[0:2]), int(clock[3:5]), int(clock[6:8]), tzinfo=self.zone,
                )
            except (ValueError, OverflowError):  # Feb 29 in a year without it; year 0
                continue
            if candidate <= latest:
                prefix = _utc_prefix(candidate)
                return None if prefix is None else prefix + "000Z"
        return None

    def window(self, received_at: float) -> tuple[str, str]:
        """(earliest, latest) `@timestamp` an event received at `received_at` may claim."""
        second = int(received_at)
        bounds = self._windows.get(second)
        if bounds is None:
            bounds = (self._bound(second - self.max_past, "000"),
                      self._bound(second + self.max_future, "999"))
            self._remember(self._windows, second, bounds)
        return bounds

    @staticmethod
    def _bound(seconds: float, ms: str) -> str:
        try:
            return _iso_seconds(datetime.fromtimestamp(seconds, UTC)) + ms + "Z"
        except (OverflowError, OSError, ValueError):
            return "0001-01-01T00:00:00.000Z" if ms == "000" else "9999-12-31T23:59:59.999Z"

    @staticmethod
    def _remember(cache: dict[K, V], key: K, value: V) -> None:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = value


def _utc_prefix(moment: datetime) -> str | None:
    try:
        return _iso_seconds(moment)
    except (OverflowError, ValueError):
        return None  # e.g. 9999-12-31T23:59:59-23:59: past year 9999 in UTC


# RFC 3164 has no year: an event may be at most this far after its receive time (clocks a
# little ahead, a zone set a few hours apart); anything later is last year's.
_YEAR_LEEWAY = timedelta(days=1)

_FIXED_ZONES: dict[timedelta, tzinfo] = {}


def tzinfo_for(delta: timedelta) -> tzinfo:
    """A fixed-offset zone, shared per offset."""
    zone = _FIXED_ZONES.get(delta)
    if zone is None:
        zone = UTC if not delta else timezone(delta)
        _FIXED_ZONES[delta] = zone
    return zone
