"""The dead-letter file holds each event once through worker crashes (issue 27, item 4). A
batch's refused events are written to the file at once, while its other events are still
retried (per-item 429), so the batch is not acknowledged yet; the worker is killed with SIGKILL
`KILLS` times meanwhile, and each successor sends the batch again and is refused again. The file must
still hold 100 lines for the 100 refused events, one per `_id`, as the metrics say. A real
receiver; the fault-injecting Elasticsearch of tests/fakes in this process."""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
from pathlib import Path

from tests.fakes.es_server import FakeElasticsearch
from tests.support import Receiver, flatten, group_members, wait_for

EVENTS = 200  # even: refused for good (a field the server rejects); odd: fine, once allowed
# Each successor writes the refusals again if it does not know they are written: 3 kills (4
# workers) would show 400 lines. (Was 5: a worker killed young waits 0.5 s, doubling, before
# it starts again, so the 4th and 5th kills cost 12 s and showed nothing the 2nd does not.)
KILLS = 3


def line(n: int) -> bytes:
    body = {"ci": "10.0.0.1", "ST": 200, "seq": n, **({"bad": "x"} if n % 2 == 0 else {})}
    return b"<134>Nov 25 18:21:18 haproxy[7]: " + json.dumps(body).encode() + b"\n"


def workers(receiver: Receiver) -> list[int]:
    assert receiver.process is not None
    return [pid for pid in group_members(receiver.process.pid) if pid != receiver.process.pid]


def sent_again(fake: FakeElasticsearch, dead_letter_file: Path, seen: int) -> bool:
    return dead_letter_file.exists() and len(fake.bulk_requests()) >= seen + 2


def gone(receiver: Receiver, pid: int) -> bool:
    return pid not in workers(receiver)


def test_dead_letters_are_written_once_through_worker_kills(tmp_path: Path) -> None:
    fake = FakeElasticsearch.start("es8", reject_fields=("haproxy.bad",))
    fake.script(["items:429"] * 100_000)  # the good events wait; the bad ones are refused
    receiver = Receiver(tmp_path, fake.url, udp=False, env={
        "HAPROXY_RECEIVER_ELASTICSEARCH__BATCH_EVENTS": str(EVENTS),
        "HAPROXY_RECEIVER_ELASTICSEARCH__BATCH_AGE": "0.5",
        "HAPROXY_RECEIVER_ELASTICSEARCH__RETRY_INITIAL": "0.05",
        "HAPROXY_RECEIVER_ELASTICSEARCH__RETRY_MAX": "0.2"})
    dead_letter_file = receiver.spool_dir / "dead-letter.jsonl"
    try:
        receiver.start()
        with socket.create_connection(("127.0.0.1", receiver.tcp_port), timeout=30) as sock:
            sock.sendall(b"".join(line(n) for n in range(EVENTS)))
        for kill in range(KILLS):
            wait_for(lambda: len(workers(receiver)) == 1, 60, f"a worker ({kill})")
            seen = len(fake.bulk_requests())
            # the refusals written, the batch still retried: not acknowledged
            wait_for(functools.partial(sent_again, fake, dead_letter_file, seen), 60,
                     f"the batch sent again ({kill})")
            (pid,) = workers(receiver)
            os.kill(pid, signal.SIGKILL)
            wait_for(functools.partial(gone, receiver, pid), 30, "the worker gone")
        fake.clear_script()  # the good events are taken now
        wait_for(lambda: receiver.metric("haproxy_receiver_events_shipped_total") == EVENTS // 2,
                 120, "the good events shipped")
        assert receiver.metric("haproxy_receiver_events_dead_lettered_total") == EVENTS // 2
        inflow, outflow = receiver.flows()
        assert (inflow, outflow) == (EVENTS, EVENTS)
        assert "exited unexpectedly" in receiver.stderr()
        assert receiver.stop() == 0
    finally:
        fake.close()
        if receiver.process is not None and receiver.process.poll() is None:
            receiver.kill()
    rows = [json.loads(text) for text in dead_letter_file.read_text().splitlines()]
    ids = [row["_id"] for row in rows]
    assert len(rows) == EVENTS // 2, f"{len(rows)} lines for {EVENTS // 2} refused events"
    assert len(set(ids)) == EVENTS // 2
    assert sorted(flatten(row["document"])["haproxy.seq"] for row in rows) == list(range(0, EVENTS, 2))
    stored = sorted(document["haproxy.seq"] for _, document in fake.documents.values())
    assert stored == list(range(1, EVENTS, 2))
