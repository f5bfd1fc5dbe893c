"""The receiving side of the Kafka path under the real `python -m receiver run`, against
librdkafka's mock cluster (tests/kafka/cluster.py): every spooled message is produced once with
its event id as key and its receive metadata, the spool is acknowledged by Kafka's delivery
reports, and while the brokers are unreachable the spool holds everything until they return."""

from __future__ import annotations

import socket
from pathlib import Path

from receiver.event import Received, decode
from receiver.spool.records import parse_event_id
from tests.kafka.cluster import MockCluster
from tests.support import Receiver, http_get_text, wait_for

LINE = ('<134>Nov 25 18:21:08 haproxy[11604]: 127.0.0.1:{n} [25/Nov/2026:18:21:08.761] fe '
        'be/s1 0/0/1/2/3 200 10 - - ---- 1/1/0/0/0 0/0 "GET /{n} HTTP/1.1"')


def send_udp(receiver: Receiver, first: int, number: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for n in range(first, first + number):
            sock.sendto(LINE.format(n=n).encode(), ("127.0.0.1", receiver.udp_port))


def send_tcp(receiver: Receiver, first: int, number: int) -> None:
    with socket.create_connection(("127.0.0.1", receiver.tcp_port)) as sock:
        sock.sendall(b"".join(LINE.format(n=n).encode() + b"\n"
                              for n in range(first, first + number)))


def produced(receiver: Receiver) -> float:
    return receiver.metric("haproxy_receiver_kafka_records_produced_total")


def test_every_spooled_message_is_produced_once_and_acknowledged_by_kafka(
    tmp_path: Path, cluster: MockCluster
) -> None:
    receiver = Receiver(tmp_path, None, env=cluster.env()).start()
    try:
        send_udp(receiver, 0, 300)
        send_tcp(receiver, 300, 200)
        wait_for(lambda: receiver.metric("haproxy_receiver_events_shipped_total") == 500, 40,
                 "500 spooled events acknowledged by Kafka's delivery reports")
        wait_for(lambda: produced(receiver) == 500, 10, "the workers' metrics relayed")
        assert receiver.metric("haproxy_receiver_kafka_produce_queue") == 0
    finally:
        assert receiver.stop() == 0
    records = cluster.read_all("check", 500)
    assert len(records) == 500
    keys = [record.key().decode() for record in records]
    assert len(set(keys)) == 500  # one record per event, each with its own id
    identities = {parse_event_id(key)[0] for key in keys}
    assert len(identities) == 1  # the spool's identity
    bodies = set()
    for record in records:
        received = decode(record.value())
        assert isinstance(received, Received)
        assert received.source == "127.0.0.1"  # the receive metadata travels with the message
        assert received.listener.startswith(("udp", "tcp"))
        bodies.add(received.frame)
    assert bodies == {LINE.format(n=n).encode() for n in range(500)}
    assert {record.partition() for record in records} == set(range(cluster.partitions))


def test_unreachable_brokers_fill_the_spool_which_drains_when_they_return(
    tmp_path: Path, cluster: MockCluster
) -> None:
    receiver = Receiver(tmp_path, None, env=cluster.env()).start()
    ready = f"http://127.0.0.1:{receiver.metrics_port}/readyz"
    try:
        send_udp(receiver, 0, 50)
        wait_for(lambda: receiver.metric("haproxy_receiver_events_shipped_total") == 50, 40,
                 "the first events acknowledged")
        cluster.pause()
        send_udp(receiver, 50, 200)
        wait_for(lambda: receiver.metric("haproxy_receiver_events_spooled_total") == 250, 20,
                 "events spooled while Kafka is down")
        # Nothing more is acknowledged: the spool holds the 200 (readiness fails past
        # kafka.unreachable_after, 3 s here).
        wait_for(lambda: receiver.metric("haproxy_receiver_kafka_up") == 0, 30,
                 "kafka_up to fall")
        assert receiver.metric("haproxy_receiver_events_shipped_total") == 50
        try:
            http_get_text(ready)
            raise AssertionError("ready while Kafka is unreachable")
        except OSError as error:  # urllib's HTTPError for the 503
            assert "503" in str(error)
        cluster.resume()
        wait_for(lambda: receiver.metric("haproxy_receiver_events_shipped_total") == 250, 50,
                 "the spool to drain into Kafka")
        wait_for(lambda: http_get_text(ready), 30, "ready again")
    finally:
        assert receiver.stop() == 0
    records = cluster.read_all("check", 250)
    keys = {record.key() for record in records}
    assert len(keys) == 250  # each once by id (a retried record may be stored twice: same key)
    assert {decode(r.value()).frame for r in records} == {  # type: ignore[union-attr]
        LINE.format(n=n).encode() for n in range(250)}


def test_a_record_kafka_refuses_for_good_is_dead_lettered_and_the_spool_moves_on(
    tmp_path: Path, cluster: MockCluster
) -> None:
    """A record larger than the producer's message.max.bytes (here set to a brokers' smaller
    limit through kafka.options) would be refused at every retry and hold the spool: it goes to
    the dead-letter file with the reason, is counted, and the records around it are produced."""
    import base64
    import json

    env = cluster.env(options="message.max.bytes=4000")
    receiver = Receiver(tmp_path, None, env=env).start()
    big = LINE.format(n=1000).replace("GET /1000", "GET /" + "x" * 6000)
    try:
        send_udp(receiver, 0, 20)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(big.encode(), ("127.0.0.1", receiver.udp_port))
        send_udp(receiver, 20, 20)
        wait_for(lambda: receiver.metric("haproxy_receiver_events_shipped_total") == 40, 40,
                 "the 40 small events stored in Kafka")
        wait_for(lambda: receiver.metric("haproxy_receiver_events_dead_lettered_total",
                                         reason="kafka_msg_size_too_large") == 1, 20,
                 "the large one dead-lettered")
        wait_for(lambda: receiver.metric("haproxy_receiver_spool_events_pending") == 0, 20,
                 "nothing left in the spool")
        wait_for(lambda: receiver.metric("haproxy_receiver_kafka_delivery_errors_total",
                                         error="MSG_SIZE_TOO_LARGE") == 1, 10,
                 "the worker's metrics relayed")
        assert receiver.metric("haproxy_receiver_kafka_delivery_errors_total",
                               error="MSG_SIZE_TOO_LARGE") == 1  # refused once, not retried
    finally:
        assert receiver.stop() == 0
    lines = (receiver.spool_dir / "dead-letter.jsonl").read_text().splitlines()
    assert len(lines) == 1
    letter = json.loads(lines[0])
    assert letter["error_type"] == "kafka_msg_size_too_large"
    assert "message.max.bytes" in letter["reason"] or "too large" in letter["reason"].lower()
    parse_event_id(letter["_id"])
    kept = decode(base64.b64decode(letter["payload_base64"]))
    assert isinstance(kept, Received) and kept.frame == big.encode()
    records = cluster.read_all("check", 40)
    assert {decode(r.value()).frame for r in records} == {  # type: ignore[union-attr]
        LINE.format(n=n).encode() for n in range(40)}
