"""`haproxy-receiver status`: what a running instance is doing, read from its metrics endpoint.

The running receiver already publishes everything an operator asks first (listeners and their
traffic, spool depth and lag, whether the output answers); this module scrapes `/metrics` and
`/readyz` and prints a short report, so there is no second control channel to secure.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from receiver.metrics import NAMESPACE


class StatusError(RuntimeError):
    """The instance could not be reached."""


@dataclass
class Status:
    ready: bool
    ready_reason: str
    received: dict[str, float] = field(default_factory=dict)  # listener → messages
    values: dict[str, float] = field(default_factory=dict)  # metric (labels summed) → value

    def value(self, name: str) -> float:
        return self.values.get(name, 0.0)


def fetch_status(base_url: str, timeout: float = 5.0) -> Status:
    try:
        with urllib.request.urlopen(f"{base_url}/metrics", timeout=timeout) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError) as error:
        raise StatusError(f"cannot reach {base_url}/metrics: {error}") from None
    ready, reason = _readiness(base_url, timeout)
    status = Status(ready, reason)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name.removeprefix(f"{NAMESPACE}_")
            status.values[name] = status.values.get(name, 0.0) + sample.value
            if name == "messages_received_total":
                listener = sample.labels.get("listener", "?")
                status.received[listener] = status.received.get(listener, 0.0) + sample.value
    return status


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
        lines.append("  (no message received yet)")
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
    return "\n".join(lines)
