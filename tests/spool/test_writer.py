"""Appending: the `when_full` policies with counts that add up, fsync policies, the directory
lock held by another process, private files, and a real full disk (tmpfs) smaller than a
segment."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from receiver.metrics import Metrics
from receiver.spool import SpoolError, SpoolLocked, SpoolWriter, spool_stats
from receiver.spool.format import FRAME_SIZE, list_segments, segment_name
from tests.spool.helpers import KIB, counter, drain, payloads, reader_of, settings
from tests.support import REPO, small_tmpfs, wait_for

SMALL = {"segment_bytes": 64 * KIB, "max_bytes": 192 * KIB}


def _fill_until_refused(writer: SpoolWriter, start: int = 0) -> tuple[int, int]:
    """Append batches of 50 until one is not taken whole; returns (sent, accepted)."""
    sent = accepted = 0
    while True:
        taken = writer.append(payloads(start + sent, 50))
        sent += 50
        accepted += taken
        if taken < 50:
            return sent, accepted


def test_drop_newest_refuses_and_counts_then_accepts_again(tmp_path: Path) -> None:
    metrics = Metrics()
    writer = SpoolWriter(settings(tmp_path, when_full="drop_newest", **SMALL), metrics)
    sent, accepted = _fill_until_refused(writer)
    more = writer.append(payloads(sent, 50))
    assert more == 0
    sent += 50
    dropped = counter(metrics, "events_dropped", reason="spool_full")
    assert accepted + dropped == sent
    assert counter(metrics, "events_spooled") == accepted
    stats = spool_stats(tmp_path)
    assert stats.bytes <= 192 * KIB and stats.events_pending == accepted
    assert not writer.has_room()
    reader = reader_of(writer)
    assert drain(reader) == list(range(accepted))
    assert writer.has_room()
    assert writer.append(payloads(10_000, 50)) == 50
    writer.close()


def test_drop_oldest_deletes_old_segments_and_counts_what_they_held(tmp_path: Path) -> None:
    metrics = Metrics()
    writer = SpoolWriter(settings(tmp_path, when_full="drop_oldest", **SMALL), metrics)
    reader = reader_of(writer)
    shipped = drain(reader)[:0]
    total = 2000
    for start in range(0, total, 50):
        assert writer.append(payloads(start, 50)) == 50  # never refuses
        if start == 500:
            shipped = drain(reader)  # some shipped before the spool overflows
        assert spool_stats(tmp_path).bytes <= 192 * KIB
    dropped = counter(metrics, "events_dropped", reason="spool_full_oldest")
    assert dropped > 0
    rest = drain(reader)
    delivered = shipped + rest
    assert len(delivered) + dropped == total  # received = shipped + dropped (+ 0 pending)
    assert delivered == sorted(delivered) and len(set(delivered)) == len(delivered)
    assert delivered[-1] == total - 1  # the newest survive
    writer.close()


def test_block_appends_what_fits_and_waits_for_room(tmp_path: Path) -> None:
    metrics = Metrics()
    writer = SpoolWriter(settings(tmp_path, when_full="block", **SMALL), metrics)
    _, accepted = _fill_until_refused(writer)
    assert counter(metrics, "events_dropped", reason="spool_full") == 0
    assert not writer.has_room()
    assert not writer.wait_for_room(0.05)
    delivered: list[int] = []

    def ship() -> None:
        reader = reader_of(writer)
        while len(delivered) < 3000:
            if reader.wait(0.05):
                delivered.extend(drain(reader))

    shipper = threading.Thread(target=ship, daemon=True)
    shipper.start()
    pending = payloads(accepted, 3000 - accepted)
    while pending:  # what the listener does: keep the rest, wait, try again
        assert writer.wait_for_room(10)
        pending = pending[writer.append(pending) :]
    shipper.join(30)
    assert delivered == list(range(3000))
    assert counter(metrics, "events_spooled") == 3000
    writer.close()


def test_a_record_larger_than_half_a_segment_is_refused_as_a_bug(tmp_path: Path) -> None:
    # Configuration keeps records below this (spool.max_record_bytes, tests/test_config.py):
    # a larger one can only be a bug, and must not be written torn.
    writer = SpoolWriter(settings(tmp_path), Metrics())
    with pytest.raises(ValueError, match="half a segment"):
        writer.append([b"x" * 40 * KIB])
    assert writer.append(payloads(0, 1)) == 1
    writer.close()


def test_spool_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        directory = tmp_path / "spool"
        writer = SpoolWriter(settings(directory), Metrics())
        writer.append(payloads(0, 10))
        reader = reader_of(writer)
        drain(reader)
        (directory / "quarantine").mkdir()
        writer.close()
        os.chmod(directory / "identity", 0o644)  # as an older version left it
        SpoolWriter(settings(directory), Metrics()).close()
    finally:
        os.umask(old)
    assert os.stat(directory).st_mode & 0o777 == 0o700
    modes = {p.name: p.stat().st_mode & 0o777 for p in directory.iterdir()}
    assert modes.pop("quarantine") == 0o700
    assert modes and set(modes.values()) == {0o600}, modes


@pytest.mark.parametrize("policy", ["always", "interval", "never"])
def test_fsync_policies(tmp_path: Path, policy: str) -> None:
    metrics = Metrics()
    writer = SpoolWriter(settings(tmp_path, fsync=policy, fsync_interval=0.02), metrics)
    for start in range(0, 100, 10):
        writer.append(payloads(start, 10))

    def fsyncs() -> float:
        return counter(metrics, "spool_fsyncs")

    if policy == "always":
        assert fsyncs() >= 10
    elif policy == "interval":
        wait_for(lambda: fsyncs() >= 1, 5, "a background fsync")
        assert fsyncs() < 10  # grouped, not one per batch
    writer.close()
    if policy == "never":
        assert fsyncs() == 0
    else:
        assert metrics.registry.get_sample_value("haproxy_receiver_spool_fsync_seconds_count")


_HOLDER = textwrap.dedent(
    """
    import sys
    from receiver.config import SpoolSettings
    from receiver.metrics import Metrics
    from receiver.spool import SpoolWriter
    writer = SpoolWriter(SpoolSettings(dir=sys.argv[1]), Metrics())
    print("locked", flush=True)
    sys.stdin.read()
    writer.close()
    """
)


def test_second_instance_on_the_same_directory_gets_a_clear_error(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)], cwd=REPO, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(SpoolLocked) as raised:
        SpoolWriter(settings(tmp_path), Metrics())
    message = str(raised.value)
    assert str(tmp_path) in message and f"pid {holder.pid}" in message
    assert isinstance(raised.value, SpoolError)
    holder.stdin.close()
    assert holder.wait(10) == 0
    SpoolWriter(settings(tmp_path), Metrics()).close()  # free again once it exited


def test_closed_writer_refuses_appends(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path), Metrics())
    writer.close()
    with pytest.raises(SpoolError):
        writer.append(payloads(0, 1))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB filesystem (tmpfs), where this machine allows mounting one."""
    with small_tmpfs(tmp_path / "disk", 1024 * KIB) as point:
        yield point


@pytest.mark.parametrize("segment", [64 * KIB, 64 * 1024**2])
@pytest.mark.parametrize("policy", ["block", "drop_newest"])
def test_full_disk_behaves_like_a_full_spool_and_recovers(
    small_disk: Path, policy: str, segment: int
) -> None:
    # With segments larger than the disk (64 MiB on 1 MiB) the segment being written is where
    # the disk fills up: it must be sealed there, shipped and deleted, or nothing ever frees.
    metrics = Metrics()
    spool = small_disk / "spool"
    writer = SpoolWriter(
        settings(spool, when_full=policy, segment_bytes=segment, max_bytes=256 * 1024**2),
        metrics)
    sent, accepted = _fill_until_refused(writer)
    assert 1000 < accepted < 2500  # about 1 MiB of 430-byte records
    assert not writer.has_room()
    dropped = counter(metrics, "events_dropped", reason="disk_full")
    assert dropped == (sent - accepted if policy == "drop_newest" else 0)
    reader = reader_of(writer)
    assert drain(reader) == list(range(accepted))  # nothing torn, nothing lost
    assert writer.ledger.pending() == 0
    assert writer.wait_for_room(5)  # space came back when acknowledged segments went
    for round_ in range(3):  # and again: the disk fills and frees, never wedges
        start = sent + round_ * 10_000
        _, more = _fill_until_refused(writer, start)
        assert more > 1000
        assert drain(reader) == list(range(start, start + more))
        assert writer.wait_for_room(5)
    writer.close()


def test_full_disk_with_drop_oldest_keeps_the_newest(small_disk: Path) -> None:
    metrics = Metrics()
    spool = small_disk / "spool"
    writer = SpoolWriter(settings(spool, when_full="drop_oldest", max_bytes=64 * 1024**2), metrics)
    total = 6000  # about 2.5 MiB into a 1 MiB filesystem
    for start in range(0, total, 50):
        assert writer.append(payloads(start, 50)) == 50
    dropped = counter(metrics, "events_dropped", reason="spool_full_oldest")
    delivered = drain(reader_of(writer))
    assert len(delivered) + dropped == total
    assert delivered == list(range(total - len(delivered), total))  # the newest, no gap
    writer.close()


def test_start_on_a_full_disk_keeps_the_segment_a_crash_left_without_footer(
    small_disk: Path,
) -> None:
    # The active segment of a writer killed on a full disk has no footer, and there is no room
    # to add one at the next start: the segment must still be taken, ending where its records end.
    spool = small_disk / "spool"
    writer = SpoolWriter(settings(spool), Metrics())
    page = os.statvfs(small_disk).f_bsize
    sent = 0
    # Until the records end where a footer no longer fits in the file's last page (a footer
    # that fits in it needs no new block, and would be written on a full disk too).
    while sent < 600 or -os.path.getsize(_newest(spool)) % page >= FRAME_SIZE:
        assert writer.append(payloads(sent, 1)) == 1
        sent += 1
        assert sent < 3000
    writer.close()
    last = _newest(spool)
    last.write_bytes(last.read_bytes()[:-FRAME_SIZE])  # as the kill left it: no footer
    filler = small_disk / "filler"
    with open(filler, "wb", buffering=0) as handle, pytest.raises(OSError):
        while True:
            handle.write(b"\0" * 4096)
    writer = SpoolWriter(settings(spool), Metrics())
    assert writer.ledger.pending() == sent
    filler.unlink()
    assert drain(reader_of(writer)) == list(range(sent))
    writer.close()


def _newest(spool: Path) -> Path:
    return spool / segment_name(list_segments(spool)[-1])
