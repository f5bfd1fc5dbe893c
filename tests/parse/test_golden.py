"""Golden tests: HAProxy's documentation examples (doc/configuration.txt, section 8.2) and the
MISSION.md line, each with the whole expected set of its body fields."""

from __future__ import annotations

from receiver.parse import TAG_FAILURE
from tests.parse.helpers import parse

HTTPLOG_DOC = (
    "<134>Feb  6 12:14:14 localhost haproxy[14389]: 10.0.1.2:33317 [06/Feb/2009:12:14:14.655]"
    ' http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 {1wt.eu} {}'
    ' "GET /index.html HTTP/1.1"'
)


def test_httplog_documentation_example() -> None:
    doc = parse(HTTPLOG_DOC, received="2009-02-06T12:14:15", capture_request_headers=["Host"])
    expected = {
        "@timestamp": "2009-02-06T12:14:14.655Z",
        "haproxy.log_format": "httplog",
        "haproxy.syslog_format": "rfc3164",
        "host.name": "localhost",
        "process.name": "haproxy",
        "process.pid": 14389,
        "log.syslog.priority": 134,
        "log.syslog.facility.name": "local0",
        "log.level": "info",
        "source.address": "10.0.1.2",
        "source.ip": "10.0.1.2",
        "source.port": 33317,
        "haproxy.frontend_name": "http-in",
        "haproxy.backend_name": "static",
        "haproxy.server_name": "srv1",
        "haproxy.time_request_ms": 10,
        "haproxy.time_queue_ms": 0,
        "haproxy.time_connect_ms": 30,
        "haproxy.time_response_ms": 69,
        "haproxy.time_active_ms": 109,
        "event.duration": 109_000_000,
        "http.response.status_code": 200,
        "haproxy.bytes_read": 2750,
        "haproxy.termination_state": "----",
        "haproxy.termination.cause": "normal",
        "haproxy.connections.active": 1,
        "haproxy.connections.frontend": 1,
        "haproxy.connections.backend": 1,
        "haproxy.connections.server": 1,
        "haproxy.connections.retries": 0,
        "haproxy.server_queue": 0,
        "haproxy.backend_queue": 0,
        "haproxy.http.request.headers.host": "1wt.eu",
        "http.request.method": "GET",
        "url.original": "/index.html",
        "url.path": "/index.html",
        "http.version": "1.1",
        "event.outcome": "success",
    }
    assert {key: doc.get(key) for key in expected} == expected
    assert "tags" not in doc
    assert "haproxy.http.response.captured_headers" not in doc  # `{}`: nothing captured


def test_httplog_timeout_example() -> None:
    # doc 8.2.3/8.5: a server that never answers; 504 after timeout server, sH--.
    doc = parse(
        "<134>Nov 25 18:21:57 haproxy[1]: 127.0.0.1:41188 [25/Nov/2026:18:21:57.520] fe be/s1"
        ' 0/0/0/-1/1001 504 198 - - sH-- 1/1/0/0/0 0/0 "GET /slow HTTP/1.1"'
    )
    assert doc["haproxy.time_response_ms"] == -1  # phase not reached: kept as -1
    assert doc["haproxy.termination.cause"] == "server_timeout"
    assert doc["haproxy.termination.phase"] == "response_headers"
    assert doc["event.outcome"] == "failure"
    assert doc["event.duration"] == 1_001_000_000


def test_httpslog_documentation_example() -> None:
    doc = parse(
        "<134>Feb  6 12:14:14 localhost haproxy[14389]: 10.0.1.2:33317 [06/Feb/2009:12:14:14.655]"
        " https-in~ static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 {1wt.eu} {}"
        ' "GET /index.html HTTP/1.1" 0/0/0/0/0 1wt.eu/TLSv1.3/TLS_AES_256_GCM_SHA384',
        received="2009-02-06T12:14:15",
    )
    assert doc["haproxy.log_format"] == "httpslog"
    assert doc["haproxy.frontend_name"] == "https-in~"  # as logged, as Elastic keeps it
    assert doc["haproxy.frontend_transport"] == "ssl"
    assert doc["tls.version"] == "1.3"
    assert doc["tls.version_protocol"] == "tls"
    assert doc["tls.cipher"] == "TLS_AES_256_GCM_SHA384"
    assert doc["tls.client.server_name"] == "1wt.eu"
    assert doc["tls.resumed"] is False
    assert doc["haproxy.http.request.captured_headers"] == ["1wt.eu"]


def test_tcplog_documentation_example() -> None:
    doc = parse(
        "<134>Feb  6 12:12:56 localhost haproxy[14387]: 10.0.1.2:33313 [06/Feb/2009:12:12:51.443]"
        " fnt bck/srv1 0/0/5007 212 -- 0/0/0/0/3 0/0",
        received="2009-02-06T12:13:00",
    )
    expected = {
        "@timestamp": "2009-02-06T12:12:51.443Z",
        "haproxy.log_format": "tcplog",
        "source.ip": "10.0.1.2",
        "source.port": 33313,
        "haproxy.frontend_name": "fnt",
        "haproxy.backend_name": "bck",
        "haproxy.server_name": "srv1",
        "haproxy.time_queue_ms": 0,
        "haproxy.time_connect_ms": 0,
        "haproxy.total_time_ms": 5007,
        "event.duration": 5_007_000_000,
        "haproxy.bytes_read": 212,
        "haproxy.termination_state": "--",
        "haproxy.connections.retries": 3,
        "haproxy.server_queue": 0,
        "event.outcome": "success",
    }
    assert {key: doc.get(key) for key in expected} == expected
    assert "http.response.bytes" not in doc


def test_clf_line() -> None:
    doc = parse(
        '<134>Nov 25 18:22:08 haproxy[11604]: 127.0.0.1 - - [25/Nov/2026:18:22:08 +0000] "GET /a?b=1'
        ' HTTP/1.1" 200 161 "" "" 58378 466 "fe_clf" "be_app" "s1" 0 0 1 2 3 ---- 1 1 0 0 0 0 0 ""'
        ' "" \n'
    )
    assert doc["haproxy.log_format"] == "clf"
    assert doc["@timestamp"] == "2026-11-25T18:22:08.466Z"  # %ms added to the date
    assert doc["source.port"] == 58378
    assert doc["url.path"] == "/a"
    assert doc["url.query"] == "b=1"
    assert doc["haproxy.frontend_name"] == "fe_clf"
    assert doc["haproxy.time_active_ms"] == 3
    assert doc["http.response.status_code"] == 200


def test_error_line_documentation_example() -> None:
    doc = parse(
        "<134>Dec  3 18:27:14 localhost haproxy[6103]: 127.0.0.1:56059"
        " [03/Dec/2012:17:35:10.380] frt/f1: Connection error during SSL handshake",
        received="2012-12-03T18:30:00",
    )
    assert doc["haproxy.log_format"] == "error"
    assert doc["message"] == "Connection error during SSL handshake"
    assert doc["haproxy.frontend_name"] == "frt"
    assert doc["haproxy.bind_name"] == "f1"
    assert doc["source.port"] == 56059
    assert doc["@timestamp"] == "2012-12-03T17:35:10.380Z"


def test_error_line_with_a_zoned_date_is_stamped_by_it() -> None:
    # A custom error-log-format whose date carries its zone: stamped by it, as the same date on
    # a traffic line is; not the receive time with the claimed one kept aside.
    doc = parse(
        "<134>Nov 25 18:21:08 haproxy[1]: 1.2.3.4:5 [25/Nov/2026:18:21:08.761 +0100]"
        " fe/bind: SSL handshake failure",
        received="2026-11-25T17:21:09",
    )
    assert doc["haproxy.log_format"] == "error"
    assert doc["@timestamp"] == "2026-11-25T17:21:08.761Z"
    assert "haproxy.claimed_time" not in doc
    assert doc["source.port"] == 5


def test_connect_from_line() -> None:
    doc = parse("<134>Nov 25 18:00:00 haproxy[1]: Connect from 10.0.0.1:5000 to 10.0.0.2:80"
                " (www/HTTP)")
    assert doc["haproxy.log_format"] == "connect"
    assert doc["source.ip"] == "10.0.0.1"
    assert doc["source.port"] == 5000
    assert doc["destination.ip"] == "10.0.0.2"
    assert doc["destination.port"] == 80
    assert doc["haproxy.frontend_name"] == "www"
    assert doc["haproxy.mode"] == "HTTP"


def test_server_down_message() -> None:
    doc = parse(
        "<129>Nov 25 18:24:30 haproxy[12466]: Server be_chk/s_never is DOWN, reason: Layer4"
        ' connection problem, info: "Connection refused", check duration: 0ms. 1 active and 0'
        " backup servers left."
    )
    assert doc["haproxy.log_format"] == "text"
    assert doc["log.level"] == "alert"
    assert doc["haproxy.backend_name"] == "be_chk"
    assert doc["haproxy.server_name"] == "s_never"
    assert doc["haproxy.server_state"] == "DOWN"
    assert doc["haproxy.check.reason"] == "Layer4 connection problem"
    assert TAG_FAILURE not in doc.get("tags", [])


def test_mission_json_line() -> None:
    doc = parse(
        '<134>Feb 26 05:17:05 localhost haproxy[22]: {"ci":"x.x.x.x","cp":43174,'
        '"t":"26/Feb/2020:05:17:05.438","ft":"inbound_policy","b":"default_9999",'
        '"s":"test-test-test","Tl":"26/Feb/2020:05:17:05 +0000","Tw":0,"Tc":1,"Tr":5,"Tt":92,'
        '"ST":200,"r":"CONNECT x.x.x.x:443 HTTP/1.0", "HM":"CONNECT", "HP":"x.x.x.x:443"}',
        received="2020-02-26T05:17:06",
    )
    assert doc["@timestamp"] == "2020-02-26T05:17:05.438Z"
    assert doc["haproxy.log_format"] == "json"
    assert doc["source.address"] == "x.x.x.x"
    assert "source.ip" not in doc  # not an IP: never sent to an `ip` field
    assert doc["http.request.method"] == "CONNECT"
    assert doc["http.version"] == "1.0"
    assert doc["haproxy.total_time_ms"] == 92
    assert doc["event.duration"] == 92_000_000
    assert doc["haproxy.backend_name"] == "default_9999"
    assert "tags" not in doc


def test_haproxy3_json_option_output() -> None:
    # HAProxy 3.x `%{+json}o`: valid JSON by construction, escapes included.
    doc = parse(
        '<134>Nov 25 18:21:08 haproxy[1]: {"ci": "::1", "cp": 5000, "t": "25/Nov/2026:18:21:08.5",'
        ' "r": "GET /a\\"b\\\\c?x=1 HTTP/2.0", "ST": 404, "B": 10}'
    )
    assert doc["source.ip"] == "::1"
    assert doc["@timestamp"] == "2026-11-25T18:21:08.500Z"
    assert doc["url.original"] == '/a"b\\c?x=1'
    assert doc["url.query"] == "x=1"
    assert doc["http.version"] == "2.0"
    assert doc["event.outcome"] == "failure"


def test_tcplog_clf_line() -> None:
    # `option tcplog clf` (HAProxy 3.1+, src/log.c clf_tcp_log_format), with the manual's
    # tcplog example's values: Th Tw Tc Tt, then %U, then %ts followed by `--`.
    doc = parse(
        '<134>Feb  6 12:12:56 localhost haproxy[14387]: 10.0.1.2 - - [06/Feb/2009:12:12:51 +0000]'
        ' "TCP " 000 212 "" "" 33313 443 "fnt" "bck" "srv1" 0 1 2 5007 152 ---- 0 0 0 0 3 0 0'
        ' "" "" ',
        received="2009-02-06T12:12:57",
    )
    expected = {
        "haproxy.log_format": "tcpclf",
        "@timestamp": "2009-02-06T12:12:51.443Z",
        "source.ip": "10.0.1.2",
        "source.port": 33313,
        "haproxy.frontend_name": "fnt",
        "haproxy.backend_name": "bck",
        "haproxy.server_name": "srv1",
        "haproxy.time_handshake_ms": 0,
        "haproxy.time_queue_ms": 1,
        "haproxy.time_connect_ms": 2,
        "haproxy.total_time_ms": 5007,
        "event.duration": 5_007_000_000,
        "haproxy.bytes_read": 212,
        "haproxy.bytes_uploaded": 152,
        "haproxy.termination_state": "--",
        "haproxy.connections.retries": 3,
        "event.category": ("network",),
    }
    assert {key: doc.get(key) for key in expected} == expected
    assert not [key for key in doc if key.startswith(("http.", "url."))]
    assert "tags" not in doc


def test_httplog_clf_cookies_and_header_captures() -> None:
    # `option httplog clf`: %CC %CS after the queues, then one quoted value per capture.
    line = (
        '<134>Nov 25 18:22:08 haproxy[11604]: 127.0.0.1 - - [25/Nov/2026:18:22:08 +0000] "GET /a'
        ' HTTP/1.1" 200 161 "" "" 58378 466 "fe_clf" "be_app" "s1" 1 2 3 4 5 ---- 1 1 0 0 0 0 0'
        ' "SID=abc" "" "corpus.example" "curl/8" "text/html"'
    )
    doc = parse(line, capture_request_headers=["Host", "User-Agent"],
                capture_response_headers=["Content-Type"])
    assert doc["haproxy.log_format"] == "clf"
    assert doc["haproxy.time_request_ms"] == 1
    assert doc["haproxy.time_active_ms"] == 5
    assert doc["haproxy.http.request.captured_cookie"] == "SID=abc"
    assert "haproxy.http.response.captured_cookie" not in doc
    assert doc["haproxy.http.request.headers.host"] == "corpus.example"
    assert doc["user_agent.original"] == "curl/8"
    assert doc["haproxy.http.response.headers.content_type"] == "text/html"
    unnamed = parse(line)  # without names the captures cannot be told apart: kept in order
    assert unnamed["haproxy.extra_tokens"] == ["corpus.example", "curl/8", "text/html"]
    assert "user_agent.original" not in unnamed


def test_request_target_exactly_as_logged() -> None:
    doc = parse(
        "<134>Nov 25 18:21:38 haproxy[1]: 127.0.0.1:49360 [25/Nov/2026:18:21:38.683] fe be/s1"
        ' 0/0/0/5/5 200 161 - - ---- 1/1/0/0/0 0/0 "GET http://h:8080/p#22q?x=#C3#A9 HTTP/1.1"'
    )
    assert doc["url.original"] == "http://h:8080/p#22q?x=#C3#A9"  # not decoded
    assert doc["url.path"] == '/p"q'
    assert doc["url.query"] == "x=é"
    assert doc["url.domain"] == "h"
    assert doc["url.port"] == 8080
    assert doc["url.scheme"] == "http"
    connect = parse(
        "<134>Nov  4 08:32:18 debian10 haproxy[3666]: 127.0.0.1:34500 [04/Nov/2026:08:32:18.194]"
        ' samplefrontend backendnodes/node1 0/0/0/0/0 405 501 - - ---- 1/1/0/1/0 0/0'
        ' "CONNECT localhost:8080 HTTP/1.1"', received="2026-11-04T08:32:19")
    assert connect["url.original"] == "localhost:8080"
    assert connect["url.domain"] == "localhost" and connect["url.port"] == 8080
    assert "url.path" not in connect


def test_categorisation_fields() -> None:
    http = parse(HTTPLOG_DOC, received="2009-02-06T12:14:15")
    assert (http["event.kind"], http["event.category"], http["event.type"]) == (
        "event", ("web",), ("access",))
    assert http["related.ip"] == ["10.0.1.2"]
    connect = parse("<134>Nov 25 18:00:00 haproxy[1]: Connect from 10.0.0.1:5000 to 10.0.0.2:80"
                    " (www/HTTP)")
    assert connect["event.category"] == ("network",)
    assert connect["related.ip"] == ["10.0.0.1", "10.0.0.2"]
    failed = parse("<134>Nov 25 18:00:00 haproxy[1]: nothing HAProxy would write")
    assert failed["event.kind"] == "pipeline_error"
    assert "event.category" not in failed
