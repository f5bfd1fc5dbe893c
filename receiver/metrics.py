"""Prometheus metrics of every stage, and the HTTP endpoint that serves them.

All metrics live in one `Metrics` object built on its own `CollectorRegistry`, so a test (or
two receivers in one process) never share counters. Hot paths increment once per batch
(`inc(n)`), never once per message. Values that exist on disk or in the kernel (spool bytes,
UDP drops) are read at scrape time by collectors, not updated on the hot path.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from receiver.addresses import family_of, parse_host_port

log = logging.getLogger(__name__)

NAMESPACE = "haproxy_receiver"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """Every metric the receiver exposes, by stage."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # listen
        self.messages_received = Counter(
            "messages_received", "Syslog messages received, by listener and transport.",
            ["listener", "transport"], namespace=NAMESPACE, registry=r)
        self.bytes_received = Counter(
            "received_bytes", "Bytes of syslog messages received.",
            ["listener", "transport"], namespace=NAMESPACE, registry=r)
        self.messages_truncated = Counter(
            "messages_truncated", "Stream messages cut at listen.max_message_bytes.",
            ["listener"], namespace=NAMESPACE, registry=r)
        self.connections_open = Gauge(
            "connections_open", "Stream connections open.", ["listener"],
            namespace=NAMESPACE, registry=r)
        self.messages_refused = Counter(
            "messages_refused", "Datagrams refused because their source is not in listen.allow.",
            ["listener"], namespace=NAMESPACE, registry=r)
        self.connections_refused = Counter(
            "connections_refused", "Stream connections refused, by reason.",
            ["listener", "reason"], namespace=NAMESPACE, registry=r)
        # parse
        self.events_parsed = Counter(
            "events_parsed", "Messages turned into documents, by detected body format.",
            ["format"], namespace=NAMESPACE, registry=r)
        self.parse_failures = Counter(
            "parse_failures", "Bodies that could not be understood (kept as `message`).",
            ["reason"], namespace=NAMESPACE, registry=r)
        # spool
        self.events_spooled = Counter(
            "events_spooled", "Events appended to the spool.", namespace=NAMESPACE, registry=r)
        self.events_dropped = Counter(
            "events_dropped", "Events not accepted or removed unshipped, by reason.",
            ["reason"], namespace=NAMESPACE, registry=r)
        self.spool_fsyncs = Counter(
            "spool_fsyncs", "fsync calls on spool files.", namespace=NAMESPACE, registry=r)
        self.spool_fsync_seconds = Histogram(
            "spool_fsync_seconds", "Duration of spool fsyncs.", namespace=NAMESPACE,
            registry=r, buckets=_LATENCY_BUCKETS)
        self.spool_corrupt_records = Counter(
            "spool_corrupt_records", "Damaged spool records skipped and quarantined.",
            namespace=NAMESPACE, registry=r)
        self.spool_records_cut = Counter(
            "spool_records_cut", "Events larger than spool.max_record_bytes, cut to fit.",
            namespace=NAMESPACE, registry=r)
        # ship
        self.events_shipped = Counter(
            "events_shipped", "Events acknowledged by the output (created, or 409 already there).",
            namespace=NAMESPACE, registry=r)
        self.events_retried = Counter(
            "events_retried", "Event deliveries retried after a retriable error.",
            namespace=NAMESPACE, registry=r)
        self.events_dead_lettered = Counter(
            "events_dead_lettered", "Events refused by Elasticsearch and written to the dead-letter file.",
            ["reason"], namespace=NAMESPACE, registry=r)
        self.bulk_requests = Counter(
            "bulk_requests", "Bulk requests by outcome.", ["outcome"],
            namespace=NAMESPACE, registry=r)
        self.bulk_seconds = Histogram(
            "bulk_request_seconds", "Bulk request latency.", namespace=NAMESPACE, registry=r,
            buckets=_LATENCY_BUCKETS)
        self.bulk_in_flight = Gauge(
            "bulk_requests_in_flight", "Bulk requests in flight.", namespace=NAMESPACE, registry=r)
        self.bulk_bytes_sent = Counter(
            "bulk_sent_bytes", "Bytes of bulk request bodies sent (after compression).",
            namespace=NAMESPACE, registry=r)
        self.output_up = Gauge(
            "output_up", "1 while the last request to the output succeeded.",
            namespace=NAMESPACE, registry=r)

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)


class CallbackCollector(Collector):
    """Gauges computed at scrape time from a callback returning `(name, help, value)` rows."""

    def __init__(self, callback: Callable[[], Iterable[tuple[str, str, float]]]) -> None:
        self._callback = callback

    def collect(self) -> Iterable[Metric]:
        try:
            rows = list(self._callback())
        except Exception:  # a scrape must never fail because a file vanished mid-read
            log.exception("metrics collector failed")
            return
        for name, documentation, value in rows:
            yield GaugeMetricFamily(f"{NAMESPACE}_{name}", documentation, value=value)


def udp_socket_drops(inodes: Iterable[int], proc_net: str = "/proc/net") -> int:
    """Kernel drop counter summed over our UDP sockets (`drops`, last column of /proc/net/udp*)."""
    wanted = set(inodes)
    total = 0
    for name in ("udp", "udp6"):
        try:
            with open(f"{proc_net}/{name}") as handle:
                next(handle, None)
                for line in handle:
                    cols = line.split()
                    if len(cols) >= 13 and int(cols[9]) in wanted:
                        total += int(cols[-1])
        except OSError:
            continue
    return total


def udp_rcvbuf_errors(proc_net: str = "/proc/net") -> int:
    """System-wide `Udp: RcvbufErrors` from /proc/net/snmp (drops of every UDP socket)."""
    try:
        with open(f"{proc_net}/snmp") as handle:
            rows = [line.split() for line in handle if line.startswith("Udp:")]
    except OSError:
        return 0
    if len(rows) < 2 or "RcvbufErrors" not in rows[0]:
        return 0
    return int(rows[1][rows[0].index("RcvbufErrors")])


HealthCheck = Callable[[], tuple[bool, str]]


def serve(metrics: Metrics, listen: str, ready: HealthCheck) -> ThreadingHTTPServer:
    """Serve `/metrics`, `/healthz` (alive) and `/readyz` (spool writable, etc.) in a thread."""
    host, port = parse_host_port(listen)
    registry = metrics.registry

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path == "/healthz":
                self._send(200, "text/plain; charset=utf-8", b"ok\n")
            elif path == "/readyz":
                ok, reason = ready()
                self._send(200 if ok else 503, "text/plain; charset=utf-8", (reason + "\n").encode())
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # scrapes are not news
            return

    class Server(ThreadingHTTPServer):
        address_family = family_of(host)
        daemon_threads = True

    server = Server((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
