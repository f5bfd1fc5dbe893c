"""The syslog header of one message: every header HAProxy's `log ... format` can emit, and the
headers a log file, a relay or the journal puts in front of HAProxy's lines.

Owns: splitting a message into header fields (written into the document as `log.syslog.*`,
`host.name`, `process.*`) and the body (the MSG part), and naming the header format, detected
per message with no setting:

| format     | example                                                             |
|------------|---------------------------------------------------------------------|
| `local`    | `<134>Nov 25 18:17:32 haproxy[9877]: MSG` (2.6 default, no host)    |
| `rfc3164`  | `<134>Nov 25 18:17:32 localhost haproxy[9877]: MSG`                 |
| `rfc5424`  | `<134>1 2026-11-25T18:17:32.190752+00:00 - haproxy 9877 - [SD] MSG` |
| `timed`    | `<6>2026-11-25T18:17:32.191210+00:00 MSG`                           |
| `forward`  | `<134>2026-11-30T10:00:00.123+01:00 lb1 haproxy[4242]: MSG` (relay) |
| `short`    | `<6>MSG` (severity only: PRI below 8)                               |
| `priority` | `<134>MSG`                                                          |
| `tag`      | `haproxy[14387]: MSG`, with or without `<PRI>`                      |
| `file`     | `Jul 30 09:03:52 localhost haproxy[32450]: MSG` (journalctl -o short)|
| `iso-file` | `2019-01-14T21:49:23+00:00 localhost haproxy[6]: MSG` (rsyslog file) |
| `iso`      | `2026-11-25T18:17:32.191210+00:00 MSG`                              |
| `go-log`   | `2018/04/16 20:34:21 HAProxy: MSG` (Go's log date, then a tag)      |

(`file` is what rsyslog and syslog-ng write to a log file by default; `iso-file` is rsyslog's
RSYSLOG_FileFormat and `journalctl -o short-iso`, with microseconds, `Z` or `+0100` alike, and
also `2019-01-14 21:49:23,123456 host tag:` and a host written twice; a day below 10 may lack
its padding blank, `Jan 1`.)
| `raw`      | `MSG`                                                               |

`short` and `priority` differ only in the PRI value; a PRI below 8 (facility `kern`) is taken
as `short`, which is what HAProxy sends for it. Blanks before the header and line ends (CR, LF,
NUL, blanks) after the body are not part of either. The header date is returned unconverted:
the body's own date (with milliseconds) usually wins, so converting it here would be wasted
work.
"""

from __future__ import annotations

import re
from typing import Any

from receiver.parse.fields import name_of
from receiver.parse.timestamps import MONTHS

SEVERITY_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
FACILITY_NAMES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
    "authpriv", "ftp", "ntp", "audit", "alert", "cron2",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)

# Header date kinds returned beside the body, converted by the caller only when needed.
DATE_NONE = 0
DATE_RFC3164 = 1
DATE_ISO = 2


SYSLOG_FORMAT = "haproxy.syslog_format"  # which of the header formats above
# The header's fields (each name written once; `process.pid` is the `%pid` variable's).
# Each value is stored once: the header's host, application and severity name go to the
# names ECS's core set and dashboards use (`host.name`, `process.name`, `log.level`), and
# `log.syslog.hostname`, `log.syslog.appname` and `log.syslog.severity.name` are aliases of
# them in the index template (receiver/ship/index-template.json). `log.syslog.procid` is
# written only when it is not a number's text (RFC 5424 allows any): a number is
# `process.pid`, which the template copies into `log.syslog.procid` (`copy_to`: indexed, not
# stored), so a query on either finds it. Kept beside its counterpart on purpose: the priority
# beside its severity and facility codes (ECS defines all three, and the codes are what
# filters use).
HOST = "host.name"
LEVEL = "log.level"  # the severity's name; HAProxy's stderr gives it too
PROCESS = "process.name"
PROCID = "log.syslog.procid"
PID = name_of("pid")
VERSION = "log.syslog.version"
MSGID = "log.syslog.msgid"


def _severity_fields(severity: int) -> dict[str, Any]:
    return {
        "log.syslog.severity.code": severity,
        LEVEL: SEVERITY_NAMES[severity],
    }


def _pri_fields(pri: int) -> dict[str, Any]:
    severity = pri & 7
    facility = pri >> 3
    fields: dict[str, Any] = {"log.syslog.priority": pri, **_severity_fields(severity),
                              "log.syslog.facility.code": facility}
    if facility < len(FACILITY_NAMES):
        fields["log.syslog.facility.name"] = FACILITY_NAMES[facility]
    return fields


_PRI_FIELDS = {pri: _pri_fields(pri) for pri in range(192)}
_SHORT_FIELDS = {pri: _severity_fields(pri) for pri in range(8)}


def _put_host(host: str, doc: dict[str, Any]) -> None:
    """The sending host, unless it is `-` (none)."""
    if host != "-":
        doc[HOST] = host


def _put_app(name: str, pid: str, doc: dict[str, Any]) -> None:
    """The application and its process id (`-`: none)."""
    if name != "-":
        doc[PROCESS] = name
    if pid and pid != "-":
        number = int(pid) if pid.isdigit() and pid.isascii() and len(pid) < 10 else None
        if number is not None:
            doc[PID] = number
        if number is None or str(number) != pid:  # else the template copies it (copy_to)
            doc[PROCID] = pid
_TAG_CACHE: dict[str, dict[str, Any]] = {}


def _tag_fields(tag: str) -> dict[str, Any]:
    """`haproxy[9877]` -> process.name and procid/process.pid (cached per tag)."""
    cached = _TAG_CACHE.get(tag)
    if cached is not None:
        return cached
    name, pid = tag, ""
    bracket = tag.find("[")
    if bracket > 0 and tag.endswith("]"):
        name, pid = tag[:bracket], tag[bracket + 1 : -1]
    fields: dict[str, Any] = {}
    _put_app(name, pid, fields)
    if len(_TAG_CACHE) > 1024:
        _TAG_CACHE.clear()
    _TAG_CACHE[tag] = fields
    return fields


def _looks_iso(text: str) -> bool:
    return (
        len(text) >= 19 and text[4:5] == "-" and text[7:8] == "-" and text[10:11] in ("T", "t")
        and text[:4].isdigit()
    )


# `host tag: ` after a date (the tag with or without `[pid]`), and a bare `name[pid]: `. A
# program name starts with a letter; a host is not `address:port` (an HAProxy client, which a
# token ending in `:` after it would otherwise turn into a header; IPv6 `::` forms pass).
_HOST_TAG = re.compile(
    r'(?![^\s:]*(?::[^\s:]+)*:\d+ )'  # not `a.b.c.d:port`, `name:port`
    r'([^\s{\["<]\S*) ([A-Za-z][A-Za-z0-9_./-]{0,63}(?:\[[^\]\s]{1,20}\])?)(?:: |:$)')
_BARE_TAG = re.compile(r"([A-Za-z0-9_./-]{1,64}\[[0-9]{1,10}\])(?:: |:$)")
_TAG_NO_COLON = re.compile(r"[A-Za-z][A-Za-z0-9_./-]{0,63}\[[0-9]{1,10}\]").fullmatch


# RFC 3164/local headers seen before: `<134>Nov 25 18:21:08 haproxy[11604]` -> (fields, offset
# of the date, format). The key holds the date, so entries turn over each second; bounded:
# 1,024 is a second of a thousand senders, ~1 MiB (each entry keeps its header's fields).
_HEADER_CACHE: dict[str, tuple[dict[str, Any], int, str]] = {}
_HEADER_CACHE_LIMIT = 1024
_MONTH_INITIALS = frozenset(month[0] for month in MONTHS)


# The header hit last (its cache key, the text before `: `, and its entry): messages
# arrive in runs from one sender within one second, and a prefix test is cheaper than the
# search, slice and hash of a cache lookup. Any text that starts with the key and `: ` gives the
# lookup that same key (its first `: ` from offset 16 is the one after the key).
_last_header: tuple[str, dict[str, Any], int, str] | None = None  # key, fields, date_at, format


def parse_header(text: str, doc: dict[str, Any]) -> tuple[str, str, int, str]:
    """Fill the header fields (and `haproxy.syslog_format`) into `doc`; return (body, header
    date text, date kind, format)."""
    global _last_header
    last = _last_header
    if last is not None and text.startswith(last[0]) and text.startswith(": ", len(last[0])):
        key, fields, date_at, header_format = last
        doc.update(fields)
        return text[len(key) + 2 :], text[date_at : date_at + 15], DATE_RFC3164, header_format
    if text[:1] == "<":
        close = text.find(">", 1, 5)
        end = -1
        if text[close + 1 : close + 2] in _MONTH_INITIALS:
            end = text.find(": ", 16, 300)
            if end > 0:
                key = text[:end]
                hit = _HEADER_CACHE.get(key)
                if hit is not None:
                    fields, date_at, header_format = hit
                    _last_header = (key, fields, date_at, header_format)
                    doc.update(fields)
                    body = text[end + 2 :]
                    return body, text[date_at : date_at + 15], DATE_RFC3164, header_format
        if close > 1 and text[1:close].isdigit() and text[1:close].isascii():
            pri = int(text[1:close])
            if pri < 192:
                header: dict[str, Any] = {}
                result = _after_pri(text[close + 1 :], pri, header)
                header[SYSLOG_FORMAT] = result[3]  # in the cached fields: no store per message
                doc.update(header)
                if (
                    end > 0 and result[2] == DATE_RFC3164
                    and len(text) - len(result[0]) == end + 2
                ):
                    if len(_HEADER_CACHE) >= _HEADER_CACHE_LIMIT:
                        _HEADER_CACHE.clear()
                    _HEADER_CACHE[text[:end]] = (header, close + 1, result[3])
                return result
    result = _without_pri(text, doc)
    doc[SYSLOG_FORMAT] = result[3]
    return result


def _without_pri(text: str, doc: dict[str, Any]) -> tuple[str, str, int, str]:
    """Lines as log files, relays and the journal write them: no `<PRI>` (or blanks first)."""
    if text[:1] in (" ", "\t"):
        stripped = text.lstrip(" \t")
        if stripped[:1] == "<":
            return parse_header(stripped, doc)
        text = stripped
    if text[:3] in MONTHS:
        if _bsd_date(text):
            return _rfc3164(text, doc, "file", "file")
        if _unpadded_day(text):
            return _rfc3164(text[:4] + " " + text[4:], doc, "file", "file")
    if _looks_iso(text):
        space = text.find(" ")
        if space > 0:
            return _after_iso(text, space, doc, "iso-file", "iso")
    tagged = _BARE_TAG.match(text) if text.find("]:", 0, 80) > 0 else None
    if tagged is not None:
        doc.update(_tag_fields(tagged[1]))
        return text[tagged.end() :], "", DATE_NONE, "tag"
    if text[4:5] in ("/", "-") and text[:4].isdigit():
        dated = _dated_header(text, doc)
        if dated is not None:
            return dated
    return text, "", DATE_NONE, "raw"


# `2018/04/16 20:34:21 tag: ` (Go's standard log date, then a program's name) and
# `2019-01-14 21:49:23,123456 host tag: ` (a date with a blank and a comma, then a file's
# `host tag`): read only when the whole header has its shape.
_GO_HEADER = re.compile(
    r"(\d{4})/(\d\d)/(\d\d) (\d\d:\d\d:\d\d)(?:\.(\d{1,9}))? "
    r"([A-Za-z][A-Za-z0-9_./-]{0,63}(?:\[[0-9]{1,10}\])?)(?:: |:$)")
_SPACED_DATE = re.compile(r"(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:[,.](\d{1,9}))?"
                          r"((?:Z|[+-]\d\d:?\d\d)?) ")


def _dated_header(text: str, doc: dict[str, Any]) -> tuple[str, str, int, str] | None:
    match = _GO_HEADER.match(text)
    if match is not None:
        doc.update(_tag_fields(match[6]))
        date = f"{match[1]}-{match[2]}-{match[3]}T{match[4]}" + (
            f".{match[5]}" if match[5] else "")
        return text[match.end() :], date, DATE_ISO, "go-log"
    match = _SPACED_DATE.match(text)
    if match is None:
        return None
    header = _HOST_TAG.match(text, match.end())
    if header is None:
        return None
    _put_host(header[1], doc)
    doc.update(_tag_fields(header[2]))
    date = f"{match[1]}T{match[2]}" + (f".{match[3]}" if match[3] else "") + match[4]
    return text[header.end() :], date, DATE_ISO, "iso-file"


def _unpadded_day(text: str) -> bool:
    """`Jan 1 00:00:01 ` (a day below 10 written without its padding blank)."""
    return (text[3:4] == " " and text[4:5].isdigit() and text[5:6] == " "
            and text[8:9] == ":" and text[11:12] == ":" and text[14:15] == " ")


def _bsd_date(text: str) -> bool:
    """`Nov 25 18:17:32 ` (the day may be space-padded)."""
    return len(text) >= 16 and text[15:16] in (" ", ".") and text[9:10] == ":" and text[
        12:13] == ":"


def host_tag_after(text: str, space: int) -> re.Match[str] | None:
    """`host tag: ` (or `host host tag: `) right after the blank at `space`, or None."""
    # `host tag: ` has one blank before its `: ` (checked before the pattern: most bodies have
    # none, or many).
    colon = text.find(": ", space + 1, space + 200)
    blanks = text.count(" ", space + 1, colon) if colon > 0 else 0
    if blanks == 1:
        return _HOST_TAG.match(text, space + 1)
    if blanks == 2:
        # `host host tag: ` (some router images write the host twice): the same name twice.
        second = text.find(" ", space + 1)
        if text[space + 1 : second] == text[second + 1 : text.find(" ", second + 1)]:
            return _HOST_TAG.match(text, second + 1)
    return None


def _after_iso(text: str, space: int, doc: dict[str, Any], tagged_format: str,
               plain_format: str) -> tuple[str, str, int, str]:
    """An ISO date, then either `host tag: MSG` (a relay's or a file's header) or MSG."""
    date = text[:space]
    header = host_tag_after(text, space)
    if header is not None:
        _put_host(header[1], doc)
        doc.update(_tag_fields(header[2]))
        return text[header.end() :], date, DATE_ISO, tagged_format
    return text[space + 1 :], date, DATE_ISO, plain_format


def _after_pri(rest: str, pri: int, doc: dict[str, Any]) -> tuple[str, str, int, str]:
    first = rest[:3]
    if first in MONTHS:
        if _bsd_date(rest):
            doc.update(_PRI_FIELDS[pri])
            return _rfc3164(rest, doc, "local", "rfc3164")
        if _unpadded_day(rest):
            doc.update(_PRI_FIELDS[pri])
            return _rfc3164(rest[:4] + " " + rest[4:], doc, "local", "rfc3164")
    if rest[:2] == "1 " and _looks_iso(rest[2:]):
        return _rfc5424(rest, pri, doc)
    if _looks_iso(rest):
        space = rest.find(" ")
        if space > 0:
            doc.update(_SHORT_FIELDS[pri] if pri < 8 else _PRI_FIELDS[pri])
            return _after_iso(rest, space, doc, "forward", "timed")
    tagged = _BARE_TAG.match(rest) if rest.find("]:", 0, 80) > 0 else None
    if tagged is not None:
        doc.update(_SHORT_FIELDS[pri] if pri < 8 else _PRI_FIELDS[pri])
        doc.update(_tag_fields(tagged[1]))
        return rest[tagged.end() :], "", DATE_NONE, "tag"
    if pri < 8:
        doc.update(_SHORT_FIELDS[pri])
        return rest, "", DATE_NONE, "short"
    doc.update(_PRI_FIELDS[pri])
    return rest, "", DATE_NONE, "priority"


def _rfc3164(rest: str, doc: dict[str, Any], local: str, hosted: str
             ) -> tuple[str, str, int, str]:
    """After a BSD date: `tag: MSG` (`local`), `host tag: MSG` (`hosted`), or MSG."""
    date = rest[:15]
    after_at = 16
    if rest[15:16] == ".":  # `journalctl -o short-precise`: microseconds, not kept
        after_at = rest.find(" ", 16) + 1 or len(rest)
    after = rest[after_at:]
    space = after.find(" ")
    first = after[:space] if space >= 0 else after
    if first.endswith(":") and len(first) > 1:
        doc.update(_tag_fields(first[:-1]))
        return after[space + 1 :] if space >= 0 else "", date, DATE_RFC3164, local
    if space > 0:
        second_end = after.find(" ", space + 1)
        second = after[space + 1 : second_end] if second_end >= 0 else after[space + 1 :]
        if second.endswith(":") and len(second) > 1:
            _put_host(first, doc)
            doc.update(_tag_fields(second[:-1]))
            body = after[second_end + 1 :] if second_end >= 0 else ""
            return body, date, DATE_RFC3164, hosted
        # `host name[pid] ` without the colon (as some relays show a tag): taken only with
        # the pid glued to a program's name, which no HAProxy body starts with.
        if second_end > 0 and _TAG_NO_COLON(second) is not None:
            _put_host(first, doc)
            doc.update(_tag_fields(second))
            return after[second_end + 1 :], date, DATE_RFC3164, hosted
    # No `tag:`: not HAProxy's layout; the whole remainder is the body.
    return after, date, DATE_RFC3164, hosted


_NAMES_CACHE: dict[tuple[int, str, str, str, str], dict[str, Any]] = {}


def _rfc5424(rest: str, pri: int, doc: dict[str, Any]) -> tuple[str, str, int, str]:
    parts = rest.split(" ", 6)
    date = parts[1]
    if len(parts) < 7:
        # A header cut short: keep what is whole, no body.
        doc.update(_PRI_FIELDS[pri])
        doc[VERSION] = 1
        _rfc5424_names(parts[2:6], doc)
        return "", date, DATE_ISO, "rfc5424"
    key = (pri, parts[2], parts[3], parts[4], parts[5])
    fields = _NAMES_CACHE.get(key)
    if fields is None:
        fields = dict(_PRI_FIELDS[pri])
        fields[VERSION] = 1
        _rfc5424_names(parts[2:6], fields)
        if len(_NAMES_CACHE) >= 1024:
            _NAMES_CACHE.clear()
        _NAMES_CACHE[key] = fields
    doc.update(fields)
    tail = parts[6]
    if tail[:2] == "- ":
        body = tail[2:]
    elif tail[:1] == "[":
        end = _sd_end(tail)
        for sd_id, params in _parse_sd(tail[:end]).items():
            for name, value in params.items():
                doc[f"log.syslog.structured_data.{sd_id}.{name}"] = value
        body = tail[end + 1 :] if end < len(tail) else ""
    elif tail == "-":
        body = ""
    else:
        body = tail  # a sender that omitted SD; keep the text
    if body[:1] == "\ufeff":
        body = body[1:]
    return body, date, DATE_ISO, "rfc5424"


def _rfc5424_names(names: list[str], doc: dict[str, Any]) -> None:
    host, app, procid, msgid = [*names, "-", "-", "-", "-"][:4]
    _put_host(host, doc)
    _put_app(app, procid, doc)
    if msgid != "-":
        doc[MSGID] = msgid


# The characters that steer the SD scan; everything between them is skipped in one step.
_SD_SPECIAL = re.compile(r'["\\\]]')
_SD_NAME_END = re.compile(r"[ \]]")


def _sd_end(text: str) -> int:
    """Index just past the last SD element (`[..][..]`), honouring `\\]` and quoted values."""
    i = 0
    n = len(text)
    special = _SD_SPECIAL.search
    while i < n and text[i] == "[":
        i += 1
        in_quotes = False
        while i < n:
            found = special(text, i)
            if found is None:
                i = n
                break
            i = found.start()
            c = text[i]
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_quotes = not in_quotes
            elif not in_quotes:  # `]`
                break
            i += 1
        i += 1
    return min(i, n)


def _parse_sd(text: str) -> dict[str, dict[str, str]]:
    """`[id@1 a="x" b="y"][id2 ...]` -> {"id@1": {"a": "x", "b": "y"}, ...}; values unescaped."""
    if "\\" not in text:
        return _parse_sd_plain(text)
    return _parse_sd_escaped(text)


def _parse_sd_escaped(text: str) -> dict[str, dict[str, str]]:
    """`_parse_sd` one character at a time, for SD with backslash escapes."""
    elements: dict[str, dict[str, str]] = {}
    i = 0
    n = len(text)
    while i < n and text[i] == "[":
        i += 1
        start = i
        while i < n and text[i] not in " ]":
            i += 1
        params: dict[str, str] = {}
        elements[text[start:i]] = params
        while i < n and text[i] == " ":
            i += 1
            eq = text.find("=", i)
            if eq < 0:
                return elements
            name = text[i:eq]
            i = eq + 1
            value_chars: list[str] = []
            if i < n and text[i] == '"':
                i += 1
                while i < n and text[i] != '"':
                    if text[i] == "\\" and i + 1 < n:
                        i += 1
                    value_chars.append(text[i])
                    i += 1
                i += 1
            else:
                # HAProxy writes numbers unquoted (`status=200`): read up to space or `]`.
                while i < n and text[i] not in " ]":
                    if text[i] == "\\" and i + 1 < n:
                        i += 1
                    value_chars.append(text[i])
                    i += 1
            params[name] = "".join(value_chars)
        while i < n and text[i] != "]":
            i += 1
        i += 1
    return elements


def _parse_sd_plain(text: str) -> dict[str, dict[str, str]]:
    """`_parse_sd` for SD without backslashes (the usual case): the same reading, with a
    search per token instead of a step per character."""
    elements: dict[str, dict[str, str]] = {}
    i = 0
    n = len(text)
    name_end = _SD_NAME_END.search
    while i < n and text[i] == "[":
        i += 1
        found = name_end(text, i)
        end = n if found is None else found.start()
        params: dict[str, str] = {}
        elements[text[i:end]] = params
        i = end
        while i < n and text[i] == " ":
            i += 1
            eq = text.find("=", i)
            if eq < 0:
                return elements
            name = text[i:eq]
            i = eq + 1
            if i < n and text[i] == '"':
                i += 1
                end = text.find('"', i)
                if end < 0:
                    end = n
                params[name] = text[i:end]
                i = end + 1
            else:
                found = name_end(text, i)
                end = n if found is None else found.start()
                params[name] = text[i:end]
                i = end
        if i < n:
            end = text.find("]", i)
            i = n if end < 0 else end
        i += 1
    return elements
