"""The whole Kafka path: receivers → librdkafka's mock cluster → `haproxy-receiver consume`
members → the test Elasticsearch (osmem). Members are killed with -9, join and leave while
events flow: every event is indexed exactly once, under the id its receiver gave it."""

from __future__ import annotations

import socket
from pathlib import Path

from osmem_server import OsmemServer

from receiver.spool.records import parse_event_id
from tests.kafka.cluster import Member, MockCluster
from tests.support import Receiver, TcpProxy, count, search_all, wait_for

LINE = ('<134>Nov 25 18:21:08 haproxy[11604]: 127.0.0.1:{n} [25/Nov/2026:18:21:08.761] fe '
        'be/s1 0/0/1/2/3 200 10 - - ---- 1/1/0/0/0 0/0 "GET /e{n} HTTP/1.1"')


def send(receiver: Receiver, first: int, number: int) -> None:
    """Half over UDP, half over TCP."""
    half = number // 2
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for n in range(first, first + half):
            sock.sendto(LINE.format(n=n).encode(), ("127.0.0.1", receiver.udp_port))
    with socket.create_connection(("127.0.0.1", receiver.tcp_port)) as stream:
        stream.sendall(b"".join(LINE.format(n=n).encode() + b"\n"
                                for n in range(first + half, first + number)))


def spooled(receiver: Receiver, total: int) -> None:
    wait_for(lambda: receiver.metric("haproxy_receiver_events_spooled_total") == total, 30,
             f"{total} events spooled")


def indexed_once(es_url: str, expected: set[str]) -> None:
    wait_for(lambda: count(es_url) >= len(expected), 50, f"{len(expected)} documents indexed")
    hits = search_all(es_url)
    paths = [hit["_source"]["url.path"] for hit in hits]
    assert len(paths) == len(set(paths))  # no event twice (a second copy would have its own id)
    assert set(paths) == expected  # none lost
    for hit in hits:
        parse_event_id(hit["_id"])  # the receiver's event id, never a Kafka offset


def test_every_event_is_indexed_once_through_kills_joins_and_leaves(
    tmp_path: Path, es_url: str, cluster: MockCluster
) -> None:
    receivers = [Receiver(tmp_path / f"r{n}", None, env=cluster.env()).start() for n in (1, 2)]
    members = [Member(tmp_path / f"m{n}", es_url, cluster.env()).launch() for n in (1, 2)]
    for member in members:
        member.started()
    started = list(members)
    try:
        sent = [0, 0]
        for step in range(4):
            for i, receiver in enumerate(receivers):
                send(receiver, 10000 * i + sent[i], 300)
                sent[i] += 300
                spooled(receiver, sent[i])
            if step == 0:
                wait_for(lambda: count(es_url) > 0, 30, "documents flowing")
                members[0].kill()  # kill -9 mid-stream: its partitions go to the other
            elif step == 1:
                members[0] = Member(tmp_path / "m3", es_url, cluster.env()).start()  # a join
                started.append(members[0])
            elif step == 2:
                assert members[1].stop() == 0  # a graceful leave: it commits, the group goes on
                members.pop(1)
        expected = {f"/e{10000 * i + n}" for i in (0, 1) for n in range(sent[i])}
        for receiver in receivers:
            wait_for(lambda r=receiver: r.metric("haproxy_receiver_events_shipped_total")  # type: ignore[misc]
                     == 1200, 40, "every spooled event stored in Kafka")
        indexed_once(es_url, expected)
        # The counters account for every event: what the receivers produced, the members
        # consumed (some more than once: read again after a kill), and shipped or dead-lettered.
        live = [m for m in members if m.process is not None and m.process.poll() is None]
        assert sum(m.metric("haproxy_receiver_events_dead_lettered_total") for m in live) == 0
        assert sum(m.metric("haproxy_receiver_events_shipped_total") for m in live) > 0
        wait_for(lambda: sum(m.metric("haproxy_receiver_kafka_consumer_lag") for m in live) == 0,
                 20, "no lag left: produced = consumed")
        for receiver in receivers:
            assert receiver.metric("haproxy_receiver_events_dropped_total") == 0
    finally:
        for member in started:
            if member.process is not None and member.process.poll() is None:
                member.kill()
        for receiver in receivers:
            receiver.stop()


def test_an_elasticsearch_outage_and_a_killed_receiver_lose_and_double_nothing(
    tmp_path: Path, es_url: str, cluster: MockCluster
) -> None:
    proxy = TcpProxy(es_url).start()
    spool = tmp_path / "spool"
    receiver = Receiver(tmp_path / "r", None, env=cluster.env(), spool_dir=spool).start()
    # Retries at most 2 s apart: what is tested is exactly once through the outage, not the
    # back-off; at the default 30 s, a member's back-off, a rebalance waiting for it and a new
    # member's own back-off could outlast the deadline on a busy machine.
    env = {**cluster.env(), "HAPROXY_RECEIVER_ELASTICSEARCH__RETRY_MAX": "2"}
    members = [Member(tmp_path / f"m{n}", proxy.url, env).start() for n in (1, 2)]
    started = list(members)
    try:
        send(receiver, 0, 300)
        wait_for(lambda: count(es_url) > 0, 40, "documents flowing")
        proxy.stop()  # Elasticsearch unreachable: the members retry, commit nothing new
        send(receiver, 300, 600)
        spooled(receiver, 900)
        receiver.kill()  # kill -9: what Kafka had not confirmed is produced again at the start
        receiver = Receiver(tmp_path / "r", None, env=cluster.env(), spool_dir=spool).start()
        wait_for(lambda: all(m.metric("haproxy_receiver_output_up") == 0 for m in members), 30,
                 "the members to see Elasticsearch down")
        members[0].kill()  # with batches in flight and uncommitted
        members[0] = Member(tmp_path / "m3", proxy.url, env).start()
        started.append(members[0])
        send(receiver, 900, 200)
        proxy.start()
        wait_for(lambda: receiver.metric("haproxy_receiver_spool_events_pending") == 0, 40,
                 "the restarted receiver's spool to drain into Kafka")
        indexed_once(es_url, {f"/e{n}" for n in range(1100)})
        wait_for(lambda: sum(m.metric("haproxy_receiver_kafka_consumer_lag")
                             for m in members) == 0, 20, "no lag left")
    finally:
        for member in started:
            if member.process is not None and member.process.poll() is None:
                member.kill()
        receiver.stop()
        proxy.close()


def test_a_member_reloads_its_configuration_on_sighup_and_goes_on_shipping(
    tmp_path: Path, es_url: str, cluster: MockCluster
) -> None:
    import signal

    config = tmp_path / "consume.toml"
    config.write_text('[elasticsearch]\nbatch_events = 100\n')
    receiver = Receiver(tmp_path / "r", None, env=cluster.env()).start()
    member = Member(tmp_path / "m", es_url, {**cluster.env(),
                                              "HAPROXY_RECEIVER_CONFIG": str(config)}).start()
    try:
        send(receiver, 0, 200)
        wait_for(lambda: count(es_url) == 200, 40, "the first 200 documents")
        config.write_text('[elasticsearch]\nbatch_events = 50\n')
        assert member.process is not None
        member.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload: done" in member.stderr(), 30, "the reload")
        send(receiver, 200, 200)
        indexed_once(es_url, {f"/e{n}" for n in range(400)})
        config.write_text('[elasticsearch]\nbatch_events = "many"\n')  # refused: the last stays
        member.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "the new configuration is refused" in member.stderr(), 30, "a refusal")
        assert member.process.poll() is None
    finally:
        member.kill()
        receiver.stop()


def test_consume_without_brokers_says_what_is_missing() -> None:
    from tests.support import receiver_command

    done = receiver_command("consume", "--metrics", "")
    assert done.returncode == 2
    assert "kafka.bootstrap_servers is empty" in done.stderr


def test_a_member_waiting_out_a_long_elasticsearch_outage_keeps_its_partitions(
    tmp_path: Path, es_url: str, cluster: MockCluster
) -> None:
    """The shipper stops reading while its requests wait (one in flight here); an outage longer
    than max.poll.interval.ms (3 s here) must not drop the member from the group: no partition
    revoked or assigned again, nothing re-read, every event indexed once afterwards."""
    import time

    proxy = TcpProxy(es_url).start()
    receiver = Receiver(tmp_path / "r", None, env=cluster.env()).start()
    env = {**cluster.env(), "HAPROXY_RECEIVER_ELASTICSEARCH__MAX_IN_FLIGHT": "1",
           "HAPROXY_RECEIVER_ELASTICSEARCH__BATCH_EVENTS": "20",
           "HAPROXY_RECEIVER_ELASTICSEARCH__RETRY_MAX": "1"}
    member = Member(tmp_path / "m", proxy.url, env, options="max.poll.interval.ms=3000").start()
    try:
        send(receiver, 0, 100)
        indexed_once(es_url, {f"/e{n}" for n in range(100)})
        assigned = member.metric("haproxy_receiver_kafka_rebalances_total", change="assigned")
        assert assigned == cluster.partitions  # the only member: every partition
        proxy.stop()
        send(receiver, 100, 400)
        wait_for(lambda: member.metric("haproxy_receiver_output_up") == 0, 30,
                 "the member to see Elasticsearch down")
        wait_for(lambda: "partitions paused" in member.stderr(), 30,
                 "the shipper to stop reading, its partitions paused")
        outage_end = time.monotonic() + 3 * 3.0  # three times max.poll.interval.ms
        wait_for(lambda: time.monotonic() > outage_end, 30, "the outage to outlast the interval")
        proxy.start()
        indexed_once(es_url, {f"/e{n}" for n in range(500)})
        assert member.metric("haproxy_receiver_kafka_rebalances_total",
                             change="assigned") == assigned  # never rejoined
        assert member.metric("haproxy_receiver_kafka_rebalances_total", change="revoked") == 0
        assert "maximum poll interval" not in member.stderr().lower()
        assert "partitions resumed" in member.stderr()
        wait_for(lambda: member.metric("haproxy_receiver_kafka_consumer_lag") == 0, 20,
                 "no lag left")
    finally:
        member.kill()
        receiver.stop()
        proxy.close()


def test_a_second_consumer_group_reads_the_same_topic_independently(
    tmp_path: Path, es_url: str, cluster: MockCluster, search_server: OsmemServer
) -> None:
    """Fan-out: group `haproxy-receiver` (two members) ships to one cluster, group `archive`
    (one member, started after the first events were produced, from the earliest offset) to a
    second; each cluster holds every event exactly once, and neither group's commits or
    rebalances move the other's."""
    receiver = Receiver(tmp_path / "r", None, env=cluster.env()).start()
    main = [Member(tmp_path / f"m{n}", es_url, cluster.env()).launch() for n in (1, 2)]
    archive: Member | None = None
    with search_server.clone() as second:
        try:
            for member in main:
                member.started()
            send(receiver, 0, 300)
            indexed_once(es_url, {f"/e{n}" for n in range(300)})
            archive = Member(tmp_path / "a1", second.url,
                             cluster.env(group_id="archive")).start()
            send(receiver, 300, 300)
            expected = {f"/e{n}" for n in range(600)}
            indexed_once(second.url, expected)  # the 300 from before it joined, too
            indexed_once(es_url, expected)
            wait_for(lambda: archive is not None and archive.metric(
                "haproxy_receiver_kafka_consumer_lag") == 0, 20, "the archive group caught up")
            assert archive.metric("haproxy_receiver_kafka_rebalances_total",
                                  change="assigned") == cluster.partitions  # all of them
            assert archive.metric("haproxy_receiver_events_shipped_total") == 600
            # (a record read again after the two members first shared the partitions counts twice)
            assert sum(m.metric("haproxy_receiver_events_shipped_total") for m in main) >= 600
        finally:
            for running in [*main, *([archive] if archive is not None else [])]:
                if running.process is not None and running.process.poll() is None:
                    running.kill()
            receiver.stop()
