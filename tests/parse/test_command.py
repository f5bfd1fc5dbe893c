"""`haproxy-receiver parse`: lines in, one document per line out (or indented JSON)."""

from __future__ import annotations

import io
import json

from receiver.config import ParseSettings
from receiver.parse.command import run_parse_command

JSON_LINE = (b'<134>Nov 25 18:21:18 haproxy[11604]: {"cp":1,"r":"GET /q?p=C:\\dir HTTP/1.1",'
             b'"HP":"/q"}\n')
HTTPLOG_LINE = (b'<134>Nov 25 18:21:38 haproxy[1]: 127.0.0.1:49360 [25/Nov/2026:18:21:38.683]'
                b' fe be/s1 0/0/0/0/0 200 161 - - ---- 1/1/0/0/0 0/0 "GET / HTTP/1.1"\n')


def test_one_json_document_per_line() -> None:
    out = io.StringIO()
    status = run_parse_command([JSON_LINE, b"\n", HTTPLOG_LINE], ParseSettings(), out, False)
    assert status == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # the blank line is skipped
    first, second = (json.loads(line) for line in lines)
    assert first["haproxy.log_format"] == "json"
    assert "_json_repaired" in first["tags"]
    assert first["haproxy.repairs"]
    assert first["url.original"] == "/q?p=C:\\dir"
    assert second["haproxy.log_format"] == "httplog"
    assert second["http.response.status_code"] == 200


def test_pretty_output_and_octet_counted_frames() -> None:
    out = io.StringIO()
    framed = b"%d %s" % (len(HTTPLOG_LINE.rstrip(b"\n")), HTTPLOG_LINE.rstrip(b"\n"))
    run_parse_command([framed], ParseSettings(field_names="raw"), out, True)
    text = out.getvalue()
    assert text.startswith("{\n  ")
    document = json.loads(text)
    assert document["cp"] == 49360
    assert document["haproxy.syslog_format"] == "local"


def test_a_pasted_line_shows_its_own_time_whatever_its_age() -> None:
    out = io.StringIO()
    old = (b"Feb  6 12:12:56 localhost haproxy[14387]: 10.0.1.2:33313 [06/Feb/2009:12:12:51.443]"
           b" fnt bck/srv1 0/0/5007 212 -- 0/0/0/0/3 0/0")
    run_parse_command([old], ParseSettings(), out, False)
    document = json.loads(out.getvalue())
    assert document["@timestamp"] == "2009-02-06T12:12:51.443Z"
    assert "tags" not in document
    assert document["haproxy.syslog_format"] == "file"
