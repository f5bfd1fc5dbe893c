"""Prometheus metrics of every stage, and the HTTP endpoint that serves them.

Each component declares its metrics in a class of its own (listen, spool, parse, ship), built on
a registry it is given, so a test (or two receivers in one process) never share counters. A
process registers the components it runs: the receiving process `ReceiverMetrics`, each worker
`WorkerMetrics`, whose samples the receiving process relays (`Relayed`). Hot paths increment once per batch
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
from prometheus_client.samples import Sample

from receiver.addresses import family_of, parse_host_port

log = logging.getLogger(__name__)

NAMESPACE = "haproxy_receiver"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def _counter(name: str, documentation: str, registry: CollectorRegistry,
             labels: tuple[str, ...] = ()) -> Counter:
    return Counter(name, documentation, labels, namespace=NAMESPACE, registry=registry)


def _gauge(name: str, documentation: str, registry: CollectorRegistry,
           labels: tuple[str, ...] = (), merge: str = "sum") -> Gauge:
    """`merge`: how the service combines this gauge across worker processes (`sum` or `min`)."""
    if merge != "sum":
        GAUGE_MERGE[f"{NAMESPACE}_{name}"] = merge
    return Gauge(name, documentation, labels, namespace=NAMESPACE, registry=registry)


def _histogram(name: str, documentation: str, registry: CollectorRegistry) -> Histogram:
    return Histogram(name, documentation, namespace=NAMESPACE, registry=registry,
                     buckets=_LATENCY_BUCKETS)


# Gauges that are not summed across worker processes, by name (declared where they are made).
GAUGE_MERGE: dict[str, str] = {}


class ListenMetrics:
    """The listeners (receiving process)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.messages_received = _counter(
            "messages_received", "Syslog messages received, by listener and transport.", r,
            ("listener", "transport"))
        self.bytes_received = _counter(
            "received_bytes", "Bytes of syslog messages received.", r, ("listener", "transport"))
        self.messages_truncated = _counter(
            "messages_truncated", "Messages cut at listen.max_message_bytes (stream frames and "
            "datagrams) or by the end of their connection.", r,
            ("listener",))
        self.connections_open = _gauge("connections_open", "Stream connections open.", r,
                                       ("listener",))
        self.messages_refused = _counter(
            "messages_refused", "Datagrams refused because their source is not in listen.allow.",
            r, ("listener",))
        self.connections_refused = _counter(
            "connections_refused", "Stream connections refused or closed, by reason.", r,
            ("listener", "reason"))


class SpoolMetrics:
    """The spool and its ledger (receiving process): every outcome of an accepted event is
    counted here, once (spool/ledger.py)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.events_spooled = _counter("events_spooled", "Events appended to the spool.", r)
        self.events_recovered = _counter(
            "events_recovered", "Events found pending in the spool at start (spooled by an "
            "earlier run).", r)
        self.events_dropped = _counter(
            "events_dropped", "Events not accepted or removed unshipped, by reason.", r,
            ("reason",))
        self.events_shipped = _counter(
            "events_shipped", "Events acknowledged by the output (created, or 409 already there).",
            r)
        self.events_dead_lettered = _counter(
            "events_dead_lettered",
            "Events refused by Elasticsearch and written to the dead-letter file.", r, ("reason",))
        self.spool_corrupt_records = _counter(
            "spool_corrupt_records", "Spool records lost to damaged bytes (copied to the "
            "quarantine folder), counted by the record markers in the damage.", r)
        self.spool_events_reidentified = _counter(
            "spool_events_reidentified", "Pending spool events sent under a new id because "
            "their segment's header (and so their old id) was damaged: Elasticsearch may hold "
            "them twice.", r)
        self.spool_fsyncs = _counter("spool_fsyncs", "fsync calls on spool files.", r)
        self.spool_fsync_seconds = _histogram("spool_fsync_seconds", "Duration of spool fsyncs.", r)

    # The ledger's counters (spool.ledger.Counters).
    def shipped(self, count: int) -> None:
        if count:
            self.events_shipped.inc(count)

    def dead_lettered(self, reason: str, count: int) -> None:
        self.events_dead_lettered.labels(reason).inc(count)

    def dropped(self, reason: str, count: int) -> None:
        if count:
            self.events_dropped.labels(reason).inc(count)

    def lost(self, count: int) -> None:
        if count:
            self.spool_corrupt_records.inc(count)


class ParseMetrics:
    """Parsing (each worker process); a replay after a worker's crash is parsed, and counted,
    again."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.events_parsed = _counter(
            "events_parsed", "Messages turned into documents, by detected body format.", r,
            ("format",))
        self.parse_failures = _counter(
            "parse_failures", "Bodies that could not be understood (kept as `message`).", r,
            ("reason",))


class ShipMetrics:
    """Bulk requests (each worker process)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.events_retried = _counter(
            "events_retried", "Event deliveries retried after a retriable error.", r)
        self.bulk_requests = _counter("bulk_requests", "Bulk requests by outcome.", r,
                                      ("outcome",))
        self.bulk_seconds = _histogram("bulk_request_seconds", "Bulk request latency.", r)
        self.bulk_in_flight = _gauge("bulk_requests_in_flight", "Bulk requests in flight.", r)
        self.bulk_bytes_sent = _counter(
            "bulk_sent_bytes", "Bytes of bulk request bodies sent (after compression).", r)
        self.output_up = _gauge(
            "output_up", "1 while the last request to the output succeeded (every worker's).", r,
            merge="min")


class KafkaMetrics:
    """The Kafka path (receiver/kafka/): producing workers of `run`, members of `consume`.
    Zero where Kafka is not configured."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.kafka_produce_queue = _gauge(
            "kafka_produce_queue", "Records sent to Kafka and not yet reported stored.", r)
        self.kafka_records_produced = _counter(
            "kafka_records_produced", "Records Kafka reported stored (acks=all).", r)
        self.kafka_delivery_errors = _counter(
            "kafka_delivery_errors", "Records Kafka did not store, by error (produced again, or "
            "dead-lettered when refused for good).", r,
            ("error",))
        self.kafka_up = _gauge(
            "kafka_up", "0 once Kafka was unreachable for kafka.unreachable_after (every "
            "client's), else 1.", r, merge="min")
        self.kafka_records_consumed = _counter(
            "kafka_records_consumed", "Records read from Kafka by this consumer group member.", r)
        self.kafka_consumer_lag = _gauge(
            "kafka_consumer_lag", "Records in an assigned partition after the last one read.", r,
            ("partition",))
        self.kafka_rebalances = _counter(
            "kafka_rebalances", "Partitions assigned to or revoked from this member.", r,
            ("change",))
        self.kafka_commits = _counter(
            "kafka_commits", "Offset commits, by outcome.", r, ("outcome",))


class ReceiverMetrics(ListenMetrics, SpoolMetrics):
    """The receiving process: listeners, spool and ledger, plus what its workers relay."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        ListenMetrics.__init__(self, self.registry)
        SpoolMetrics.__init__(self, self.registry)

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)


class WorkerMetrics(ParseMetrics, ShipMetrics, KafkaMetrics):
    """A parse-and-ship worker process: everything it counts is relayed to the receiving
    process (receiver/workers/), which serves it."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        ParseMetrics.__init__(self, self.registry)
        ShipMetrics.__init__(self, self.registry)
        KafkaMetrics.__init__(self, self.registry)


class ConsumerMetrics(WorkerMetrics):
    """A member of the Kafka worker tier (`consume`): a worker, plus the outcome counters the
    ledger keeps in a receiver (there is no ledger here: Kafka's committed offsets are it)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.events_shipped = _counter(
            "events_shipped", "Events acknowledged by the output (created, or 409 already "
            "there); a record read again after a rebalance counts again.", r)
        self.events_dead_lettered = _counter(
            "events_dead_lettered",
            "Events refused by Elasticsearch and written to the dead-letter file.", r, ("reason",))


class Metrics(ReceiverMetrics, WorkerMetrics):
    """Every component in one registry: one process doing everything (tests, tools)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        ParseMetrics.__init__(self, self.registry)
        ShipMetrics.__init__(self, self.registry)
        KafkaMetrics.__init__(self, self.registry)


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


HealthCheck = Callable[[], tuple[bool, str]]


def bind_http(registry: CollectorRegistry, listen: str, ready: HealthCheck) -> ThreadingHTTPServer:
    """The server of `/metrics`, `/healthz` (alive) and `/readyz` (spool writable, etc.), bound
    but not yet serving (`serve_forever` in a thread starts it):
    bound before anything starts, so a taken port fails the start (OSError). Close a server
    that never served with `server_close()`: `shutdown()` would wait for it forever."""
    host, port = parse_host_port(listen)

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

    return Server((host, port), Handler)


def serve(registry: CollectorRegistry, listen: str, ready: HealthCheck) -> ThreadingHTTPServer:
    """`bind_http`, then serving in a thread at once: for the programs that have nothing to
    start in between (`consume`, `import --metrics`). Stop it with `shutdown()`."""
    server = bind_http(registry, listen, ready)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server


class Relayed(Collector):
    """Serves what worker processes count (their `WorkerMetrics`), merged into one family per
    metric: counters and histograms summed over the workers and kept monotonic across a
    worker's restart (what an exited worker counted stays as a base); gauges summed over the
    living workers, or their minimum where the metric says so (`GAUGE_MERGE`). Every family a
    worker exposes is relayed, so a metric added to `WorkerMetrics` needs no list kept here."""

    def __init__(self) -> None:
        # Zeros until the first worker reports, so a scrape never lacks a family.
        self._template = list(WorkerMetrics().registry.collect())
        self._latest: dict[object, list[Metric]] = {}
        self._bases: dict[str, dict[_SampleKey, float]] = {}  # by family
        self._lock = threading.Lock()

    def update(self, worker: object, families: list[Metric]) -> None:
        with self._lock:
            self._latest[worker] = families

    def gone(self, worker: object) -> None:
        """The worker exited: its counters become part of the base."""
        with self._lock:
            for family in self._latest.pop(worker, []):
                if family.type in ("counter", "histogram"):
                    base = self._bases.setdefault(family.name, {})
                    for sample in family.samples:
                        if not sample.name.endswith("_created"):
                            key = _sample_key(sample)
                            base[key] = base.get(key, 0.0) + sample.value

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            snapshots = list(self._latest.values())
            bases = {name: dict(base) for name, base in self._bases.items()}
        by_name: dict[str, list[Metric]] = {}
        for families in snapshots:
            for family in families:
                by_name.setdefault(family.name, []).append(family)
        for template in self._template:
            yield _merged(template, by_name.get(template.name, []), bases.get(template.name, {}))


_SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def _sample_key(sample: Sample) -> _SampleKey:
    """A sample's name and labels: the same series in every worker's snapshot."""
    return sample.name, tuple(sorted(sample.labels.items()))


def _merged(template: Metric, families: list[Metric], bases: dict[_SampleKey, float]) -> Metric:
    merged = Metric(template.name, template.documentation, template.type, template.unit)
    cumulative = template.type in ("counter", "histogram")
    how = GAUGE_MERGE.get(template.name, "sum")
    values: dict[_SampleKey, list[float]] = {}
    labels: dict[_SampleKey, dict[str, str]] = {}
    for family in families or [template]:
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            key = _sample_key(sample)
            values.setdefault(key, []).append(sample.value if families else 0.0)
            labels[key] = sample.labels
    for key in bases:
        if key not in values:
            values[key], labels[key] = [], dict(key[1])
    combine = min if how == "min" and not cumulative else sum
    for key, seen in values.items():
        merged.add_sample(key[0], labels[key], combine(seen or [0.0]) + bases.get(key, 0.0))
    return merged
