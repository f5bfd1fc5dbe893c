"""The progress line and the summary a person watching an import reads."""

from __future__ import annotations

import io

from receiver.importer.report import Progress, Totals, summary
from receiver.importer.source import FileTally


def test_the_progress_line_shows_bytes_rate_time_left_and_counts() -> None:
    out = io.StringIO()
    progress = Progress(out, interval=0.0)
    totals = Totals(files=2, total_bytes=200 * 2**20, consumed=50 * 2**20, lines=1000,
                    acknowledged=900, new=800, existing=90, dead=10)
    progress.update(totals)
    progress._samples[0] = (progress._samples[0][0] - 2.0, 0, 0)  # as if 2 s ago nothing was done
    progress.update(totals)
    line = out.getvalue().rsplit("\r", 1)[1]
    assert "[######..................]  25% 50.0 MiB of 200.0 MiB" in line
    assert "450 events/s" in line and "ETA 0:00:06" in line
    assert "new 800  already there 90  dead-lettered 10" in line
    progress.close()
    assert out.getvalue().endswith("\n")


def test_the_summary_names_each_file_and_what_is_left() -> None:
    good = FileTally("haproxy.log", 100, kind="plain", lines=3, shipped=3, finished=1, pending=17)
    bad = FileTally("haproxy.log.2.gz", 100, kind="gzip", lines=1, shipped=0, dead=1, finished=1,
                    errors=["haproxy.log.2.gz: gzip member 1 (at compressed byte 0) is damaged"])
    totals = Totals.of([good, bad], delivered=3, existing=1)
    text = summary([good, bad], totals, 2.0, dead_letter_file="/tmp/dead.jsonl")
    assert "haproxy.log (plain): 3 lines: 17 bytes after the last line end" in text
    assert "haproxy.log.2.gz (gzip): 1 line: 1 dead-lettered\n  error: haproxy.log.2.gz: gzip" in text
    assert ("import: 4 lines from 2 files in 2.0 s (2 events/s): 2 new, 1 already there, "
            "1 dead-lettered (in /tmp/dead.jsonl)") in text
    assert "1 of 2 files could not be read whole" in text
    assert "interrupted" not in text
