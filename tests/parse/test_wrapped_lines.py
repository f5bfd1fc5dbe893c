"""Lines as container tooling and orchestrators write them, and HAProxy's own stderr messages:
real published lines (tests/parse/data/wrapped_lines.jsonl, see its README.md) with every key
field right, and every line of the main collection inside every wrapper giving the same key
fields as the line alone. A prefix that is not whole is never peeled."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from receiver.config import ParseSettings
from receiver.parse import TAG_FAILURE, Parser
from tests.parse.helpers import epoch
from tests.parse.real_lines import REAL_LINES, RealLine, real_lines, wrong_fields

WRAPPED_LINES = real_lines(REAL_LINES.parent / "wrapped_lines.jsonl")
LINES = real_lines()
PARSER = Parser(ParseSettings())


def parse(line: str, received: float = epoch("2026-11-25T18:21:10")) -> dict[str, Any]:
    return PARSER.parse(line.encode(), received)


def test_the_wrapped_collection_says_where_each_line_comes_from() -> None:
    assert len(WRAPPED_LINES) >= 15
    assert len({line.where for line in WRAPPED_LINES}) >= 8
    for line in WRAPPED_LINES:
        assert line.origin.get("url") or (
            line.origin["repo"] and line.origin["path"] and len(line.origin["commit"]) == 40)


def test_every_key_field_of_every_wrapped_line_is_right() -> None:
    wrong = {}
    for line in WRAPPED_LINES:
        problems = wrong_fields(line, parse(line.line, line.received))
        if problems:
            wrong[line.line] = problems
    assert not wrong, "\n".join(f"{line}\n  {problems}" for line, problems in wrong.items())


def test_a_body_not_read_keeps_its_wrapper_and_header() -> None:
    line = next(line for line in WRAPPED_LINES if line.line.startswith("2020-01-26"))
    doc = parse(line.line, line.received)
    assert TAG_FAILURE in doc["tags"]
    assert doc["haproxy.wrapper"] == ["cri"]
    assert doc["haproxy.stream"] == "stderr"
    assert doc["message"] == line.line.partition(" stderr F ")[2]
    assert doc["@timestamp"] == "2020-01-26T03:17:29.346Z"  # the CRI record's date


def _json_file(line: str, stamp: str) -> str:
    return orjson.dumps({"log": line + "\n", "stream": "stdout", "time": stamp}).decode()


# Each wrapper: how it wraps a line (given the wrapper's RFC 3339 date), and what it adds.
Wrap = Callable[[str, str], str]
WRAPPERS: dict[str, tuple[Wrap, dict[str, object]]] = {
    "kubectl": (lambda line, stamp: f"[pod/haproxy-7d9f-x2x/haproxy] {line}",
                {"haproxy.wrapper": ["kubectl"], "orchestrator.type": "kubernetes",
                 "orchestrator.resource.type": "pod",
                 "orchestrator.resource.name": "haproxy-7d9f-x2x", "container.name": "haproxy"}),
    "kubectl --timestamps": (
        lambda line, stamp: f"[pod/haproxy-0/haproxy] {stamp} {line}",
        {"haproxy.wrapper": ["kubectl"], "orchestrator.resource.name": "haproxy-0"}),
    "docker service logs": (
        lambda line, stamp: f"lb_haproxy.1.ie6ew1xyh40g@worker-2    | {line}",
        {"haproxy.wrapper": ["docker-service"], "orchestrator.type": "swarm",
         "orchestrator.resource.id": "ie6ew1xyh40g",
         "container.name": "lb_haproxy.1.ie6ew1xyh40g"}),
    "docker service logs --no-trunc --timestamps": (
        lambda line, stamp: f"lb_haproxy.1.p4xz0wg2rw0kmsyq39mjgd4kq@worker-2 | {stamp} {line}",
        {"haproxy.wrapper": ["docker-service"],
         "orchestrator.resource.id": "p4xz0wg2rw0kmsyq39mjgd4kq"}),
    "docker compose logs": (lambda line, stamp: f"proj-haproxy-1  | {line}",
                            {"haproxy.wrapper": ["compose"], "container.name": "proj-haproxy-1"}),
    "json-file": (_json_file, {"haproxy.wrapper": ["docker-json"], "haproxy.stream": "stdout"}),
    "cri": (lambda line, stamp: f"{stamp} stdout F {line}",
            {"haproxy.wrapper": ["cri"], "haproxy.stream": "stdout"}),
    "docker logs --timestamps": (lambda line, stamp: f"{stamp} {line}", {}),
    "kubectl around json-file": (
        lambda line, stamp: f"[pod/haproxy-0/haproxy] {_json_file(line, stamp)}",
        {"haproxy.wrapper": ["kubectl", "docker-json"]}),
}
_KEY_FIELDS = ("haproxy.log_format", "source.address", "haproxy.frontend_name",
               "haproxy.backend_name", "haproxy.server_name", "http.response.status_code",
               "url.path", "haproxy.termination_state", "@timestamp", "message", "tags",
               "process.pid", "log.level", "haproxy.server_state")


def _unwrapped() -> list[RealLine]:
    """The real lines that have no wrapper of their own."""
    return [line for line in [*LINES, *WRAPPED_LINES]
            if "haproxy.wrapper" not in parse(line.line, line.received)]


@pytest.mark.parametrize("wrapper", list(WRAPPERS))
def test_every_real_line_inside_every_wrapper_reads_as_the_line_alone(wrapper: str) -> None:
    """The wrapper's date is the line's receive time: a line without a date of its own gets the
    same `@timestamp` either way."""
    wrap, fields = WRAPPERS[wrapper]
    wrong = []
    lines = _unwrapped()
    assert len(lines) > 140
    for line in lines:
        alone = parse(line.line, line.received)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime(line.received))
        wrapped = parse(wrap(line.line, stamp), line.received)
        expected = {**{key: alone.get(key) for key in _KEY_FIELDS}, **fields}
        got = {key: wrapped.get(key) for key in expected}
        if got != expected:
            wrong.append(f"{wrap(line.line, stamp)}\n  {got}\n  != {expected}")
    assert not wrong, "\n".join(wrong[:10])


@pytest.mark.parametrize("text", [
    "[pod/haproxy-0] 10.0.1.2:33317 [06/Feb/2009:12:14:14.655] fe be/s1 0/0/0/1/1 200 1 - - "
    "---- 1/1/0/0/0 0/0",  # no container
    "[pod/Haproxy_0/c] x",  # not a Kubernetes name
    "proxy.2.ie6ew1xyh40g@ip-10-64-34-36 |x",  # no blank after the bar
    "web | GET /",  # a name without its replica number
    '{"log":"x\\n","stream":"stdin","time":"2019-01-01T11:11:11Z"}',  # no such stream
    '{"log":"x\\n","stream":"stdout","time":"yesterday"}',
    '{"log":"x\\n","stream":"stdout","time":"2019-01-01T11:11:11Z","ci":"10.0.0.1"}',
    "2019-01-01T11:11:11.1Z stdin F x",  # no such stream
    "2019-01-01T11:11:11.1Z stderr X x",  # no such tag
])
def test_a_prefix_that_is_not_whole_is_not_peeled(text: str) -> None:
    assert "haproxy.wrapper" not in parse(text)


def test_a_partial_cri_record_is_read_as_it_is_and_tagged() -> None:
    line = LINES[0].line
    doc = parse(f"2009-02-06T12:14:14.700000000Z stdout P {line[:150]}", LINES[0].received)
    assert doc["haproxy.wrapper"] == ["cri"]
    assert "_partial_line" in doc["tags"]
    assert doc["source.address"] == "10.0.1.2"


def test_the_wrappers_date_stamps_a_line_without_its_own() -> None:
    doc = parse('{"log":"[NOTICE]   (1) : Loading success.\\n","stream":"stderr",'
                '"time":"2026-11-25T18:21:08.123456789Z"}')
    assert doc["@timestamp"] == "2026-11-25T18:21:08.123Z"
    assert doc["log.level"] == "notice"
    assert doc["process.pid"] == 1
    assert doc["haproxy.stream"] == "stderr"


def test_stderr_messages_read_as_over_syslog() -> None:
    message = ("Server be/s1 is DOWN, reason: Layer7 wrong status, code: 503, info: \"Service "
               "Unavailable\", check duration: 3ms. 0 active and 1 backup servers left. "
               "2 sessions active, 1 requeued, 0 remaining in queue.")
    over_syslog = parse(f"<129>Nov 25 18:21:08 haproxy[8]: {message}")
    on_stderr = parse(f"[WARNING]  (8) : {message}")
    typed = {key: value for key, value in over_syslog.items()
             if key.startswith(("haproxy.check.", "haproxy.servers.", "haproxy.sessions.",
                                "haproxy.queue.", "event.", "haproxy.server_", "haproxy.backend"))}
    assert typed["haproxy.check.code"] == 503
    assert typed["haproxy.servers.backup"] == 1
    assert typed["haproxy.sessions.active"] == 2
    assert {key: on_stderr.get(key) for key in typed} == typed


def test_health_check_messages_are_typed() -> None:
    doc = parse("<133>Nov 25 18:21:08 haproxy[8]: Health check for server be/s1 failed, "
                "reason: Layer4 timeout, check duration: 2001ms, status: 0/2 DOWN.")
    assert doc["haproxy.check.result"] == "failed"
    assert doc["haproxy.check.health"] == 0
    assert doc["haproxy.check.health_max"] == 2
    assert doc["haproxy.check.duration_ms"] == 2001
    assert doc["haproxy.server_state"] == "DOWN"
    assert doc["event.outcome"] == "failure"
    assert list(doc["event.category"]) == ["network"]


def test_proxy_started_and_stopped_are_process_events() -> None:
    doc = parse("<133>Nov 25 18:21:08 haproxy[8]: Proxy fe_main started.")
    assert (doc["haproxy.proxy_state"], doc["event.category"], doc["event.type"]) == (
        "started", ("process",), ("start",))
    doc = parse("[WARNING]  (8) : Proxy fe_main stopped (cumulated conns: FE: 82, BE: 0).")
    assert doc["haproxy.connections.frontend_total"] == 82
    assert doc["event.type"] == ("end",)


def test_json_file_labels_become_container_labels() -> None:
    doc = parse('{"log":"[NOTICE]   (1) : Loading success.\\n","stream":"stderr","attrs":'
                '{"app":"edge","a.b":"x"},"time":"2026-11-25T18:21:08.1Z"}')
    assert doc["container.labels.app"] == "edge"
    assert not any(key.startswith("container.labels.a") and key != "container.labels.app"
                   for key in doc)


# -- header variants ---------------------------------------------------------------------------
_HTTPLOG = ('10.0.0.1:5000 [25/Nov/2026:18:21:08.100] fe be/s1 0/0/0/1/1 200 10 - - ---- '
            '1/1/0/0/0 0/0 "GET / HTTP/1.1"')


@pytest.mark.parametrize(("header", "syslog_format", "host", "program"), [
    ("2026-11-25 18:21:08,123456 lb1 haproxy[6]: ", "iso-file", "lb1", "haproxy"),
    ("2026-11-25 18:21:08 lb1 haproxy[6]: ", "iso-file", "lb1", "haproxy"),
    ("2026-11-25T18:21:08+00:00 router-1 router-1 haproxy[6]: ", "iso-file", "router-1",
     "haproxy"),
    ("Nov 5 18:21:08 lb1 haproxy[6]: ", "file", "lb1", "haproxy"),
    ("<134>Nov 5 18:21:08 haproxy[6]: ", "local", None, "haproxy"),
    ("2026/11/25 18:21:08 HAPRoxy: ", "go-log", None, "HAPRoxy"),
    ("2026/11/25 18:21:08 hapee-lb[6]: ", "go-log", None, "hapee-lb"),
    # HAProxy's `log-profile` writes its `sd` text where RFC 5424 has the SD field
    # (reg-tests/log/log_profiles.vtc: `on close format "close" sd "sdclose"`).
    ("<134>1 2026-11-25T18:21:08.123456+00:00 lb1 haproxy 6 - sdclose ", "rfc5424", "lb1",
     "haproxy"),
])
def test_header_variants_read_the_line_behind_them(
        header: str, syslog_format: str, host: str | None, program: str) -> None:
    doc = parse(header + _HTTPLOG)
    assert (doc["haproxy.syslog_format"], doc.get("host.name"), doc["process.name"]) == (
        syslog_format, host, program)
    assert (doc["haproxy.log_format"], doc["haproxy.backend_name"], doc["@timestamp"]) == (
        "httplog", "be", "2026-11-25T18:21:08.100Z")


def test_a_custom_sd_token_is_kept_and_a_body_that_reads_with_it_is_untouched() -> None:
    doc = parse("<134>1 2026-11-25T18:21:08.123456+00:00 lb1 haproxy 6 - sdclose "
                + _HTTPLOG)
    assert doc["haproxy.structured_data"] == "sdclose"
    assert "tags" not in doc
    # A sender that leaves the SD field out: its body reads as it is, nothing is taken from it.
    doc = parse("<134>1 2026-11-25T18:21:08.123456+00:00 lb1 haproxy 6 - "
                "Server be/s1 is UP, reason: Layer4 check passed.")
    assert "haproxy.structured_data" not in doc
    assert doc["haproxy.server_name"] == "s1"


def test_go_date_without_a_tag_is_not_a_header() -> None:
    doc = parse("2018/06/13 11:33:19 Starting HAProxy")
    assert doc["haproxy.syslog_format"] == "raw"


@pytest.mark.parametrize(("message", "state"), [
    ("Server be/s1 was DOWN and now enters maintenance (DNS NX status).", "MAINT"),
    ("Server be/s1 administratively READY thanks to valid DNS answer.", "READY"),
    ("Server be/s1 enters drain state.", "DRAIN"),
    ("Server be/s1 remains in drain mode.", "DRAIN"),
    ("Server be/s1 is leaving forced maintenance but remains in maintenance.", "MAINT"),
    ("Server be/s1 is going DOWN for maintenance (unresolvable).", "going DOWN for maintenance"),
    ("Server be/s1 ('db.internal') is UP/READY (resolves again).", "UP/READY"),
])
def test_every_server_change_names_the_state_it_leads_to(message: str, state: str) -> None:
    for line in (f"<133>Nov 25 18:21:08 haproxy[6]: {message}",
                 f"svc_lb.1.j0v5awcu7s9q@docker-desktop    | [WARNING] 238/070838 (6) : {message}"):
        doc = parse(line)
        assert (doc["haproxy.backend_name"], doc["haproxy.server_name"]) == ("be", "s1")
        assert doc["haproxy.server_state"] == state
        assert doc["event.type"] == ("change",)


def test_a_timestamp_alone_is_a_wrapper_only_before_a_header_of_the_lines_own() -> None:
    line = LINES[0].line  # `Feb  6 12:14:14 localhost haproxy[14389]: ...`
    doc = parse(f"2009-02-06T12:14:15.5Z {line}", LINES[0].received)
    assert doc["haproxy.wrapper"] == ["timestamps"]
    assert doc["haproxy.syslog_format"] == "file"
    doc = parse(f"2009-02-06T12:14:15.5Z <134>{line}", LINES[0].received)
    assert doc["haproxy.wrapper"] == ["timestamps"]
    # A date before a body is the `iso` header it has always been.
    doc = parse("2009-02-06T12:14:15.5Z " + line.partition("]: ")[2], LINES[0].received)
    assert "haproxy.wrapper" not in doc
    assert doc["haproxy.syslog_format"] == "iso"


def test_a_custom_sd_token_is_found_inside_a_wrapper_too() -> None:
    doc = parse("[pod/haproxy-0/haproxy] <134>1 2026-11-25T18:21:08.123456+00:00 lb1 haproxy 6 - "
                "sdclose " + _HTTPLOG)
    assert (doc["haproxy.wrapper"], doc["haproxy.structured_data"]) == (["kubectl"], "sdclose")
    assert doc["haproxy.backend_name"] == "be"


def test_a_server_given_another_name_to_resolve_is_typed() -> None:
    doc = parse("[WARNING]  (8) : be/s1 changed its FQDN from old.internal to db.internal")
    assert (doc["haproxy.backend_name"], doc["haproxy.server_name"]) == ("be", "s1")
    assert doc["haproxy.server_fqdn"] == "db.internal"
    assert doc["event.type"] == ("change",)
