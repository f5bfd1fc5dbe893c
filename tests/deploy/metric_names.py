"""The metric names a scrape of the receiver can show, for checking dashboards and alerts."""

from __future__ import annotations

import re

from prometheus_client.exposition import generate_latest

from receiver.metrics import Metrics

# Gauges computed at scrape time by collectors the running service registers (spool on disk,
# kernel UDP drops): not part of a bare `Metrics()`.
SCRAPE_TIME_GAUGES = frozenset({
    "haproxy_receiver_spool_bytes",
    "haproxy_receiver_spool_events_pending",
    "haproxy_receiver_spool_oldest_pending_seconds",
    "haproxy_receiver_udp_receive_drops",
})
_NAME = re.compile(r"\bhaproxy_receiver_[a-z0-9_]+")


def sample_exposition() -> bytes:
    """A `/metrics` body from a `Metrics()` with one sample in every labelled family."""
    metrics = Metrics()
    metrics.messages_received.labels("udp://0.0.0.0:5140", "udp").inc(10)
    metrics.bytes_received.labels("udp://0.0.0.0:5140", "udp").inc(4000)
    metrics.messages_truncated.labels("tcp://0.0.0.0:5140").inc()
    metrics.connections_open.labels("tcp://0.0.0.0:5140").set(3)
    metrics.connections_refused.labels("tcp://0.0.0.0:5140", "limit").inc()
    metrics.events_parsed.labels("json").inc(9)
    metrics.parse_failures.labels("invalid_json").inc()
    metrics.events_dropped.labels("spool_full").inc()
    metrics.events_dead_lettered.labels("mapper_parsing_exception").inc()
    metrics.bulk_requests.labels("ok").inc()
    metrics.spool_fsync_seconds.observe(0.002)
    metrics.bulk_seconds.observe(0.05)
    metrics.kafka_delivery_errors.labels("_MSG_TIMED_OUT").inc()
    metrics.kafka_consumer_lag.labels("0").set(12)
    metrics.kafka_rebalances.labels("assigned").inc()
    metrics.kafka_commits.labels("ok").inc()
    return generate_latest(metrics.registry)


def exposed_names() -> set[str]:
    """Every series name a scrape shows (with `_total`, `_bucket`, ... suffixes)."""
    names = set()
    for line in sample_exposition().decode().splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names | SCRAPE_TIME_GAUGES


def names_in(expression: str) -> set[str]:
    return set(_NAME.findall(expression))
