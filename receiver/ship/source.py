"""The seam the shipper reads from: batches of records, each acknowledged once its events were
delivered or dead-lettered.

Two sources implement it: the spool reader of a worker (receiver/spool/reader.py, segments
leased from the ledger) and the Kafka consumer of a worker-tier member (receiver/kafka/, the
partitions the consumer group assigned). Either way a `Batch` holds records of one identity and
segment, so `event_id` names every event the same way wherever it is shipped from.
"""

from __future__ import annotations

from typing import Protocol

from receiver.spool.records import Batch


class Source(Protocol):
    """What the shipper needs from where its records come from."""

    def read(self, max_records: int, max_bytes: int) -> Batch | None:
        """Up to `max_records` records (about `max_bytes`), or None when nothing is ready."""

    def wait(self, timeout: float) -> bool:
        """Block until `read` may find something (or `timeout`); True if it may."""

    def acknowledge(self, batch: Batch, shipped: int = 0,
                    dead: tuple[tuple[str, int], ...] = ()) -> None:
        """Every event of `batch` was delivered (`shipped`) or dead-lettered (`dead`, by reason)."""

    def join(self, first: Batch, then: Batch) -> bool:
        """Let `first` (read, not acknowledged yet) take in `then`, read right after it, when one
        acknowledgement of the two is what acknowledging each would be: True, and `first` now
        stands for both; False changes nothing. The shipper encodes and acknowledges what it
        collects for one bulk request as one batch where it can."""
