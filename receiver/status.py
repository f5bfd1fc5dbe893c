"""`haproxy-receiver status`: what a running instance is doing, read from its metrics endpoint.

The running receiver already publishes everything an operator asks first (listeners and their
traffic, spool depth and lag, whether the output answers); this module scrapes `/metrics` and
`/readyz` and prints a short report, so there is no second control channel to secure.

- `fetch_status()` takes one snapshot (`Status`); `render()` prints it.
- `status --watch` takes a snapshot every few seconds: `rates()` turns two successive
  snapshots into per-second rates (per listener, into the spool, out to Elasticsearch), the
  time to drain the spool at the current rate, and the last error: the latest interval in
  which an error counter rose (`ERROR_COUNTERS`), or why the instance is not ready.
  `render_watch()` prints one screen of it.
- `summary_line()` is the one-line form systemd shows (`STATUS=`), built from the running
  process's own registry with the same reading of the same metrics.
"""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from receiver.metrics import NAMESPACE

Labels = tuple[tuple[str, str], ...]

# Counters whose rise is an error worth naming, with the label that says what kind.
ERROR_COUNTERS: dict[str, tuple[str, str]] = {
    "bulk_requests_total": ("bulk requests failed", "outcome"),
    "events_dead_lettered_total": ("events dead-lettered", "reason"),
    "events_dropped_total": ("events dropped", "reason"),
    "parse_failures_total": ("parse failures", "reason"),
    "connections_refused_total": ("connections refused", "reason"),
    "messages_refused_total": ("datagrams refused (listen.allow)", "listener"),
    "udp_receive_drops": ("datagrams dropped by the kernel", ""),
    "spool_corrupt_records_total": ("damaged spool records", ""),
    "kafka_delivery_errors_total": ("records Kafka did not store", "error"),
}
_NOT_ERRORS = {("bulk_requests_total", "ok")}


class StatusError(RuntimeError):
    """The instance could not be reached."""


@dataclass
class Status:
    """One scrape: readiness and every sample, by metric name (namespace removed) and labels."""

    ready: bool
    ready_reason: str
    samples: dict[str, dict[Labels, float]] = field(default_factory=dict)
    taken_at: float = field(default_factory=time.monotonic)

    def value(self, name: str) -> float:
        """The metric summed over its labels (0 when absent)."""
        return sum(self.samples.get(name, {}).values())

    def by_label(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for labels, value in self.samples.get(name, {}).items():
            key = dict(labels).get(label, "")
            out[key] = out.get(key, 0.0) + value
        return out

    @property
    def received(self) -> dict[str, float]:
        """Listener → messages received; every listener the instance opened, even idle ones."""
        return self.by_label("messages_received_total", "listener")


def status_from_families(families: Iterable[Metric], ready: bool, reason: str) -> Status:
    status = Status(ready, reason)
    for family in families:
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            name = sample.name.removeprefix(f"{NAMESPACE}_")
            labels = tuple(sorted(sample.labels.items()))
            series = status.samples.setdefault(name, {})
            series[labels] = series.get(labels, 0.0) + sample.value
    return status


def fetch_status(base_url: str, timeout: float = 5.0) -> Status:
    try:
        with urllib.request.urlopen(f"{base_url}/metrics", timeout=timeout) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError) as error:
        raise StatusError(f"cannot reach {base_url}/metrics: {error}") from None
    ready, reason = _readiness(base_url, timeout)
    return status_from_families(text_string_to_metric_families(text), ready, reason)


def _readiness(base_url: str, timeout: float) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(f"{base_url}/readyz", timeout=timeout) as response:
            return True, response.read().decode().strip()
    except urllib.error.HTTPError as error:
        return False, error.read().decode().strip()
    except (urllib.error.URLError, OSError) as error:
        return False, str(error)


def render(status: Status) -> str:
    lines = [f"ready:     {'yes' if status.ready else 'NO'} ({status.ready_reason})", "listeners:"]
    for listener, count in sorted(status.received.items()):
        lines.append(f"  {listener:<32} {int(count):>12} messages")
    if not status.received:
        lines.append("  (none reported)")
    v = status.value
    lines += [
        f"spool:     {int(v('spool_events_pending'))} events pending, {int(v('spool_bytes'))} bytes, "
        f"oldest {v('spool_oldest_pending_seconds'):.1f} s",
        f"output:    {'up' if v('output_up') else 'DOWN'}; shipped {int(v('events_shipped_total'))}, "
        f"retried {int(v('events_retried_total'))}, dead-lettered "
        f"{int(v('events_dead_lettered_total'))}, bulk requests in flight "
        f"{int(v('bulk_requests_in_flight'))}",
        f"dropped:   {int(v('events_dropped_total'))} events by policy, "
        f"{int(v('udp_receive_drops'))} datagrams by the kernel",
    ]
    return "\n".join(lines + _kafka_lines(status))


def _kafka_lines(status: Status) -> list[str]:
    """The Kafka path, where it is used: a producing receiver, or a `consume` member."""
    v = status.value
    up = "up" if v("kafka_up") else "UNREACHABLE"
    lines = []
    if v("kafka_records_produced_total") or v("kafka_produce_queue") \
            or v("kafka_delivery_errors_total"):
        lines.append(f"kafka:     {up}; produced {int(v('kafka_records_produced_total'))}, "
                     f"waiting for the brokers {int(v('kafka_produce_queue'))}, delivery errors "
                     f"{int(v('kafka_delivery_errors_total'))}")
    lag = status.by_label("kafka_consumer_lag", "partition")
    if v("kafka_records_consumed_total") or lag:
        per_partition = ", ".join(f"{p}: {int(n)}" for p, n in sorted(lag.items(),
                                                                        key=lambda i: int(i[0])))
        lines.append(f"kafka:     {up}; consumed {int(v('kafka_records_consumed_total'))}, lag "
                     f"{int(sum(lag.values()))} ({per_partition or 'no partitions assigned'}), "
                     f"commits {int(v('kafka_commits_total'))}, partitions assigned "
                     f"{int(status.by_label('kafka_rebalances_total', 'change').get('assigned', 0))}")
    return lines


# --- watch -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Rates:
    """What happened between two snapshots, per second."""

    seconds: float
    received: dict[str, float]  # listener → messages/s
    spooled: float
    shipped: float
    retried: float
    dead_lettered: float
    dropped: float
    kernel_drops: float
    bulk_requests: float
    errors: list[str]  # what rose in this interval, e.g. "bulk requests failed: timeout (+2)"

    def drain_seconds(self, pending: float) -> float | None:
        """Time to empty the spool at the current net rate; None when it does not shrink."""
        if pending <= 0:
            return 0.0
        net = self.shipped - self.spooled
        return pending / net if net > 0 else None


def rates(before: Status, after: Status) -> Rates:
    seconds = max(after.taken_at - before.taken_at, 1e-9)

    def per_second(name: str) -> float:
        return max(after.value(name) - before.value(name), 0.0) / seconds

    earlier = before.received
    received = {listener: max(count - earlier.get(listener, 0.0), 0.0) / seconds
                for listener, count in after.received.items()}
    return Rates(
        seconds=seconds, received=received,
        spooled=per_second("events_spooled_total"), shipped=per_second("events_shipped_total"),
        retried=per_second("events_retried_total"),
        dead_lettered=per_second("events_dead_lettered_total"),
        dropped=per_second("events_dropped_total"), kernel_drops=per_second("udp_receive_drops"),
        bulk_requests=per_second("bulk_requests_total"), errors=_errors(before, after),
    )


def _errors(before: Status, after: Status) -> list[str]:
    found = []
    for name, (what, label) in ERROR_COUNTERS.items():
        earlier = before.by_label(name, label) if label else {"": before.value(name)}
        now = after.by_label(name, label) if label else {"": after.value(name)}
        for kind, value in sorted(now.items()):
            rise = value - earlier.get(kind, 0.0)
            if rise > 0 and (name, kind) not in _NOT_ERRORS:
                found.append(f"{what}{': ' + kind if kind else ''} (+{rise:g})")
    return found


@dataclass
class Watch:
    """Successive snapshots of one instance; `update()` adds one and returns the screen."""

    url: str
    interval: float
    previous: Status | None = None
    last_error: str = ""

    def update(self, status: Status, clock: str) -> str:
        change = rates(self.previous, status) if self.previous is not None else None
        if change is not None and change.errors:
            self.last_error = f"{clock} " + "; ".join(change.errors)
        elif not status.ready:
            self.last_error = f"{clock} not ready: {status.ready_reason}"
        self.previous = status
        return render_watch(status, change, self.last_error, f"{self.url} at {clock}, every "
                            f"{self.interval:g} s (Ctrl-C to stop)")


def render_watch(status: Status, change: Rates | None, last_error: str, title: str) -> str:
    v = status.value
    def rate(per_second: float) -> str:
        return f"{per_second:,.1f}/s" if change is not None else "…"

    lines = [f"haproxy-receiver {title}",
             f"ready:      {'yes' if status.ready else 'NO'} ({status.ready_reason})",
             f"{'listener':<34} {'rate':>12} {'total':>14}"]
    for listener, total in sorted(status.received.items()):
        per_second = change.received.get(listener, 0.0) if change is not None else 0.0
        lines.append(f"  {listener:<32} {rate(per_second):>12} {int(total):>14,}")
    if not status.received:
        lines.append("  (no listener reported)")
    pending = v("spool_events_pending")
    spool = (f"spool:      {int(pending):,} events pending ({_bytes(v('spool_bytes'))}), "
             f"oldest {v('spool_oldest_pending_seconds'):.1f} s")
    if change is not None:
        drain = change.drain_seconds(pending)
        spool += f"; in {rate(change.spooled)}, out {rate(change.shipped)}; "
        spool += ("empty" if drain == 0.0 else f"drains in ~{_duration(drain)}" if drain is not None
                  else "not draining at this rate")
    lines.append(spool)
    output = (f"output:     {'up' if v('output_up') else 'DOWN'}; shipped "
              f"{int(v('events_shipped_total')):,}")
    if change is not None:
        output += (f" ({rate(change.shipped)}), retried {rate(change.retried)}, dead-lettered "
                   f"{rate(change.dead_lettered)}, bulk {change.bulk_requests:,.1f} req/s")
    output += f", {int(v('bulk_requests_in_flight'))} in flight"
    lines.append(output)
    lines.append(f"dropped:    {int(v('events_dropped_total')):,} by policy"
                 + (f" ({rate(change.dropped)})" if change else "")
                 + f", {int(v('udp_receive_drops')):,} datagrams by the kernel"
                 + (f" ({rate(change.kernel_drops)})" if change else ""))
    lines.append(f"last error: {last_error or 'none seen'}")
    return "\n".join(lines)


def _bytes(count: float) -> str:
    if count < 1024:
        return f"{count:.0f} B"
    exponent = min(int(math.log(count, 1024)), 3)
    return f"{count / 1024**exponent:,.1f} {('KiB', 'MiB', 'GiB')[exponent - 1]}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# --- systemd -----------------------------------------------------------------------------------

def summary_line(registry: CollectorRegistry, ready: tuple[bool, str]) -> str:
    """One line for `systemctl status`: readiness, traffic, backlog, output."""
    status = status_from_families(registry.collect(), *ready)
    v = status.value
    state = "ready" if status.ready else f"NOT READY ({status.ready_reason})"
    return (f"{state}; {len(status.received)} listeners, received {int(v('messages_received_total'))}, "
            f"shipped {int(v('events_shipped_total'))}; spool {int(v('spool_events_pending'))} "
            f"pending, oldest {v('spool_oldest_pending_seconds'):.1f} s; output "
            f"{'up' if v('output_up') else 'down'}")
