"""Dates: every HAProxy form, the RFC 3164 year rule across New Year, the timezone setting."""

from __future__ import annotations

import random

import pytest

from receiver.config import ParseSettings
from receiver.parse import TAG_TIME, Parser
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
        # Feb 29 exists only in leap years: the latest one not in the future.
        ("Feb 29 12:00:00", "2028-03-01T00:00:00", "2028-02-29T12:00:00.000Z"),
        ("Feb 29 12:00:00", "2027-03-01T00:00:00", "2024-02-29T12:00:00.000Z"),
        # A January line read at the end of November is this January's, not next (which
        # would be closer, and in the future).
        ("Jan 21 10:43:56", "2026-11-30T04:00:00", "2026-01-21T10:43:56.000Z"),
        # Never more than a day after the receive time.
        ("Dec  1 04:00:00", "2026-11-30T04:00:00", "2026-12-01T04:00:00.000Z"),
        ("Dec  1 04:00:01", "2026-11-30T04:00:00", "2025-12-01T04:00:01.000Z"),
    ],
)
def test_rfc3164_year_is_the_latest_not_a_day_ahead(
    header_date: str, received: str, expected: str
) -> None:
    assert Timestamps().rfc3164(header_date, epoch(received)) == expected
    # Through the whole parser: a header-only date (text body) uses the rule too.
    doc = parse(f"<134>{header_date} haproxy[1]: Proxy fe stopped.", received=received,
                max_past=0)
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


@pytest.mark.parametrize(
    "line",
    [
        # `%Tl` in year 1 with an offset that puts it before year 1 in UTC
        '<134>Nov 25 18:00:01 haproxy[1]: {"Tl":"01/Jan/0001:00:00:00 +0100","cp":1,"ST":200}',
        # an RFC 5424 header in year 9999 with an offset that puts it after year 9999 in UTC
        '<134>1 9999-12-31T23:59:59.999-23:59 - haproxy 1 - - {"cp":1,"ST":200}',
        "<134>Nov 25 18:00:01 haproxy[1]: 127.0.0.1:1 [32/Nov/2026:18:00:00.000] fe be/s"
        ' 0/0/0/0/0 200 5 - - ---- 1/1/0/0/0 0/0 "GET / HTTP/1.1"',
        '<134>Nov 25 18:00:01 haproxy[1]: 1.2.3.4 - - [01/Jan/0001:00:00:00 +0100] "GET / HTTP/1.1"'
        ' 200 5 "" "" 1 466 "fe" "be" "s" 0 0 0 0 0 ---- 1 1 0 0 0 0 0 "" ""',
    ],
)
def test_a_date_that_names_no_moment_keeps_every_other_field(line: str) -> None:
    doc = parse(line, received="2026-11-25T18:00:02")
    assert "error.type" not in doc
    assert doc["source.port"] == 1
    assert doc["http.response.status_code"] == 200
    assert doc["@timestamp"] in ("2026-11-25T18:00:01.000Z", "2026-11-25T18:00:02.000Z")
    assert doc["haproxy.claimed_time"]
    assert TAG_TIME in doc["tags"]


def test_a_claimed_time_outside_the_window_is_replaced_by_the_receive_time() -> None:
    line = ('<134>Nov 25 18:00:01 haproxy[1]: {"t":"%s","cp":1}')
    received = "2026-11-25T18:00:02"
    inside = parse(line % "24/Nov/2026:18:00:02.500", received=received)
    assert inside["@timestamp"] == "2026-11-24T18:00:02.500Z"
    assert "tags" not in inside
    for claimed in ("27/Nov/2026:18:00:02.500", "01/Jan/2026:00:00:00.000",
                    "07/Mar/9999:00:00:00.000", "01/Jan/1970:00:00:00.000"):
        doc = parse(line % claimed, received=received)
        assert doc["@timestamp"] == "2026-11-25T18:00:02.000Z", claimed
        assert doc["haproxy.claimed_time"] == claimed
        assert doc["tags"] == [TAG_TIME]
        assert doc["source.port"] == 1
    # The bounds are settings; 0 lifts one.
    assert parse(line % "01/Jan/2026:00:00:00.000", received=received, max_past=0)[
        "@timestamp"] == "2026-01-01T00:00:00.000Z"
    assert parse(line % "27/Nov/2026:18:00:02.500", received=received, max_future=3 * 86400)[
        "@timestamp"] == "2026-11-27T18:00:02.500Z"


def test_random_years_cannot_spread_events_over_many_days() -> None:
    """Issue 17.5: a sender writing any year creates no index outside the window."""
    rng = random.Random(5)
    received = epoch("2026-11-25T18:00:00")
    parser = Parser(ParseSettings())
    days = set()
    for _ in range(500):
        year = rng.randint(1, 9999)
        line = (f"<134>Nov 25 18:00:00 haproxy[1]: 127.0.0.1:1 [25/Nov/{year:04d}:18:00:00.000]"
                ' fe be/s 0/0/0/0/0 200 5 - - ---- 1/1/0/0/0 0/0 "GET / HTTP/1.1"')
        doc = parser.parse(line.encode(), received)
        days.add(doc["@timestamp"][:10])
        assert doc["http.response.status_code"] == 200
    assert days <= {"2026-11-25"}


def test_the_last_receive_time_is_remembered_not_confused() -> None:
    remembering = Timestamps()
    moments = [1795631000.25, 1795631000.25, 1795631000.999, 1795631001.0, 1795631000.25, 0.5,
               1795631000.0005, 1795631000.0005]
    for seconds in moments:
        assert remembering.epoch(seconds) == Timestamps().epoch(seconds)
    assert remembering.epoch(1795631000.25) == "2026-11-25T18:23:20.250Z"
