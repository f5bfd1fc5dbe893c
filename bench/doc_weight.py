"""Bytes and fields per document: what each event costs the cluster in `_source`.

Run: `python bench/doc_weight.py [--lines]`. Parses the seed JSON line, the README's httplog
line and the real lines of tests/parse/data/real_lines.jsonl with the default settings and
prints, per document, the bytes of its `_source` as shipped (nested objects, written by
receiver/ship/nesting.py; the `log.source.address` of a line received over the network adds ~30
more), the same document flat (dotted names, as the parser makes it and earlier versions
shipped it) and its field count (leaf keys; a list counts once). For the lines whose documents
Elastic's HAProxy integration publishes as pipeline test expectations, its figures stand beside ours (measured
from the expected documents at the commits below, compact JSON, leaf fields; `bare` leaves out
`event.original` and the `preserve_original_event` tag, which its tests turn on and its default
leaves off). `--lines` prints every real line, not only the summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.parse_bench import SEED_LINE
from receiver.config import ParseSettings
from receiver.parse import Parser
from receiver.ship.nesting import NestedEncoder

REPO = Path(__file__).resolve().parents[1]
REAL_LINES = REPO / "tests" / "parse" / "data" / "real_lines.jsonl"
HTTPLOG_LINE = (  # README "Walkthrough" (tests/data/corpus, HAProxy 2.6)
    b"<134>Nov 25 18:21:42 haproxy[11604]: 127.0.0.1:49494 [25/Nov/2026:18:21:42.315] "
    b"fe_httplog be_app/s1 0/0/0/0/0 404 161 - - ---- 1/1/0/0/0 0/0 "
    b'"GET /status/404?ref=home&page=2 HTTP/1.1"'
)
_PIPELINE = "elastic/integrations packages/haproxy/data_stream/log/_dev/test/pipeline/"


class Reference(NamedTuple):
    """One expected document of Elastic's integration, measured: bytes and leaf fields as
    published, and bare (without event.original and its tag)."""

    bytes: int
    fields: int
    bare_bytes: int
    bare_fields: int
    origin: str


# A real line (as in real_lines.jsonl) -> the figures of its expected document.
ELASTIC: dict[str, Reference] = {
    "Feb  6 12:14:14 localhost haproxy[14389]: 10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in"
    ' static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 {1wt.eu} {} "GET /index.html'
    ' HTTP/1.1"':
        Reference(1214, 42, 974, 40, _PIPELINE + "test-haproxy.log-expected.json @ c81e9fe7"
                  " (3rd)"),
    "Feb  6 12:12:56 localhost haproxy[14387]: 10.0.1.2:33313 [06/Feb/2009:12:12:51.443] fnt"
    " bck/srv1 0/0/5007 212 -- 0/0/0/0/3 0/0":
        Reference(725, 27, 550, 25, _PIPELINE + "test-tcplog.log-expected.json @ 60b3b60a (2nd)"),
    "Dec 10 12:01:46 voyager haproxy[19312]: 127.0.0.1:35982 [10/Dec/2018:12:01:46.395]"
    " http-webservices http-webservices/<NOSRV> 0/-1/-1/-1/0 503 213 - - SC-- 1/1/0/0/0 0/0"
    ' "GET / HTTP/1.1"':
        Reference(1122, 39, 886, 37, _PIPELINE + "test-httplog-no-headers.log-expected.json"
                  " @ 072de6d4 (1st)"),
}


_SHIPPED = NestedEncoder()


def measure(document: dict[str, Any]) -> tuple[int, int, int]:
    """`_source` bytes as shipped (nested), flat, and the number of fields."""
    return len(_SHIPPED.encode(document)), len(orjson.dumps(document)), len(document)


def main() -> int:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--lines", action="store_true", help="print every real line")
    args = arguments.parse_args()
    parser = Parser(ParseSettings())
    print(f"{'document':<44} {'bytes':>6} {'flat':>6} {'fields':>6}   Elastic's: bytes / fields"
          " (bare)")
    for name, line, stamp in (
        ("seed JSON line", SEED_LINE.rstrip(b"\n"), "2026-11-25T18:21:09Z"),
        ("httplog (README walkthrough)", HTTPLOG_LINE, "2026-11-25T18:21:43Z"),
    ):
        size, flat, fields = measure(
            parser.parse(line, datetime.fromisoformat(stamp).timestamp()))
        print(f"{name:<44} {size:>6} {flat:>6} {fields:>6}   none published")
    by_format: dict[str, list[tuple[int, int]]] = {}
    for text in REAL_LINES.read_text().splitlines():
        record = json.loads(text)
        received = datetime.fromisoformat(record["received"].replace("Z", "+00:00")).timestamp()
        document = parser.parse(record["line"].encode(), received)
        size, flat, fields = measure(document)
        by_format.setdefault(str(document.get("haproxy.log_format")), []).append((size, fields))
        reference = ELASTIC.get(record["line"])
        if reference is not None or args.lines:
            label = f"{document.get('haproxy.log_format')}: {record['line'][:28]}…"
            theirs = (f"{reference.bytes:>5} / {reference.fields} ({reference.bare_bytes} / "
                      f"{reference.bare_fields})  {reference.origin}") if reference else ""
            print(f"{label:<44} {size:>6} {flat:>6} {fields:>6}   {theirs}")
    print(f"\nreal lines ({REAL_LINES.relative_to(REPO)}), mean per format:")
    for kind, rows in sorted(by_format.items(), key=lambda item: -len(item[1])):
        mean_bytes = sum(size for size, _ in rows) / len(rows)
        mean_fields = sum(fields for _, fields in rows) / len(rows)
        print(f"  {kind:<10} {len(rows):>4} lines {mean_bytes:>8.0f} bytes {mean_fields:>6.1f} fields")
    return 0


if __name__ == "__main__":
    sys.exit(main())
