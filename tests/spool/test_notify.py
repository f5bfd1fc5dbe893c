"""Wake-ups across processes: the inotify watch a spool reader sleeps on reports writes to
segment files made by another process (the writer lives in the receiving process, readers in
workers), and nothing else in the directory."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from receiver.metrics import Metrics
from receiver.spool import SpoolWriter
from receiver.spool.format import SEGMENT_SUFFIX
from receiver.spool.notify import SegmentWatch
from tests.spool.helpers import drain, payloads, reader_of, settings

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")


def _append_in_another_process(path: Path, data: bytes) -> None:
    subprocess.run(
        [sys.executable, "-c", "import sys; open(sys.argv[1], 'ab').write(sys.argv[2].encode())",
         str(path), data.decode()],
        check=True, timeout=60,
    )


def _watch(directory: Path) -> SegmentWatch:
    watch = SegmentWatch.open(directory, SEGMENT_SUFFIX)
    assert watch is not None, "inotify is available on Linux"
    return watch


def test_a_segment_write_by_another_process_is_reported(tmp_path: Path) -> None:
    segment = tmp_path / f"000000000001{SEGMENT_SUFFIX}"
    segment.write_bytes(b"header")
    watch = _watch(tmp_path)
    assert not watch.wait(0.05)
    _append_in_another_process(segment, b"record")
    assert watch.wait(30)
    assert not watch.wait(0.05), "one write is reported once"
    watch.close()


def test_a_new_segment_is_reported(tmp_path: Path) -> None:
    watch = _watch(tmp_path)
    _append_in_another_process(tmp_path / f"000000000002{SEGMENT_SUFFIX}", b"header")
    assert watch.wait(30)
    watch.close()


def test_writes_to_other_files_do_not_wake_the_reader(tmp_path: Path) -> None:
    watch = _watch(tmp_path)
    _append_in_another_process(tmp_path / "ledger", b"x" * 64)
    _append_in_another_process(tmp_path / "identity", b"x" * 16)
    assert not watch.wait(0.05)
    watch.close()


def test_close_waits_for_a_wait_in_progress_and_can_be_repeated(tmp_path: Path) -> None:
    watch = _watch(tmp_path)
    waiting = threading.Thread(target=watch.wait, args=(0.2,))
    waiting.start()
    watch.close()  # waits for the poll in progress, then frees the descriptor
    waiting.join(30)
    assert not waiting.is_alive()
    watch.close()
    assert watch.wait(30), "a closed watch answers at once"


def test_reader_sleeps_on_the_watch_and_wakes_for_writes(tmp_path: Path) -> None:
    writer = SpoolWriter(settings(tmp_path), Metrics())
    before = _inotify_instances()
    reader = reader_of(writer)
    assert reader.read(10, 1 << 20) is None
    assert not reader.wait(0.1)
    for n in range(3):
        appending = threading.Thread(target=writer.append, args=(payloads(n, 1),))
        appending.start()
        assert reader.wait(30)
        appending.join()
        assert drain(reader) == [n]
    assert _inotify_instances() == before + 1, "the reader sleeps on one watch"
    reader.close()
    assert _inotify_instances() == before, "closing the reader frees its watch"
    writer.close()


def _inotify_instances() -> int:
    fds = Path("/proc/self/fd")
    links = []
    for fd in fds.iterdir():
        try:
            links.append(os.readlink(fd))
        except OSError:  # the descriptor listdir itself used is gone
            continue
    return links.count("anon_inode:inotify")
