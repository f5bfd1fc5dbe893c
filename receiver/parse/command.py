"""`haproxy-receiver parse`: show what lines become, instead of regex trial and error.

Owns turning input lines into printed documents. Each input line is one syslog message as
HAProxy sends it (a trailing newline is ignored; a leading RFC 6587 octet count such as
`303 <134>...` is removed, so a captured TCP stream's frames can be pasted too). The output is
one JSON document per line, or indented JSON when `pretty` (the CLI chooses pretty when stdout
is a terminal). Every document names its detected format (`haproxy.log_format`,
`haproxy.syslog_format`) and lists any repair (`haproxy.repairs`, `tags`).

Lines pasted here are often old (copied from a log file), and nothing is indexed: the window
the receiver puts around the receive time (`parse.max_future`, `parse.max_past`) is lifted, so
a line shows its own time whatever its age.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from typing import TextIO

import orjson

from receiver.config import ParseSettings, Seconds
from receiver.parse import Parser


def _without_octet_count(line: bytes) -> bytes:
    """`<len> <msg>` -> `<msg>` when the count matches the rest exactly."""
    digits, space, rest = line.partition(b" ")
    if space and digits.isdigit() and len(digits) < 7 and int(digits) == len(rest):
        return rest
    return line


def run_parse_command(
    lines: Iterable[bytes], settings: ParseSettings, out: TextIO, pretty: bool
) -> int:
    """Parse each line and print its document; returns the exit status (0)."""
    parser = Parser(dataclasses.replace(settings, max_future=Seconds(0), max_past=Seconds(0)))
    option = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS if pretty else 0
    for line in lines:
        message = _without_octet_count(line.rstrip(b"\r\n"))
        if not message.strip():
            continue
        document = parser.parse(message, time.time())
        out.write(orjson.dumps(document, option=option).decode())
        out.write("\n")
    out.flush()
    return 0
