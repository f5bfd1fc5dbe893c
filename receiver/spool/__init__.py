"""The write-ahead spool between receiving and shipping: every accepted event is on disk before
it is shipped, and leaves only after the output acknowledged it.

Files in the spool directory (one running instance per directory):

    000000000001.seg …   segments, numbered, never reused; written in order, rolled at
                         `spool.segment_bytes`, deleted by the reader once fully acknowledged
    lock                 flock(2) held by the writer (its pid inside, for the error message)
    identity             10 base32 characters chosen once: the first part of every event id
    checkpoint           where reading resumes: segment, offset, records before it (CRC32C,
                         replaced atomically by rename)
    quarantine/          copies of damaged bytes found in segments, `<segment>-<offset>.bin`

A segment is a 42-byte header (magic `HRSPOOL\\0`, format version, spool identity, segment
number, creation time, CRC32C), then records, then (once closed) a footer. Each record is a
20-byte frame head — marker `\\x1eHRr`, CRC32C, payload length, time written — followed by one
msgpack document; the CRC32C covers length, time and payload. Records never span segments. The
footer is a frame with marker `\\x1eHRf` whose length field holds the segment's record count,
so pending events are counted without reading the segments. Positions (segment, offset of the
frame) name records for the life of the directory; `event_id` builds the Elasticsearch `_id`
from the identity and the position, so a replay after a crash is recognised (409 on `create`).

Guarantees: an event counts as accepted when `SpoolWriter.append` returned; it then survives a
kill of the process. It survives a power cut once fsynced (`fsync = "always"`: before `append`
returns; `"interval"`: within `fsync_interval`; `"never"`: when the kernel writes back). After a
crash, the start-up truncates a half-written tail, quarantines and counts damaged bytes and keeps
every valid record; the reader resumes at the checkpoint, so what was shipped but not yet
checkpointed is sent again and Elasticsearch ignores it by its id: at-least-once on disk,
exactly-once in the index.

The writer (listener threads) and the reader (the shipper: another thread or another process of
the same instance) share nothing but the files; the writer must be opened first.
"""

from receiver.spool.errors import SpoolError, SpoolLocked
from receiver.spool.reader import SpoolReader
from receiver.spool.records import Batch, Position, Record, event_id
from receiver.spool.stats import RecordCounter, SpoolStats, collector, dump_pending, spool_stats
from receiver.spool.writer import SpoolWriter

__all__ = [
    "Batch",
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
