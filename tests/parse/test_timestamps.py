"""Dates: every HAProxy form, the RFC 3164 year rule across New Year, the timezone setting."""

from __future__ import annotations

import pytest

from receiver.parse.timestamps import Timestamps
from tests.parse.helpers import epoch, parse


@pytest.mark.parametrize(
    ("header_date", "received", "expected"),
    [
        # Logged on Dec 31, received just after midnight on Jan 1: last year.
        ("Dec 31 23:59:59", "2027-01-01T00:00:02", "2026-12-31T23:59:59.000Z"),
        # Logged on Jan 1 by a clock a little ahead, received on Dec 31: next year.
        ("Jan  1 00:00:01", "2026-12-31T23:59:58", "2027-01-01T00:00:01.000Z"),
        ("Nov 25 18:17:32", "2026-11-25T18:17:33", "2026-11-25T18:17:32.000Z"),
        # Feb 29 exists only in the leap year nearest the receive time.
        ("Feb 29 12:00:00", "2028-03-01T00:00:00", "2028-02-29T12:00:00.000Z"),
    ],
)
def test_rfc3164_year_closest_to_receive_time(
    header_date: str, received: str, expected: str
) -> None:
    assert Timestamps().rfc3164(header_date, epoch(received)) == expected
    # Through the whole parser: a header-only date (text body) uses the rule too.
    doc = parse(f"<134>{header_date} haproxy[1]: Proxy fe stopped.", received=received)
    assert doc["@timestamp"] == expected


def test_timezone_setting_applies_to_zoneless_dates() -> None:
    line = (
        '<134>Jul  1 12:00:00 haproxy[1]: {"t":"01/Jul/2026:12:00:00.250",'
        '"Tl":"01/Jul/2026:12:00:00 +0200"}'
    )
    assert parse(line, received="2026-07-01T10:00:00")["@timestamp"] == (
        "2026-07-01T12:00:00.250Z"
    )
    berlin = parse(line, received="2026-07-01T10:00:00", timezone="Europe/Berlin")
    assert berlin["@timestamp"] == "2026-07-01T10:00:00.250Z"  # CEST is UTC+2
    text = parse("<134>Jan 15 12:00:00 haproxy[1]: Proxy x stopped.",
                 received="2026-01-15T11:00:00", timezone="Europe/Berlin")
    assert text["@timestamp"] == "2026-01-15T11:00:00.000Z"  # CET is UTC+1


def test_date_with_offset_is_not_shifted_by_the_setting() -> None:
    stamps = Timestamps("America/New_York")
    assert stamps.haproxy_date_offset("25/Nov/2026:18:21:17 +0000") == "2026-11-25T18:21:17.000Z"
    assert stamps.haproxy_date_offset("25/Nov/2026:18:21:17 -0530") == "2026-11-25T23:51:17.000Z"
    assert stamps.haproxy_date_offset("25/Nov/2026:18:21:08.466 +0000") == (
        "2026-11-25T18:21:08.466Z"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("25/Nov/2026:18:21:08.761", "2026-11-25T18:21:08.761Z"),
        ("25/Nov/2026:18:21:08", "2026-11-25T18:21:08.000Z"),
        ("25/Nov/2026:18:21:08.7", "2026-11-25T18:21:08.700Z"),
        ("31/Dec/2026:23:59:59.999", "2026-12-31T23:59:59.999Z"),
        ("32/Nov/2026:18:21:08.761", None),
        ("25/Foo/2026:18:21:08.761", None),
        ("25/Nov/2026:18:21:08.76x", None),
        ("25/Nov/2026 18:21:08.761", None),
        ("", None),
    ],
)
def test_haproxy_date(text: str, expected: str | None) -> None:
    assert Timestamps().haproxy_date(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T18:17:32.190752+00:00", "2026-11-25T18:17:32.190Z"),
        ("2026-11-25T18:17:32Z", "2026-11-25T18:17:32.000Z"),
        ("2026-11-25T20:17:32.5+02:00", "2026-11-25T18:17:32.500Z"),
        ("2026-13-25T18:17:32Z", None),
        ("2026-11-25T18:17:32+99:00", None),
    ],
)
def test_iso8601(text: str, expected: str | None) -> None:
    assert Timestamps().iso8601(text) == expected


def test_invalid_body_date_falls_back_to_header_then_receive_time() -> None:
    doc = parse('<134>Nov 25 18:00:01 haproxy[1]: {"t":"garbage","cp":1}')
    assert doc["@timestamp"] == "2026-11-25T18:00:01.000Z"
    raw = parse('{"t":"garbage"}', received="2026-11-25T18:30:00")
    assert raw["@timestamp"] == "2026-11-25T18:30:00.000Z"


def test_epoch_date() -> None:
    doc = parse('<134>Nov 25 18:00:01 haproxy[1]: {"Ts":1795630000}')
    assert doc["@timestamp"] == "2026-11-25T18:06:40.000Z"
