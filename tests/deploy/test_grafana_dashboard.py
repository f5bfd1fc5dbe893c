"""The Grafana dashboard for the receiver's own metrics: valid JSON, panels laid out without
overlap, every query valid PromQL (checked by promtool) over metrics the receiver exposes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.metric_names import exposed_names, names_in

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "grafana" / "haproxy-receiver.json"
# Grafana's variables, replaced by what they stand for so promtool can parse the queries.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "6h", "$instance": ".*"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def queries() -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in dashboard()["panels"]
            for target in panel.get("targets", [])]


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    panels = dashboard()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & area, f"{panel['title']} overlaps another panel"
        cells |= area


def test_every_query_uses_exposed_metrics_through_the_datasource_variable() -> None:
    exposed = exposed_names()
    for title, expr in queries():
        used = names_in(expr)
        assert used and not used - exposed, (title, used - exposed)
        assert 'instance=~"$instance"' in expr, title
    for panel in dashboard()["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_the_views_the_issue_asks_for_exist() -> None:
    used = set().union(*(names_in(expr) for _, expr in queries()))
    for needed in ("haproxy_receiver_messages_received_total", "haproxy_receiver_events_spooled_total",
                   "haproxy_receiver_events_shipped_total", "haproxy_receiver_events_dropped_total",
                   "haproxy_receiver_udp_receive_drops", "haproxy_receiver_spool_oldest_pending_seconds",
                   "haproxy_receiver_bulk_request_seconds_bucket"):
        assert needed in used, needed


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing: apt-get install prometheus")
def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules = []
    for i, (_, expr) in enumerate(queries()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        rules.append({"record": f"grafana:query_{i}", "expr": expr})
    rule_file = tmp_path / "grafana-queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "grafana", "rules": rules}]}))
    result = subprocess.run(["promtool", "check", "rules", str(rule_file)], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_kafka_path_has_its_panels() -> None:
    used = set().union(*(names_in(expr) for _, expr in queries()))
    for needed in ("haproxy_receiver_kafka_up", "haproxy_receiver_kafka_consumer_lag",
                   "haproxy_receiver_kafka_records_produced_total",
                   "haproxy_receiver_kafka_records_consumed_total",
                   "haproxy_receiver_kafka_delivery_errors_total",
                   "haproxy_receiver_kafka_rebalances_total", "haproxy_receiver_kafka_commits_total"):
        assert needed in used, needed
