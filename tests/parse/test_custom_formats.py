"""Custom log-formats close to a known one: a shorter CLF and the epoch-stamped format. What is
read is read whole, what is not is kept unnamed (`haproxy.extra_tokens`) or the line is not
read at all; never a value under a shifted name. (The real published lines of these formats
are in data/real_lines.jsonl; the lines here are built from the log-format strings named, to
try each boundary.)"""

from __future__ import annotations

from receiver.parse import TAG_FAILURE, TAG_TRUNCATED
from tests.parse.helpers import parse

# `log-format "%ci - - [%trg] %{+Q}r %ST %B"`: the common log format's own fields.
COMMON = ('<134>Nov 25 18:22:08 haproxy[11604]: 10.0.0.5 - - [25/Nov/2026:18:22:08 +0000]'
          ' "GET /a?b=1 HTTP/1.1" 200 161')
# ... `%{+Q}[capture.req.hdr(0)] %{+Q}[capture.req.hdr(1)]` after it (referrer, user agent).
COMBINED = COMMON + ' "https://example.com/" "curl/8.5.0 (x86_64)"'


def test_a_line_ending_after_the_bytes_is_read_whole() -> None:
    doc = parse(COMMON, received="2026-11-25T18:22:09")
    assert doc["haproxy.log_format"] == "clf"
    assert doc["source.address"] == "10.0.0.5"
    assert doc["@timestamp"] == "2026-11-25T18:22:08.000Z"
    assert doc["http.response.status_code"] == 200
    assert doc["haproxy.bytes_read"] == 161
    assert doc["url.path"] == "/a"
    assert "tags" not in doc
    assert "haproxy.extra_tokens" not in doc


def test_quoted_values_of_its_own_after_the_bytes_are_kept_unnamed() -> None:
    doc = parse(COMBINED, received="2026-11-25T18:22:09")
    assert doc["haproxy.log_format"] == "clf"
    assert doc["haproxy.bytes_read"] == 161
    assert doc["haproxy.extra_tokens"] == ["https://example.com/", "curl/8.5.0 (x86_64)"]
    assert "user_agent.original" not in doc
    assert "tags" not in doc


def test_a_zoneless_date_of_a_custom_format_is_read_as_its_own_kind() -> None:
    doc = parse(COMMON.replace("18:22:08 +0000]", "18:22:08.250]"), received="2026-11-25T18:22:09")
    assert doc["@timestamp"] == "2026-11-25T18:22:08.250Z"
    assert doc["haproxy.bytes_read"] == 161


def test_a_bare_token_after_the_bytes_is_not_read() -> None:
    # `200 0 161 ...`: was `0` inserted, or `161`? Neither status nor bytes is certain.
    # (`200 161 x` alone reads as a CLF line cut inside its third token: status and bytes.)
    for body_end in ('200 0 161 "" ""', '200 161 "-" x', '404 200 161 "" ""'):
        doc = parse(COMMON.replace("200 161", body_end))
        assert TAG_FAILURE in doc["tags"], body_end
        assert "http.response.status_code" not in doc


def test_haproxys_own_clf_broken_further_on_is_still_not_read() -> None:
    line = (COMMON + ' "" "" 58378 466 "fe_clf" "be_app" "s1" 0 0 1 2 3 ---- 1 1 0 0 0 0 0 "" ""')
    assert parse(line)["haproxy.frontend_name"] == "fe_clf"
    doc = parse(line.replace(" 466 ", " 466 x "))
    assert TAG_FAILURE in doc["tags"]


def test_a_quoted_value_cut_short_after_the_bytes_says_the_line_is_cut() -> None:
    doc = parse(COMBINED[:-8], received="2026-11-25T18:22:09")
    assert doc["haproxy.bytes_read"] == 161
    assert doc["haproxy.extra_tokens"] == ["https://example.com/"]
    assert TAG_TRUNCATED in doc["tags"]


# The epoch-stamped format's head (its published copies differ after `%b:%s`).
EPOCH = ('<134>Mar 14 17:14:51 localhost haproxy[14887]: [14887] [1394817291.250] 10/5/2/0/3/0/0'
         ' 48/0/0/624/672 ---- 1.10.2.10:35701 10.151.122.228:443 127.0.0.1:8000 fe~'
         ' ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 "GET /v1/ HTTP/1.0" 404 be:srv1')


def test_the_epoch_stamped_format_every_field_of_its_head() -> None:
    doc = parse(EPOCH + ' "-" "{ua}" req_size=592', received="2014-03-14T17:14:52")
    assert doc["haproxy.log_format"] == "httplog"
    assert doc["@timestamp"] == "2014-03-14T17:14:51.250Z"
    expected = {
        "process.pid": 14887, "haproxy.connections.active": 10,
        "haproxy.connections.frontend": 5, "haproxy.connections.backend": 2,
        "haproxy.backend_queue": 0, "haproxy.connections.server": 3, "haproxy.server_queue": 0,
        "haproxy.connections.retries": 0, "haproxy.time_request_ms": 48,
        "haproxy.time_response_ms": 624, "haproxy.total_time_ms": 672,
        "haproxy.termination_state": "----", "source.address": "1.10.2.10", "source.port": 35701,
        "destination.address": "10.151.122.228", "destination.port": 443,
        "haproxy.server_ip": "127.0.0.1", "haproxy.server_port": 8000,
        "haproxy.frontend_name": "fe~", "tls.cipher": "ECDHE-RSA-AES128-GCM-SHA256",
        "http.response.status_code": 404, "haproxy.backend_name": "be",
        "haproxy.server_name": "srv1", "url.path": "/v1/", "event.duration": 672_000_000,
        "haproxy.extra_tokens": ["-", "{ua}", "req_size=592"],
    }
    assert {key: doc.get(key) for key in expected} == expected
    assert "haproxy.bytes_read" not in doc


def test_the_epoch_stamped_format_is_not_read_when_a_place_is_in_doubt() -> None:
    assert parse(EPOCH, received="2014-03-14T17:14:52")["haproxy.backend_name"] == "be"
    for changed in (
        EPOCH + " be2:srv2",  # two `backend:server` tokens
        EPOCH.replace(" 404 ", " 200 404 "),  # a status-shaped token before the status
        EPOCH.replace(" fe~ ", " 10.0.0.1:80 fe~ "),  # one address more
        EPOCH.replace(" be:srv1", " a:b:c"),  # names split by two colons
        EPOCH.replace("10/5/2/0/3/0/0", "10/5/2/0/3"),  # httplog's five counts
        EPOCH[:-40],  # cut before the backend
    ):
        doc = parse(changed, received="2014-03-14T17:14:52")
        assert TAG_FAILURE in doc.get("tags", ()), changed
        assert "http.response.status_code" not in doc


# `log-format %fi:%fp %ci [%tr] %HM %HU %HV %ST %B %hr` (request unquoted), one capture.
PLAIN = ("<134>Nov 28 16:17:07 haproxy[1937]: 192.168.4.4:8080 4.22.141.40"
         " [28/Nov/2024:16:17:06.861] GET /a?b=1 HTTP/1.1 200 83599 {https://x.example/|curl/8}")


def test_an_unquoted_request_is_read_with_its_client_and_capture() -> None:
    doc = parse(PLAIN, received="2024-11-28T16:17:07", capture_request_headers=["Referer", "UA"])
    expected = {
        "haproxy.log_format": "httplog", "source.address": "4.22.141.40",
        "@timestamp": "2024-11-28T16:17:06.861Z", "http.request.method": "GET",
        "url.path": "/a", "url.query": "b=1", "http.version": "1.1",
        "http.response.status_code": 200, "haproxy.bytes_read": 83599,
        "haproxy.extra_tokens": ["192.168.4.4:8080"],
    }
    assert {key: doc.get(key) for key in expected} == expected
    assert "source.port" not in doc and "destination.address" not in doc
    # The client alone before the date, with its port.
    doc = parse(PLAIN.replace("192.168.4.4:8080 4.22.141.40", "4.22.141.40:5000"),
                received="2024-11-28T16:17:07")
    assert (doc["source.address"], doc["source.port"]) == ("4.22.141.40", 5000)
    assert "haproxy.extra_tokens" not in doc


def test_an_unquoted_request_is_not_read_when_a_place_is_in_doubt() -> None:
    for changed in (
        PLAIN.replace(" 4.22.141.40 ", " 4.22.141.40 10.0.0.1:80 "),  # which is the client?
        PLAIN.replace(" 4.22.141.40 ", " 4.22.141.40:80 "),  # two addresses with ports
        PLAIN.replace(" 200 83599 ", " 404 200 83599 "),  # a status before the status
        PLAIN.replace(" 200 83599 ", " 200 0 83599 "),  # a token after the bytes, not `{`
        PLAIN.replace(" GET /a?b=1 ", " GET x /a?b=1 "),  # the version is not where it goes
        PLAIN.replace(" 4.22.141.40 ", " lb1 "),  # no client address
    ):
        doc = parse(changed, received="2024-11-28T16:17:07")
        assert TAG_FAILURE in doc.get("tags", ()), changed
        assert "http.response.status_code" not in doc
