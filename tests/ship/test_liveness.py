"""The wedge watch's view of a shipper (issue 27, item 6): a back-off waits on purpose and
beats; a request that hangs beats no more, so a stuck worker is still told from a waiting one.
A real Shipper and real sockets: a server that accepts and never answers."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from receiver.ship.liveness import Liveness
from tests.ship.harness import es_settings, running_shipper
from tests.ship.memory_spool import MemorySpool, document
from tests.support import wait_for


def test_a_back_off_beats_until_it_ends_or_is_abandoned() -> None:
    liveness = Liveness()
    abandon = threading.Event()
    beats: list[float] = []
    watcher_stop = threading.Event()

    def watch() -> None:
        while not watcher_stop.wait(0.05):
            beats.append(liveness.last_beat)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert liveness.wait(abandon, 2.5) is False  # ran out: not abandoned
    watcher_stop.set()
    watcher.join(5)
    assert len(set(beats)) >= 3  # at the start, after 1 s, after 2 s (and at the end)
    threading.Timer(0.2, abandon.set).start()
    assert liveness.wait(abandon, 60) is True  # abandoned: ends at once


def test_a_hanging_request_is_stillness_and_the_slot_wait_does_not_hide_it(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)  # accepts (the kernel does) and never answers
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        settings = es_settings([url], max_in_flight=1, batch_events=10, request_timeout=60.0)
        spool = MemorySpool([document(n) for n in range(30)], batch_records=10)
        with running_shipper(settings, spool, tmp_path, drain_seconds=0.5) as run:
            # the reading loop waits for the one slot, whose request hangs: no sign of life
            wait_for(lambda: run.shipper.stillness() > 3.0, 30, "stillness to grow")
            assert spool.acknowledged_records() == 0
            wait_for(lambda: run.shipper.stillness() > 5.0, 30, "stillness to keep growing")
