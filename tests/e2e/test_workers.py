"""Two workers share the spool (`service.workers = 2`) of a real receiver while they are killed
with SIGKILL again and again and Elasticsearch comes and goes: every accepted event is indexed
exactly once, and the counters account for every event exactly at every quiet moment, through
restarts of the workers and of the receiving process:

    messages_received_total + events_recovered_total
        == events_shipped_total + events_dead_lettered_total + events_dropped_total
           + spool_events_pending + spool_corrupt_records_total
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

from tests.e2e.test_crash_loop import Flapper, NumberedSender
from tests.support import Receiver, TcpProxy, group_members, search_sorted, wait_for

SEED = int(os.environ.get("WORKERS_SEED", "77"))
# Phase 1: a fixed number of kills (was: as many as fitted while 16,000 events were sent, ~12,
# more on a slow machine). Every worker killed young waits twice as long as before to start again
# (0.5 s doubling to 30 s), so a count that grows with the machine's slowness made the wait for
# both workers, and the shipping of a backlog that slow machine also indexes slowly, outgrow
# the wait in `quiet`. The kill moments stay random: workers starting, asking where documents
# go, and shipping. (The test's other flake was the receiver's: two workers deciding at once
# where documents go, receiver/ship/destination.py; one then dead-lettered what it shipped.)
KILLS = 8
PHASE_1_EVENTS = 6000  # at 1000/s: about as long as the kills take
PHASE_2_EVENTS = 2000  # the backlog the restarted process finds
ENV = {
    "HAPROXY_RECEIVER_SERVICE__WORKERS": "2",
    "HAPROXY_RECEIVER_ELASTICSEARCH__BATCH_EVENTS": "200",
    "HAPROXY_RECEIVER_ELASTICSEARCH__BATCH_AGE": "0.1",
    "HAPROXY_RECEIVER_ELASTICSEARCH__RETRY_INITIAL": "0.05",
    "HAPROXY_RECEIVER_ELASTICSEARCH__RETRY_MAX": "0.3",
    # The least segment: many segments (~30 for phase 1), both workers have work.
    "HAPROXY_RECEIVER_SPOOL__SEGMENT_BYTES": "64KiB",
    "HAPROXY_RECEIVER_SPOOL__MAX_RECORD_BYTES": "32KiB",
    "HAPROXY_RECEIVER_LISTEN__MAX_MESSAGE_BYTES": "16KiB",
    "HAPROXY_RECEIVER_SERVICE__SHUTDOWN_GRACE": "2",
}


def workers(receiver: Receiver) -> list[int]:
    assert receiver.process is not None
    return [pid for pid in group_members(receiver.process.pid) if pid != receiver.process.pid]


def quiet(receiver: Receiver, what: str) -> None:
    """Wait until nothing is pending and both workers run, then check the identity."""
    seen: list[tuple[float, int]] = []  # (pending, workers) at the last look, for the failure

    def settled() -> bool:
        seen[:] = [(receiver.metric("haproxy_receiver_spool_events_pending"),
                    len(workers(receiver)))]
        return seen[0] == (0, 2)

    try:
        wait_for(settled, 90, f"{what}: everything shipped")
    except AssertionError as error:
        raise AssertionError(f"{error}; (pending, workers) = {seen}\n"
                             f"{receiver.stderr()[-4000:]}") from None
    inflow, outflow = receiver.flows()
    assert inflow == outflow, f"{what}: {inflow} came in, {outflow} accounted for"
    # nothing here is refused by the server: a dead letter is a worker writing to a wrong place
    assert receiver.metric("haproxy_receiver_events_dead_lettered_total") == 0, (
        f"{what}: events dead-lettered\n{receiver.stderr()[-4000:]}")


def test_two_workers_through_kill_9_loops_and_outages(tmp_path: Path, es_url: str) -> None:
    rng = random.Random(SEED)
    proxy = TcpProxy(es_url).start()
    receiver = Receiver(tmp_path, proxy.url, env=ENV)
    sent = 0
    try:
        receiver.start()
        wait_for(lambda: len(workers(receiver)) == 2, 30, "two workers")
        # Phase 1: events stream in while workers are killed and Elasticsearch flaps.
        sender = NumberedSender(receiver.tcp_port, 1, 0, rate=1000, limit=PHASE_1_EVENTS)
        flapper = Flapper(proxy, rng)
        kills = 0
        while kills < KILLS:
            time.sleep(rng.uniform(0.3, 1.0))  # a random kill moment, not a synchronisation
            alive = workers(receiver)
            if alive:
                os.kill(rng.choice(alive), signal.SIGKILL)
                kills += 1
        wait_for(lambda: sender.done, 60, "the first sender")
        sender.close()
        flapper.close()
        sent = sender.attempted
        assert sender.error is None and sent == PHASE_1_EVENTS, (sender.error, sent)
        quiet(receiver, "after worker kills and outages")
        assert receiver.metric("haproxy_receiver_messages_received_total") == sent
        assert "exited unexpectedly" in receiver.stderr()

        # Phase 2: the receiving process goes down with a backlog (Elasticsearch down), comes
        # back: what it finds pending is counted recovered, and the identity holds again.
        proxy.stop()
        more = NumberedSender(receiver.tcp_port, 2, sent, limit=PHASE_2_EVENTS)
        wait_for(lambda: more.done, 30, "the second sender")
        more.close()
        wait_for(lambda: receiver.metric("haproxy_receiver_events_spooled_total")
                 >= receiver.metric("haproxy_receiver_messages_received_total") > sent, 30,
                 "the backlog spooled")
        assert receiver.stop() == 0
        sent += PHASE_2_EVENTS
        receiver.start()
        assert receiver.metric("haproxy_receiver_events_recovered_total") > 0
        proxy.start()
        quiet(receiver, "after a restart of the receiving process")
        assert receiver.stop() == 0
    finally:
        proxy.close()
        if receiver.process is not None and receiver.process.poll() is None:
            receiver.kill()
    rows = search_sorted(es_url, "haproxy.seq", ["haproxy.seq"])
    numbers = [int(row["haproxy.seq"]) for row in rows]
    assert len(numbers) == len(set(numbers)), "an event was indexed twice"
    assert numbers == list(range(sent)), "an accepted event is missing"
