"""The `Output` protocol: where bulk bodies go and what came back, for the shipper.

An output takes one NDJSON bulk body (`create` action + document per item, uncompressed, and
the index the request names when its action lines do not) and
answers with a `Classification` (see classify.py). It never raises for delivery trouble: a
refused connection, a timeout or a strange answer is a classification too, so the shipper has
exactly one place that decides about retries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO, Protocol

from receiver.ship.classify import Classification

if TYPE_CHECKING:
    from receiver.config import ElasticsearchSettings
    from receiver.metrics import ShipMetrics


class Output(Protocol):
    """A destination for bulk bodies (Elasticsearch/OpenSearch, or stdout)."""

    #: Whether action lines should carry `_id` (stdout prints documents only).
    wants_ids: bool

    def describe(self) -> str:
        """Where this output writes, safe for logs (no credentials)."""
        ...

    def send(self, body: bytes, items: int, index: str | None = None) -> Classification:
        """Deliver one bulk body of `items` documents; never raises for delivery problems.
        `index`: where the items whose action line names no `_index` go (`POST
        /<index>/_bulk`, EncodedBatch.request_index)."""
        ...

    def setup(self) -> None:
        """`elasticsearch.setup_on_start`: prepare the destination (the index template) at a
        worker's start; a failure is logged, never raised (shipping goes on)."""
        ...

    def destination(self) -> ElasticsearchSettings | None:
        """The settings with where documents go decided for this server (a data stream or
        indices: receiver/ship/destination.py); None when there is no server. May raise
        OutputUnavailable while the server cannot be asked."""
        ...

    def close(self) -> None: ...


def make_output(settings: ElasticsearchSettings, metrics: ShipMetrics | None, stdout: BinaryIO) -> Output:
    """Elasticsearch when `hosts` is set, else JSON lines on `stdout`."""
    # Imported here: the outputs import this module for `Output`.
    if settings.hosts:
        from receiver.ship.destination import resolve
        from receiver.ship.elasticsearch import ElasticsearchOutput
        from receiver.ship.setup import setup_at_start

        return ElasticsearchOutput(settings, metrics, setup_at_start, resolve)
    from receiver.ship.stdout import StdoutOutput

    return StdoutOutput(stdout)
