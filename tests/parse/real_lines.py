"""The collection of real HAProxy lines (tests/parse/data/real_lines.jsonl, see its README.md):
loading, and checking a document against the key fields read by hand."""

from __future__ import annotations

import calendar
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from receiver.parse import TAG_FAILURE

REAL_LINES = Path(__file__).resolve().parent / "data" / "real_lines.jsonl"

# expected key -> document field
_FIELDS = {
    "format": "haproxy.log_format",
    "client_port": "source.port",
    "frontend": "haproxy.frontend_name",
    "backend": "haproxy.backend_name",
    "server": "haproxy.server_name",
    "status": "http.response.status_code",
    "method": "http.request.method",
    "path": "url.path",
    "termination_state": "haproxy.termination_state",
    "time": "@timestamp",
}


@dataclass(frozen=True)
class RealLine:
    """One published line, where it was published, when it is taken to be received, and its
    key fields as read by hand (a None value: the field must be absent)."""

    line: str
    origin: dict[str, str]
    received: float
    expect: dict[str, Any]

    @property
    def where(self) -> str:
        origin = self.origin
        return origin.get("url") or f"{origin['repo']}/{origin['path']}@{origin['commit'][:10]}"


def epoch(text: str) -> float:
    """`2026-11-25T18:21:08Z` -> epoch seconds."""
    return float(calendar.timegm((int(text[0:4]), int(text[5:7]), int(text[8:10]),
                                  int(text[11:13]), int(text[14:16]), int(text[17:19]))))


def real_lines(path: Path = REAL_LINES) -> list[RealLine]:
    records = []
    for text in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(text)
        records.append(RealLine(record["line"], record["origin"], epoch(record["received"]),
                                record["expect"]))
    return records


def wrong_fields(line: RealLine, doc: dict[str, Any]) -> list[str]:
    """The key fields of `doc` that differ from what was read by hand ([] when all agree)."""
    expect = line.expect
    problems: list[str] = []
    if expect.get("failure"):
        message = doc.get("message", "")
        if TAG_FAILURE not in doc.get("tags", ()):
            problems.append("not tagged as a failure")
        if not message or not line.line.endswith(message) or len(message) < len(line.line) - 80:
            problems.append(f"body not kept whole in message: {message!r}")
        for field in ("source.address", "http.response.status_code", "haproxy.frontend_name"):
            if field in doc:
                problems.append(f"{field} set on a line that was not read")
        return problems
    if TAG_FAILURE in doc.get("tags", ()):
        return [f"not parsed: {doc.get('error.message')}"]
    for key, field in _FIELDS.items():
        if key in expect and doc.get(field) != expect[key]:
            problems.append(f"{field}: {doc.get(field)!r}, expected {expect[key]!r}")
    if "client_ip" in expect:
        client = expect["client_ip"]
        if doc.get("source.address") != client:
            problems.append(f"source.address: {doc.get('source.address')!r}, expected {client!r}")
    if "bytes" in expect:
        field = "haproxy.bytes_read"  # every line kind (`http.response.bytes` is its alias)
        if doc.get(field) != expect["bytes"]:
            problems.append(f"{field}: {doc.get(field)!r}, expected {expect['bytes']!r}")
    for key, value in expect.items():
        if key not in _FIELDS and key not in ("client_ip", "bytes", "format", "failure"):
            field = {"backend": "haproxy.backend_name"}.get(key, key)
            found = doc.get(field)
            if (list(found) if type(found) is tuple else found) != value:
                problems.append(f"{field}: {doc.get(field)!r}, expected {value!r}")
    return problems
