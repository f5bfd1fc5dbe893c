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

import errno
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from io import FileIO
from pathlib import Path

from receiver.spool.directory import quarantine
from receiver.spool.format import (
    FOOTER_MARKER,
    FRAME,
    FRAME_SIZE,
    HEADER_SIZE,
    RECORD_MARKER,
    list_segments,
    pack_footer,
    pack_header,
    parse_footer,
    parse_footer_frame,
    parse_header,
    records_in,
    scan_segment,
    segment_name,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RecoveredSegment:
    number: int
    size: int  # bytes on disk
    records: int  # valid records in it
    end: int  # where its records end (its footer, when it has one, follows)


@dataclass(slots=True)
class Recovery:
    segments: list[RecoveredSegment] = field(default_factory=list)
    next_segment: int = 1
    lost_records: int = 0  # in torn tails cut off now (also counted recovered: they were pending)
    # segment -> records, for segments whose damaged header was rewritten with the writer's
    # identity: their events get new ids (see SpoolWriter._count_reidentified)
    reidentified: dict[int, int] = field(default_factory=dict)


def recover(directory: Path, identity: str, highest: int,
            clock: Callable[[], float] = time.time,
            seals: dict[int, tuple[int, int]] | None = None) -> Recovery:
    """Repair every segment file; `highest` is the highest segment number ever created here
    (the ledger's): numbers go on from it. `clock` stamps what recovery writes; `seals` (the
    ledger's: segment -> where its records ended and how many it held when sealed) tell what a
    sealed segment cut short lost."""
    seals = seals or {}
    numbers = list_segments(directory)
    result = Recovery()
    # Never reuse a segment number, not even one of a file removed below: positions are ids.
    result.next_segment = max([highest, *numbers]) + 1
    for number in numbers:
        path = directory / segment_name(number)
        try:
            recovered = _recover_segment(path, number, identity, result, clock,
                                         seals.get(number))
        except OSError as error:
            log.error(
                "spool segment %s cannot be repaired (%s); left as it is, the reader skips "
                "what it cannot read", path, error.strerror,
            )
            continue
        if recovered is not None:
            result.segments.append(recovered)
    return result


def _recover_segment(
    path: Path, number: int, identity: str, result: Recovery, clock: Callable[[], float],
    seal: tuple[int, int] | None,
) -> RecoveredSegment | None:
    size = path.stat().st_size
    directory = path.parent
    if size < HEADER_SIZE:
        if size:
            with open(path, "rb") as handle:
                quarantine(directory, number, 0, handle.read())
            log.warning("spool segment %s has a cut header (%d bytes, no record); removed", path, size)
        else:
            log.info("spool segment %s is empty; removed", path)
        path.unlink()
        return None
    # Unbuffered: a write the disk has no room for fails at once, not at a later flush or close.
    with open(path, "r+b", buffering=0) as handle:
        header = handle.read(HEADER_SIZE)
        rewritten = parse_header(header) is None
        if rewritten:
            quarantine(directory, number, 0, header)
            log.warning("spool segment %s has a damaged header; rewritten with this start's "
                        "identity %s, records kept (their ids change)", path, identity)
            handle.seek(0)
            handle.write(pack_header(identity, number, clock()))
        recovered = _recover_frames(handle, path, number, size, result, clock, seal)
    if rewritten:
        result.reidentified[number] = recovered.records
    return recovered


def _recover_frames(handle: FileIO, path: Path, number: int, size: int, result: Recovery,
                    clock: Callable[[], float], seal: tuple[int, int] | None) -> RecoveredSegment:
    """The records of a segment whose header is in order: its footer's count, or a scan that
    truncates a torn tail and adds the footer. Damaged records in the middle count as records
    of the segment (their reader counts them lost), as in a footer the writer wrote."""
    directory = path.parent
    if size >= HEADER_SIZE + FRAME_SIZE:
        handle.seek(size - FRAME_SIZE)
        count = parse_footer(handle.read(FRAME_SIZE))
        if count is not None:
            return RecoveredSegment(number, size, count, size - FRAME_SIZE)
    handle.seek(0)
    data = handle.read()
    scan = scan_segment(data)
    torn = hidden = 0  # records lost in a torn tail, records in damage the reader will skip
    for damage in scan.damage or []:
        stretch = data[damage.start : damage.end]
        fresh = quarantine(directory, number, damage.start, stretch)
        if damage.torn_tail:
            # Counted here (the reader never sees a torn tail); damage in the middle is
            # counted once by the reader that skips it, when it is acknowledged. A damaged
            # footer behind every record held none.
            damaged_footer = _damaged_footer(stretch, scan.records)
            if fresh and not damaged_footer:
                torn = records_in(stretch)
            log.warning(
                "spool segment %s: %s of %d bytes at offset %d truncated; copy in the quarantine "
                "folder", path, "damaged footer (no record lost; rewritten)" if damaged_footer
                else "torn tail (an unfinished write)", damage.end - damage.start, damage.start,
            )
            handle.truncate(damage.start)
            handle.seek(damage.start)
        else:
            hidden += records_in(stretch)
            log.error(
                "spool segment %s: %d damaged bytes at offset %d skipped (copy in the "
                "quarantine folder); the records around them are kept", path,
                damage.end - damage.start, damage.start,
            )
    records = scan.records + hidden
    if seal is not None and scan.footer is None and seal[0] >= scan.end:
        # Sealed with `seal[1]` records: the end was cut off (the ledger remembers the count
        # the lost footer held). A seal ending before the records found is stale (a ledger
        # restored from a backup, the number since reused) and not believed; one that is stale
        # and ends after them can only overstate the loss, and the accounting still closes
        # (what is counted lost here is counted recovered too).
        cut = seal[1] - records
        if cut > torn:
            log.error("spool segment %s: sealed with %d records, %d of them cut off; counted "
                      "lost", path, seal[1], cut)
        torn = max(torn, cut)
    result.lost_records += torn
    end = scan.end if scan.footer is None else scan.end - FRAME_SIZE
    if scan.footer is None:
        handle.seek(0, os.SEEK_END)
        footer = pack_footer(records, clock())
        try:
            if handle.write(footer) != len(footer):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as error:  # a full disk: the ledger knows where it ends anyway
            log.warning("spool segment %s: cannot add its footer (%s)", path, error.strerror)
            handle.truncate(end)
    size = os.fstat(handle.fileno()).st_size
    return RecoveredSegment(number, size, records, end)


def _damaged_footer(tail: bytes, records: int) -> bool:
    """A torn tail that is the segment's footer with some bytes flipped, not a cut record: a
    frame head alone, with the footer's marker or the count of the records before it (a record's
    head cut from its payload has the record marker and its payload's length)."""
    if len(tail) != FRAME_SIZE:
        return False
    marker, _, length, _ = FRAME.unpack(tail)
    return bool(marker == FOOTER_MARKER or (marker != RECORD_MARKER and length == records))


def newest_seal(directory: Path) -> float:
    """When the newest segment was sealed (its footer's time; 0 when unknown): what the spool's
    clock must not go back behind after a restart."""
    numbers = list_segments(directory)
    if not numbers:
        return 0.0
    try:
        with open(directory / segment_name(numbers[-1]), "rb") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() < HEADER_SIZE + FRAME_SIZE:
                return 0.0
            handle.seek(-FRAME_SIZE, os.SEEK_END)
            footer = parse_footer_frame(handle.read(FRAME_SIZE))
    except OSError:
        return 0.0
    return 0.0 if footer is None else footer[1]
