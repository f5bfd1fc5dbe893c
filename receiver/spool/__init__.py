"""The write-ahead spool between receiving and shipping: every received message is on disk
before it is parsed and shipped, and leaves only after the output acknowledged it.

Files in the spool directory (one running instance per directory, all of them 0600, the
directory 0700):

    000000000001.seg …   segments, numbered, never reused; written in order, sealed at
                         `spool.segment_bytes` (or when the disk is full), deleted once every
                         record in them is acknowledged
    lock                 flock(2) held by the owning process (its pid inside, for the error message)
    identity             the spool's name: 10 base32 characters and the place they were made
                         for (see directory.load_identity); event ids do not depend on it
    ledger               per segment the acknowledged prefix, and the highest segment number
    quarantine/          copies of damaged bytes found in segments, `<segment>-<offset>.bin`

A segment is a 42-byte header (magic `HRSPOOL\\0`, format version, the identity of the writer
that made it (random, new at every start), segment number, creation time, CRC32C), then
records, then (once sealed) a footer. Each record is a 20-byte frame head — marker
`\\x1eHRr`, CRC32C, payload length, time written — followed by one msgpack record
(receiver/event.py: the message as received); the CRC32C covers length, time and payload.
Records never span segments. The footer is a frame with marker `\\x1eHRf` whose length
field holds the segment's record count, so pending events are counted without reading the
segments. Positions (segment, offset of the frame) name records within their segment;
`event_id` builds the Elasticsearch `_id` from the segment's identity and the position, so a
replay after a crash is recognised (409 on `create`), and no id is given to two events whatever
file of the spool is lost (see records.py).

Guarantees: an event counts as accepted when `SpoolWriter.append` returned; it then survives a
kill of the process. It survives a power cut once fsynced (`fsync = "always"`: before `append`
returns; `"interval"`: within `fsync_interval`; `"never"`: when the kernel writes back). After a
crash, the start-up truncates a half-written tail, quarantines and counts damaged bytes and keeps
every valid record; readers resume at the acknowledged prefixes, so what was shipped but not yet
acknowledged is sent again and Elasticsearch ignores it by its id: at-least-once on disk,
exactly-once in the index.

The writer and the ledger (spool/ledger.py) live in the owning process; readers (one per
worker, in that process or others) take whole segments from the ledger (spool/reader.py).
"""

from receiver.spool.errors import SpoolError, SpoolLocked
from receiver.spool.ledger import Ack, Lease, Ledger
from receiver.spool.reader import LedgerClient, LocalLedger, SpoolReader
from receiver.spool.records import Batch, Position, Record, event_id
from receiver.spool.stats import RecordCounter, SpoolStats, collector, dump_pending, spool_stats
from receiver.spool.writer import SpoolWriter

__all__ = [
    "Ack",
    "Batch",
    "Lease",
    "Ledger",
    "LedgerClient",
    "LocalLedger",
    "Position",
    "Record",
    "RecordCounter",
    "SpoolError",
    "SpoolLocked",
    "SpoolReader",
    "SpoolStats",
    "SpoolWriter",
    "collector",
    "dump_pending",
    "event_id",
    "spool_stats",
]
