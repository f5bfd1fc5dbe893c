"""Syslog headers: every `log ... format` HAProxy can send, as seen in the corpus."""

from __future__ import annotations

import pytest

from tests.parse.helpers import parse

BODY = "Proxy fe stopped."


@pytest.mark.parametrize(
    ("message", "header_format", "fields"),
    [
        (f"<134>Nov 25 18:17:32 haproxy[9877]: {BODY}", "local",
         {"process.pid": 9877, "process.name": "haproxy", "log.syslog.priority": 134}),
        (f"<134>Nov 25 18:17:32 localhost haproxy[9877]: {BODY}", "rfc3164",
         {"host.name": "localhost", "process.pid": 9877}),
        (f"<134>1 2026-11-25T18:17:32.190752+00:00 - haproxy 9877 - - {BODY}", "rfc5424",
         {"log.syslog.version": 1, "process.pid": 9877, "log.syslog.procid": None}),
        (f"<134>1 2026-11-25T18:17:32.190752+00:00 web1 haproxy 9877 - - {BODY}", "rfc5424",
         {"host.name": "web1"}),
        (f"<6>2026-11-25T18:17:32.191210+00:00 {BODY}", "timed",
         {"log.syslog.severity.code": 6, "log.level": "info"}),
        (f"<6>{BODY}", "short", {"log.level": "info"}),
        (f"<134>{BODY}", "priority",
         {"log.syslog.facility.code": 16, "log.syslog.facility.name": "local0"}),
        (f"2026-11-25T18:17:32.191210+00:00 {BODY}", "iso", {}),
        (BODY, "raw", {}),
    ],
)
def test_header_formats(message: str, header_format: str, fields: dict[str, object]) -> None:
    doc = parse(message + "\n")
    assert doc["haproxy.syslog_format"] == header_format
    assert doc["event.original"] == BODY
    assert {key: doc.get(key) for key in fields} == fields
    if header_format == "local" or (header_format == "rfc5424" and "web1" not in message):
        assert "host.name" not in doc  # `local` has no hostname; `-` means none


@pytest.mark.parametrize(("procid", "fields"), [
    ("9877", {"process.pid": 9877, "log.syslog.procid": None}),  # the template copies the pid
    ("09877", {"process.pid": 9877, "log.syslog.procid": "09877"}),  # not the pid's text
    ("worker-3", {"process.pid": None, "log.syslog.procid": "worker-3"}),
    ("12345678901", {"process.pid": None, "log.syslog.procid": "12345678901"}),
])
def test_procid_is_stored_once(procid: str, fields: dict[str, object]) -> None:
    doc = parse(f"<134>1 2026-11-25T18:17:32.190752+00:00 - haproxy {procid} - - {BODY}")
    assert {key: doc.get(key) for key in fields} == fields


def test_header_dates() -> None:
    assert parse(f"<6>2026-11-25T18:17:32.191210+00:00 {BODY}")["@timestamp"] == (
        "2026-11-25T18:17:32.191Z"
    )
    assert parse(f"<134>Nov 25 18:17:32 haproxy[1]: {BODY}")["@timestamp"] == (
        "2026-11-25T18:17:32.000Z"
    )


def test_rfc5424_structured_data_is_flattened() -> None:
    doc = parse(
        '<134>1 2026-11-25T18:23:08.199181+00:00 - haproxy 11604 - [corpus@32473 method="GET"'
        ' uri="/q?json={#22a#22:1,#22b#22:[1,2\\]}" status=200 bytes=161][x@1 a="b \\"c\\""]'
        ' {"cp":1}'
    )
    prefix = "log.syslog.structured_data.corpus@32473."
    assert doc[prefix + "method"] == "GET"
    assert doc[prefix + "uri"] == "/q?json={#22a#22:1,#22b#22:[1,2]}"
    assert doc[prefix + "status"] == "200"
    assert doc["log.syslog.structured_data.x@1.a"] == 'b "c"'
    assert doc["source.port"] == 1


@pytest.mark.parametrize(
    "message",
    [b"<999>x", b"<>x", b"<13", b"<134>Nov 25 18:17", b"<134>1 2026-11-25T18:17:32Z",
     b"<134>1 2026-11-25T18:17:32Z - - - - [unterminated", b"\x00\xff\xfe", b"", b"\n\r\0"],
)
def test_odd_headers_never_fail(message: bytes) -> None:
    doc = parse(message)
    assert "@timestamp" in doc
    assert isinstance(doc.get("event.original", doc.get("message")), str)


def test_trailing_newline_carriage_return_and_nul_are_stripped() -> None:
    doc = parse(b"<134>Nov 25 18:17:32 haproxy[1]: Proxy fe stopped.\r\n\x00")
    assert doc["event.original"] == "Proxy fe stopped."


def test_a_tag_shown_without_its_colon_after_a_host() -> None:
    # jcmoraisjr/haproxy-ingress#75: `host ingress[28] BODY` (the relay dropped the colon).
    doc = parse("Nov 28 07:48:34 k8s-node0-staging ingress[28] 192.168.53.151:53192"
                " [28/Nov/2017:07:48:34.983] httpfront be/srv 0/0/0/12/12 200 1090 - - ----"
                ' 2/2/1/2/0 0/0 "GET / HTTP/1.1"', received="2017-11-28T07:48:35")
    assert (doc["host.name"], doc["process.name"], doc["process.pid"]) == (
        "k8s-node0-staging", "ingress", 28)
    assert doc["haproxy.syslog_format"] == "file"
    assert doc["source.address"] == "192.168.53.151"
    # Without the pid glued to a name it is no tag: the remainder stays the body.
    doc = parse("Nov 28 07:48:34 k8s-node0-staging ingress 192.168.53.151:53192 x",
                received="2017-11-28T07:48:35")
    assert "process.name" not in doc
