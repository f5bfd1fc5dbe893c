"""`status` and `status --watch`: rates from successive scrapes, the spool's drain time, the last
error, every listener shown; from a crafted exposition, then against a running receiver."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from receiver.metrics import Metrics
from receiver.status import Status, Watch, rates, render_watch, status_from_families, summary_line
from tests.support import REPO, Receiver, wait_for

EXPOSITION = """\
# TYPE haproxy_receiver_messages_received_total counter
haproxy_receiver_messages_received_total{{listener="udp://0.0.0.0:5140",transport="udp"}} {udp}
haproxy_receiver_messages_received_total{{listener="tcp://0.0.0.0:5140",transport="tcp"}} 0
haproxy_receiver_messages_received_created{{listener="tcp://0.0.0.0:5140",transport="tcp"}} 1.7e9
# TYPE haproxy_receiver_events_spooled_total counter
haproxy_receiver_events_spooled_total {spooled}
# TYPE haproxy_receiver_events_shipped_total counter
haproxy_receiver_events_shipped_total {shipped}
# TYPE haproxy_receiver_bulk_requests_total counter
haproxy_receiver_bulk_requests_total{{outcome="ok"}} {ok}
haproxy_receiver_bulk_requests_total{{outcome="timeout"}} {timeouts}
# TYPE haproxy_receiver_spool_events_pending gauge
haproxy_receiver_spool_events_pending {pending}
# TYPE haproxy_receiver_output_up gauge
haproxy_receiver_output_up 1
"""


def snapshot(at: float, *, udp: int, spooled: int, shipped: int, ok: int, timeouts: int,
             pending: int, ready: bool = True) -> Status:
    text = EXPOSITION.format(udp=udp, spooled=spooled, shipped=shipped, ok=ok, timeouts=timeouts,
                             pending=pending)
    reason = "ready" if ready else "spool full"
    status = status_from_families(text_string_to_metric_families(text), ready, reason)
    status.taken_at = at
    return status


def test_rates_per_listener_and_per_stage_over_the_interval() -> None:
    before = snapshot(100.0, udp=1000, spooled=1000, shipped=400, ok=4, timeouts=1, pending=600)
    after = snapshot(102.0, udp=3000, spooled=3000, shipped=3400, ok=34, timeouts=1, pending=100)
    change = rates(before, after)
    assert change.received == {"udp://0.0.0.0:5140": 1000.0, "tcp://0.0.0.0:5140": 0.0}
    assert (change.spooled, change.shipped, change.bulk_requests) == (1000.0, 1500.0, 15.0)
    assert change.errors == []  # only `ok` requests were added


def test_drain_time_at_the_net_rate_and_when_it_does_not_shrink() -> None:
    before = snapshot(0.0, udp=0, spooled=0, shipped=0, ok=0, timeouts=0, pending=0)
    draining = rates(before, snapshot(10.0, udp=0, spooled=1000, shipped=3000, ok=0, timeouts=0,
                                      pending=0))
    assert draining.drain_seconds(8000) == 40.0  # 8000 pending / (300 - 100) per second
    assert draining.drain_seconds(0) == 0.0
    growing = rates(before, snapshot(10.0, udp=0, spooled=3000, shipped=1000, ok=0, timeouts=0,
                                     pending=0))
    assert growing.drain_seconds(8000) is None


def test_the_last_error_is_the_latest_interval_in_which_an_error_counter_rose() -> None:
    watch = Watch("http://127.0.0.1:9514", 2.0)
    def quiet(at: float, timeouts: int, ready: bool = True) -> Status:
        return snapshot(at, udp=0, spooled=0, shipped=0, ok=0, timeouts=timeouts, pending=0, ready=ready)

    first = watch.update(quiet(0.0, 0), "12:00:00")
    assert "last error: none seen" in first and "…" in first  # no rates before a second scrape
    watch.update(quiet(2.0, 3), "12:00:02")
    later = watch.update(quiet(4.0, 3), "12:00:04")  # nothing new: the last error is kept
    assert "last error: 12:00:02 bulk requests failed: timeout (+3)" in later
    unready = watch.update(quiet(6.0, 3, ready=False), "12:00:06")
    assert "last error: 12:00:06 not ready: spool full" in unready


def test_every_listener_is_shown_even_without_traffic() -> None:
    before = snapshot(0.0, udp=10, spooled=10, shipped=0, ok=0, timeouts=0, pending=10)
    after = snapshot(1.0, udp=20, spooled=20, shipped=0, ok=0, timeouts=0, pending=20)
    screen = render_watch(after, rates(before, after), "", "test")
    (tcp,) = [line for line in screen.splitlines() if "tcp://0.0.0.0:5140" in line]
    assert tcp.split() == ["tcp://0.0.0.0:5140", "0.0/s", "0"]
    (udp,) = [line for line in screen.splitlines() if "udp://0.0.0.0:5140" in line]
    assert udp.split() == ["udp://0.0.0.0:5140", "10.0/s", "20"]
    assert "not draining at this rate" in screen


def test_watch_against_a_running_receiver_whose_output_is_down(tmp_path: Path) -> None:
    unreachable = "http://127.0.0.1:9"  # nothing listens: bulk requests fail, events stay spooled
    receiver = Receiver(tmp_path, unreachable, env={  # retry often, so failures fall in the window
        "HAPROXY_RECEIVER_ELASTICSEARCH__BATCH_AGE": "0.05",  # the first request at once
        "HAPROXY_RECEIVER_ELASTICSEARCH__RETRY_INITIAL": "0.1",
        "HAPROXY_RECEIVER_ELASTICSEARCH__RETRY_MAX": "0.2",
        "HAPROXY_RECEIVER_SERVICE__SHUTDOWN_GRACE": "0.5"}).start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            for _ in range(5):
                client.sendto(b"<134>Nov 25 18:21:08 haproxy[7]: Proxy fe started.",
                              ("127.0.0.1", receiver.udp_port))
        wait_for(lambda: receiver.metric("haproxy_receiver_events_spooled_total") == 5, 10, "spooled")
        result = subprocess.run(
            [sys.executable, "-m", "receiver", "status", "--metrics", f"127.0.0.1:{receiver.metrics_port}",
             # workers relay their counters once a second: refreshes that far apart see them rise
             "--watch", "--interval", "1.1", "--count", "4"],
            capture_output=True, text=True, cwd=REPO, timeout=60)
    finally:
        assert receiver.stop() == 0
    assert result.returncode == 0, result.stderr
    screens = result.stdout.strip().split("\n\n")
    assert len(screens) == 4
    for screen in screens:
        assert f"tcp://127.0.0.1:{receiver.tcp_port}" in screen  # no traffic, still listed
        assert "5 events pending" in screen
    assert "…" in screens[0] and "…" not in screens[-1]
    assert "not draining at this rate" in screens[-1]
    assert "bulk requests failed: connection_error" in screens[-1]


def test_summary_line_for_systemd_is_what_the_readme_shows() -> None:
    class Spool:
        def collect(self) -> Iterable[Metric]:
            yield GaugeMetricFamily("haproxy_receiver_spool_events_pending", "", value=44)
            yield GaugeMetricFamily("haproxy_receiver_spool_oldest_pending_seconds", "", value=0.21)

    metrics = Metrics()
    metrics.add_collector(Spool())
    metrics.messages_received.labels("udp://127.0.0.1:5140", "udp").inc(182000)
    metrics.messages_received.labels("tcp://127.0.0.1:5140", "tcp").inc(344)
    metrics.events_shipped.inc(182300)
    metrics.output_up.set(1)
    line = summary_line(metrics.registry, (True, "ready"))
    assert f'Status: "{line}"' in (REPO / "README.md").read_text()
    assert summary_line(metrics.registry, (False, "spool full")).startswith("NOT READY (spool full); ")
