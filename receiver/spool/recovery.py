"""Start-up repair of segment files left by a previous run, before the writer opens a new one.

A segment without a valid footer was being written when the previous process stopped (or its
end is damaged): it is scanned, a torn tail (half-written last record, possible after a power
cut) is truncated, damaged runs in the middle are copied to the quarantine folder and counted
(the reader skips them, positions of the valid records around them stay unchanged), and a footer
is added so the segment counts as closed. Empty or header-less files hold no record and are
removed; a damaged header is rewritten. Nothing here refuses to start: every problem is logged,
counted, and the valid records kept.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from receiver.metrics import Metrics
from receiver.spool.directory import Checkpoint, quarantine
from receiver.spool.format import (
    FRAME_SIZE,
    HEADER_SIZE,
    list_segments,
    pack_footer,
    pack_header,
    parse_footer,
    parse_header,
    scan_segment,
    segment_name,
)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RecoveredSegment:
    size: int
    records: int


@dataclass(slots=True)
class Recovery:
    segments: dict[int, RecoveredSegment] = field(default_factory=dict)
    next_segment: int = 1
    corrupt_runs: int = 0


def recover(
    directory: Path, identity: str, checkpoint: Checkpoint | None, metrics: Metrics, max_record: int
) -> Recovery:
    numbers = list_segments(directory)
    result = Recovery()
    # Never reuse a segment number, not even one of a file removed below: positions are ids.
    result.next_segment = max([0, *numbers, checkpoint.segment if checkpoint else 0]) + 1
    for number in numbers:
        path = directory / segment_name(number)
        try:
            recovered = _recover_segment(path, number, identity, metrics, max_record)
        except OSError as error:
            log.error(
                "spool segment %s cannot be repaired (%s); left as it is, the reader skips "
                "what it cannot read", path, error.strerror,
            )
            continue
        if recovered is not None:
            result.segments[number] = recovered
    return result


def _recover_segment(
    path: Path, number: int, identity: str, metrics: Metrics, max_record: int
) -> RecoveredSegment | None:
    size = path.stat().st_size
    directory = path.parent
    if size < HEADER_SIZE:
        if size:
            with open(path, "rb") as handle:
                if quarantine(directory, number, 0, handle.read()):
                    metrics.spool_corrupt_records.inc()
            log.warning("spool segment %s has a cut header (%d bytes, no record); removed", path, size)
        else:
            log.info("spool segment %s is empty; removed", path)
        path.unlink()
        return None
    with open(path, "r+b") as handle:
        header = handle.read(HEADER_SIZE)
        if parse_header(header) is None:
            if quarantine(directory, number, 0, header):
                metrics.spool_corrupt_records.inc()
            log.warning("spool segment %s has a damaged header; rewritten, records kept", path)
            handle.seek(0)
            handle.write(pack_header(identity, number, time.time()))
        if size >= HEADER_SIZE + FRAME_SIZE:
            handle.seek(size - FRAME_SIZE)
            count = parse_footer(handle.read(FRAME_SIZE))
            if count is not None:
                return RecoveredSegment(size, count)
        handle.seek(0)
        data = handle.read()
        scan = scan_segment(data, max_record)
        for damage in scan.damage or []:
            fresh = quarantine(directory, number, damage.start, data[damage.start : damage.end])
            if fresh:
                metrics.spool_corrupt_records.inc()
            if damage.torn_tail:
                log.warning(
                    "spool segment %s: torn tail of %d bytes at offset %d (an unfinished write) "
                    "truncated; copy in the quarantine folder", path, damage.end - damage.start,
                    damage.start,
                )
                handle.truncate(damage.start)
                handle.seek(damage.start)
            else:
                log.error(
                    "spool segment %s: %d damaged bytes at offset %d skipped (copy in the "
                    "quarantine folder); the records around them are kept", path,
                    damage.end - damage.start, damage.start,
                )
        if scan.footer is None:
            handle.seek(0, os.SEEK_END)
            handle.write(pack_footer(scan.records, time.time()))
        size = handle.tell()
    return RecoveredSegment(size, scan.records)
