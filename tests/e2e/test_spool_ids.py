"""No event id is reused when the spool's ledger is lost (issue 27, item 1): ship 500 events,
stop, delete `spool/ledger` (then, another time, zero it), start, send 500 more: every event
is indexed. Before, segment numbers started again under the same identity, the new events got
ids already in the index, Elasticsearch answered 409 and they were counted shipped: 0 of the
new events indexed, metrics all green."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from receiver.spool.ledger import LEDGER_FILE
from tests.support import Receiver, count, wait_for

# Every line of a round sits where a line of the round before sat (the same segment and offset,
# so the same id if numbering started again): 500 show a reuse as surely as 2,000 did.
ROUND = 500
ENV = {"HAPROXY_RECEIVER_ELASTICSEARCH__BATCH_AGE": "0.2"}


def line(seq: int) -> bytes:
    """Every line as long as the others, so that each round's records sit at the offsets of the
    round before (the worst case: every reused id then names an indexed event)."""
    pad = b"x" * (8 - len(str(seq)))
    return (b'<134>Feb 26 05:17:05 idhost haproxy[22]: {"ci":"10.0.0.1","t":"26/Feb/2020:05:17:05.438",'
            b'"ST":200,"r":"GET /item HTTP/1.1","seq":%d,"pad":"%s"}\n' % (seq, pad))


def send_round(receiver: Receiver, first: int) -> None:
    with socket.create_connection(("127.0.0.1", receiver.tcp_port)) as sock:
        sock.sendall(b"".join(line(seq) for seq in range(first, first + ROUND)))


def balance(receiver: Receiver) -> tuple[float, float]:
    """Both sides of the accounting identity (README, Metrics and health)."""
    m = receiver.metric
    found = m("haproxy_receiver_messages_received_total") + m("haproxy_receiver_events_recovered_total")
    gone = (m("haproxy_receiver_events_shipped_total") + m("haproxy_receiver_events_dead_lettered_total")
            + m("haproxy_receiver_events_dropped_total") + m("haproxy_receiver_spool_events_pending")
            + m("haproxy_receiver_spool_corrupt_records_total"))
    return found, gone


def ship_a_round(receiver: Receiver, first: int, es_url: str) -> None:
    receiver.start()
    send_round(receiver, first)
    wait_for(lambda: receiver.metric("haproxy_receiver_messages_received_total") == ROUND, 60,
             "the round received")
    wait_for(lambda: receiver.metric("haproxy_receiver_spool_events_pending") == 0, 90,
             "the round shipped")
    wait_for(lambda: balance(receiver)[0] == balance(receiver)[1], 10, "the accounting to close")
    assert receiver.metric("haproxy_receiver_events_dropped_total") == 0
    assert receiver.metric("haproxy_receiver_spool_corrupt_records_total") == 0
    wait_for(lambda: count(es_url) == first + ROUND, 30,
             f"{first + ROUND} events indexed (have {count(es_url)})")
    assert receiver.stop() == 0


def test_events_after_a_lost_or_zeroed_ledger_are_all_indexed(tmp_path: Path, es_url: str) -> None:
    receiver = Receiver(tmp_path, es_url, udp=False, env=ENV)
    ledger = receiver.spool_dir / LEDGER_FILE
    damages: list[Callable[[], object]] = [
        ledger.unlink,
        lambda: ledger.write_bytes(bytes(1000)),
        lambda: ledger.write_bytes(bytes(ledger.stat().st_size + 37)),
    ]
    try:
        ship_a_round(receiver, 0, es_url)
        for round_, damage in enumerate(damages, start=1):
            damage()
            ship_a_round(receiver, round_ * ROUND, es_url)  # was: 0 of 2,000 indexed
    finally:
        if receiver.process is not None and receiver.process.poll() is None:
            receiver.kill()
    assert count(es_url) == (len(damages) + 1) * ROUND
