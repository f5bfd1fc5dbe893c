"""Prometheus alert rules pass `promtool check rules` and their unit tests (`promtool test
rules`), use only metrics the receiver exposes, and the exposition itself passes `promtool check
metrics`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.metric_names import exposed_names, names_in, sample_exposition

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "dashboards" / "prometheus" / "alerts.yml"
RULE_TESTS = Path(__file__).resolve().parent / "prometheus" / "alerts_test.yml"

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool missing: apt-get install prometheus")


def promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], input=None if stdin is None else stdin.decode(),
                          capture_output=True, text=True, timeout=120, check=False)


@needs_promtool
def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_alerts_fire_as_their_unit_tests_expect() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_check_metrics_on_the_exposition() -> None:
    result = promtool("check", "metrics", stdin=sample_exposition())
    # promtool prints lint problems (missing _total, bad unit suffixes, ...) one per line.
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        result.stdout + result.stderr)


def test_alerts_use_only_exposed_metrics_and_cover_the_failure_modes() -> None:
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    exposed = exposed_names()
    for rule in rules:
        unknown = names_in(rule["expr"]) - exposed
        assert not unknown, (rule["alert"], unknown)
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    used = set().union(*(names_in(rule["expr"]) for rule in rules))
    for needed in ("haproxy_receiver_spool_oldest_pending_seconds", "haproxy_receiver_events_dropped_total",
                   "haproxy_receiver_bulk_requests_total", "haproxy_receiver_output_up",
                   "haproxy_receiver_udp_receive_drops"):
        assert needed in used, needed
    tested = {case["alertname"] for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
              for case in test["alert_rule_test"]}
    assert len(tested) >= 8, tested


def test_the_kafka_path_has_its_alerts_each_with_a_unit_test() -> None:
    groups = {group["name"]: group["rules"] for group in yaml.safe_load(RULES.read_text())["groups"]}
    kafka = groups["haproxy-receiver-kafka"]
    used = set().union(*(names_in(rule["expr"]) for rule in kafka))
    for needed in ("haproxy_receiver_kafka_up", "haproxy_receiver_kafka_consumer_lag",
                   "haproxy_receiver_kafka_delivery_errors_total",
                   "haproxy_receiver_kafka_rebalances_total", "haproxy_receiver_kafka_commits_total"):
        assert needed in used, needed
    fired = {case["alertname"] for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
             for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert {rule["alert"] for rule in kafka} <= fired
