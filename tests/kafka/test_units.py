"""The Kafka path's pieces on their own: the offset book that decides what may be committed,
the event id carried as key and read back, the `[kafka]` settings' refusals, `test output`
against the mock cluster, and that nothing of Kafka is loaded where it is not configured."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.config import ConfigError, load_settings
from receiver.kafka.consumer import OffsetBook
from receiver.spool.records import Position, event_id, parse_event_id
from tests.kafka.cluster import MockCluster
from tests.support import REPO, receiver_command


def test_a_commit_never_passes_a_batch_still_in_flight() -> None:
    book = OffsetBook()
    book.assigned([0, 1])
    first, second, third = (book.read(0, 9), book.read(0, 19), book.read(0, 29))
    other = book.read(1, 4)
    assert first and second and third and other
    book.done(second)  # acknowledged before the first: nothing may be committed yet
    book.done(other)
    assert book.due() == {1: 5}
    book.done(first)
    assert book.due() == {0: 20}  # through the second, not the third
    assert book.due() == {}  # committed once
    book.done(third)
    assert book.due() == {0: 30}


def test_a_revoked_partition_is_committed_as_far_as_it_goes_and_then_forgotten() -> None:
    book = OffsetBook()
    book.assigned([3])
    done, pending = book.read(3, 99), book.read(3, 199)
    assert done and pending
    book.done(done)
    assert book.revoked([3]) == {3: 100}
    book.assigned([3])  # it comes back in a later rebalance
    book.done(pending)  # the old acknowledgement is ignored: the new owner reads it again
    assert book.due() == {}
    assert book.read(7, 5) is None  # never assigned


@given(identity=st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567-", min_size=1, max_size=20)
       .filter(lambda s: not s.endswith("-")),
       segment=st.integers(0, 2**48), offset=st.integers(0, 2**40))
def test_the_carried_id_gives_back_what_event_id_was_built_from(
    identity: str, segment: int, offset: int
) -> None:
    text = event_id(identity, Position(segment, offset))
    assert parse_event_id(text) == (identity, Position(segment, offset))


@pytest.mark.parametrize("key", ["", "nohyphen", "a-b", "a-zz-1", "-1-2", "a-01-2"])
def test_a_key_that_is_no_event_id_is_refused(key: str) -> None:
    with pytest.raises(ValueError):
        parse_event_id(key)


@pytest.mark.parametrize(("overrides", "named"), [
    ({"kafka.bootstrap_servers": "broker"}, "kafka.bootstrap_servers[0]"),
    ({"kafka.bootstrap_servers": "b:9092", "kafka.topic": "a topic"}, "kafka.topic"),
    ({"kafka.security_protocol": "sasl_ssl"}, "kafka.username and kafka.password"),
    ({"kafka.sasl_mechanism": "GSSAPI"}, "kafka.sasl_mechanism"),
    ({"kafka.compression": "brotli"}, "kafka.compression"),
    ({"kafka.max_in_flight": "0"}, "kafka.max_in_flight"),
    ({"kafka.options": "message.max.bytes=1MB"}, "kafka.options message.max.bytes"),
    ({"kafka.options": "message.max.bytes=10"}, "kafka.options message.max.bytes"),
])
def test_a_wrong_kafka_setting_is_refused_by_name(overrides: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load_settings(env={}, overrides={"listen.udp": "127.0.0.1:5140", **overrides})


def test_check_config_hides_the_kafka_password() -> None:
    done = receiver_command("check-config", env={
        "HAPROXY_RECEIVER_KAFKA__SECURITY_PROTOCOL": "sasl_ssl",
        "HAPROXY_RECEIVER_KAFKA__USERNAME": "shipper",
        "HAPROXY_RECEIVER_KAFKA__PASSWORD": "s3cret-value"})
    assert done.returncode == 0, done.stderr
    assert "s3cret-value" not in done.stdout and '"password": "***"' in done.stdout


def test_test_output_names_the_brokers_and_the_topic(cluster: MockCluster) -> None:
    done = receiver_command("test", "output", env=cluster.env())
    assert done.returncode == 0, done.stderr
    assert "ok   cluster" in done.stdout and "3 brokers" in done.stdout
    assert f"ok   topic {cluster.topic}: {cluster.partitions} partitions" in done.stdout
    missing = receiver_command("test", "output", env=cluster.env(topic="absent"))
    assert missing.returncode == 0 and "--   topic absent does not exist yet" in missing.stdout


def test_test_output_fails_naming_what_to_check_when_no_broker_answers() -> None:
    done = receiver_command("test", "output", env={
        "HAPROXY_RECEIVER_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert done.returncode == 1
    assert "FAIL the brokers cannot be reached" in done.stdout
    assert "kafka.bootstrap_servers" in done.stdout


IMPORTS = """
import sys
import receiver.cli, receiver.service, receiver.workers.child
print("confluent_kafka" in sys.modules, "receiver.kafka.producer" in sys.modules)
"""


def test_without_kafka_configured_nothing_of_it_is_loaded() -> None:
    done = subprocess.run([sys.executable, "-c", IMPORTS], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


def test_status_shows_a_members_lag_per_partition() -> None:
    from receiver.metrics import ConsumerMetrics
    from receiver.status import render, status_from_families

    metrics = ConsumerMetrics()
    metrics.kafka_up.set(1)
    metrics.kafka_records_consumed.inc(500)
    metrics.kafka_consumer_lag.labels("10").set(7)
    metrics.kafka_consumer_lag.labels("2").set(3)
    metrics.kafka_rebalances.labels("assigned").inc(2)
    metrics.kafka_commits.labels("ok").inc(4)
    text = render(status_from_families(metrics.registry.collect(), True, "ready"))
    assert ("kafka:     up; consumed 500, lag 10 (2: 3, 10: 7), commits 4, partitions assigned 2"
            in text)
    assert "produced" not in text  # a member produces nothing


def test_status_shows_what_a_receiver_waits_to_have_stored() -> None:
    from receiver.metrics import WorkerMetrics
    from receiver.status import render, status_from_families

    metrics = WorkerMetrics()
    metrics.kafka_up.set(0)
    metrics.kafka_records_produced.inc(90)
    metrics.kafka_produce_queue.set(12)
    text = render(status_from_families(metrics.registry.collect(), False, "Kafka unreachable"))
    assert "kafka:     UNREACHABLE; produced 90, waiting for the brokers 12, delivery errors 0" \
        in text
    assert "consumed" not in text


def test_the_producers_message_max_bytes_follows_the_longest_message_accepted() -> None:
    from receiver.kafka.producer import message_max_bytes

    def limit(**env: str) -> int:
        values = {f"HAPROXY_RECEIVER_{key.upper()}": value for key, value in env.items()}
        return message_max_bytes(load_settings(None, values))

    assert limit() == 1_000_000  # 64 KiB messages: librdkafka's default, under the brokers'
    big = limit(listen__max_message_bytes="4MiB", spool__max_record_bytes="5MiB")
    assert big == 4 * 1024**2 + 1024 + 4096  # every accepted message fits one record
    assert limit(kafka__options="message.max.bytes=500000") == 500000  # the brokers' limit


def test_only_refusals_of_the_record_itself_are_final() -> None:
    from receiver.kafka.producer import REFUSED_FOR_GOOD, _Refusal

    assert _Refusal("MSG_SIZE_TOO_LARGE", "").for_good
    assert _Refusal("MSG_SIZE_TOO_LARGE", "").reason == "kafka_msg_size_too_large"
    assert _Refusal("INVALID_RECORD", "").reason == "kafka_invalid_record"
    for passing in ("_MSG_TIMED_OUT", "_ALL_BROKERS_DOWN", "NOT_LEADER_FOR_PARTITION",
                    "TOPIC_AUTHORIZATION_FAILED", "_TRANSPORT", "REQUEST_TIMED_OUT"):
        assert not _Refusal(passing, "").for_good, passing
    import confluent_kafka

    for name in REFUSED_FOR_GOOD:  # each is a name librdkafka really reports
        assert hasattr(confluent_kafka.KafkaError, name), name


def test_a_broker_refusing_a_batch_for_good_dead_letters_only_a_record_refused_alone() -> None:
    """The broker answers for a whole batch (its size): a record refused with batch-mates is
    produced again alone; only when it is refused alone is it dead-lettered. The producer's own
    refusal is about the record itself at once. (librdkafka's real error and message objects;
    the forwarder's side is a recorder of what it was told.)"""
    from confluent_kafka import KafkaError, Message

    from receiver.kafka.producer import _InFlight
    from receiver.spool.records import Batch, Record

    class Told:
        def __init__(self) -> None:
            self.reports: list[tuple[str | None, bool]] = []

        def reported(self, flight: object, error: object, final: bool = False) -> None:
            self.reports.append((getattr(error, "name", None), final))

    told = Told()
    records = [Record(Position(0, n * 100), b"payload%d" % n, 1.0) for n in range(3)]
    flight = _InFlight(Batch(0, "id", 0, 300, 3, records), told)  # type: ignore[arg-type]
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    for n in range(3):  # one batch of three, refused
        flight.delivered(too_large, Message(topic="t", value=b"payload%d" % n, key=b"k%d" % n,
                                            timestamp=(1, 1000 + n)))
    assert not flight.dead and [m.alone for m in flight.failed] == [True] * 3
    assert told.reports == [("MSG_SIZE_TOO_LARGE", False)] * 3
    alone, flight.failed = flight.failed, []
    report = Message(topic="t", value=alone[2].value, key=b"k2", timestamp=(1, 1002))
    flight.delivered_alone(alone[0], None, None)  # two of them stored when produced alone
    flight.delivered_alone(alone[1], None, None)
    flight.delivered_alone(alone[2], too_large, report)
    assert not flight.failed  # ... but refused alone: believed, nothing to produce again
    ((letter, message),) = flight.dead
    flight.dead = []
    assert message is alone[2]
    assert letter.payload == b"payload2" and letter.id == "k2"
    assert letter.error_type == "kafka_msg_size_too_large" and letter.document is None
    assert told.reports[-1] == ("MSG_SIZE_TOO_LARGE", True)
    # The producer's own refusal (produce raising) is final at once; a passing error never is.
    from receiver.kafka.producer import _Message, _Refusal

    flight.refused(_Refusal("MSG_SIZE_TOO_LARGE", "too large"), _Message(b"x", "k9", 1),
                   by_broker=False)
    assert len(flight.dead) == 1 and told.reports[-1][1]
    flight.delivered(KafkaError(KafkaError._MSG_TIMED_OUT),
                     Message(topic="t", value=b"y", key=b"k8", timestamp=(1, 1)))
    assert [m.key for m in flight.failed] == [b"k8"] and not flight.failed[0].alone
