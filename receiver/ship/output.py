"""The `Output` protocol: where bulk bodies go and what came back, for the shipper.

An output takes one NDJSON bulk body (`create` action + document per item, uncompressed) and
answers with a `Classification` (see classify.py). It never raises for delivery trouble: a
refused connection, a timeout or a strange answer is a classification too, so the shipper has
exactly one place that decides about retries.
"""

from __future__ import annotations

from typing import Protocol

from receiver.ship.classify import Classification


class Output(Protocol):
    """A destination for bulk bodies (Elasticsearch/OpenSearch, or stdout)."""

    #: Whether action lines should carry `_id` (stdout prints documents only).
    wants_ids: bool

    def describe(self) -> str:
        """Where this output writes, safe for logs (no credentials)."""
        ...

    def send(self, body: bytes, items: int) -> Classification:
        """Deliver one bulk body of `items` documents; never raises for delivery problems."""
        ...

    def close(self) -> None: ...
