"""An Elasticsearch outage longer than the wedge watch (issue 27, item 6): while both in-flight
requests retry with back-off, the reading loop waits for a slot and turns no more; that is
waiting, not being stuck, so the worker is not killed (it was, every ~60 s, with an ERROR and
a 503 readiness). A real receiver, Elasticsearch behind a proxy that goes down once the worker
knows where documents go (down from the start, the worker would sit in its destination probe,
which turns its loop at every retry: not the waiting this test is about) and stays down for
`STALL` + `MARGIN` s; every event is indexed exactly once afterwards, and the counters account
for all of them."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.support import Receiver, TcpProxy, group_members, search_all, wait_for

EVENTS = 100
STALL = 25  # service.worker_stall_timeout, its least
# How long the outage outlasts the watch. The service checks its workers every 0.25 s from
# reports that arrive every second: a wrong kill would come at most ~1.5 s after STALL.
MARGIN = 6
LINE = b'<134>Nov 25 18:21:18 haproxy[7]: {"ci":"10.0.0.1","ST":200,"seq":%d}\n'


def workers(receiver: Receiver) -> list[int]:
    assert receiver.process is not None
    return [pid for pid in group_members(receiver.process.pid) if pid != receiver.process.pid]


def test_a_long_outage_does_not_kill_healthy_workers(tmp_path: Path, es_url: str) -> None:
    proxy = TcpProxy(es_url).start()  # up until the worker chose its destination
    receiver = Receiver(tmp_path, proxy.url, udp=False, env={
        "HAPROXY_RECEIVER_ELASTICSEARCH__BATCH_EVENTS": "10",
        "HAPROXY_RECEIVER_ELASTICSEARCH__BATCH_AGE": "0.1",
        "HAPROXY_RECEIVER_ELASTICSEARCH__RETRY_INITIAL": "0.5",
        "HAPROXY_RECEIVER_ELASTICSEARCH__RETRY_MAX": "2",
        "HAPROXY_RECEIVER_SERVICE__WORKER_STALL_TIMEOUT": str(STALL)})
    try:
        receiver.start()
        wait_for(lambda: len(workers(receiver)) == 1, 30, "the worker")
        worker = workers(receiver)
        wait_for(lambda: "documents go to" in receiver.stderr(), 60, "the destination chosen")
        proxy.stop()
        with socket.create_connection(("127.0.0.1", receiver.tcp_port), timeout=30) as sock:
            sock.sendall(b"".join(LINE % n for n in range(EVENTS)))
        # both slots retrying: the reading loop waits for one
        wait_for(lambda: receiver.metric("haproxy_receiver_bulk_requests_total",
                                         outcome="connection_error") >= 4, 60, "both retrying")
        assert "bulk request of 10 events failed" in receiver.stderr()  # not the probe's
        # The scenario, not a synchronisation: the outage outlasts the wedge watch.
        time.sleep(STALL + MARGIN)
        assert "made no progress" not in receiver.stderr()
        assert workers(receiver) == worker, "the worker was killed and started again"
        proxy.start()
        wait_for(lambda: receiver.metric("haproxy_receiver_events_shipped_total") == EVENTS, 90,
                 "every event shipped")
        hits = search_all(es_url)
        assert sorted(hit["_source"]["haproxy.seq"] for hit in hits) == list(range(EVENTS))
        inflow, outflow = receiver.flows()
        assert (inflow, outflow) == (EVENTS, EVENTS)
        assert "made no progress" not in receiver.stderr()
        assert receiver.stop() == 0
    finally:
        proxy.close()
        if receiver.process is not None and receiver.process.poll() is None:
            receiver.kill()
