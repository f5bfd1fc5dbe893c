"""`haproxy-receiver test output` for Kafka: reach the brokers as `run` and `consume` would
(same connection, TLS and SASL properties), name them, and say whether the topic exists and how
many partitions it has (at most that many `consume` members share the work). One line a finding,
`ok`/`--`/`FAIL` as for Elasticsearch; 0 when nothing failed."""

from __future__ import annotations

from collections.abc import Callable

from receiver.config import KafkaSettings
from receiver.kafka.client import client_config, library

Say = Callable[[str], None]
OK, SKIP, FAIL = "ok  ", "--  ", "FAIL"
TIMEOUT = 10.0


def run_kafka_check(settings: KafkaSettings, say: Say = print) -> int:
    kafka = library()
    from confluent_kafka.admin import AdminClient  # library() said it is installed

    say("kafka " + ",".join(settings.bootstrap_servers))
    config = client_config(settings, "check")
    config.pop("logger", None)
    admin = AdminClient(config | {"log_level": 0})
    try:
        metadata = admin.list_topics(timeout=TIMEOUT)
    except kafka.KafkaException as error:
        say(f"  {FAIL} the brokers cannot be reached within {TIMEOUT:g} s: {error.args[0].str()}"
            " (kafka.bootstrap_servers, security_protocol, TLS and SASL settings)")
        return 1
    brokers = ", ".join(f"{b.host}:{b.port}" for b in sorted(metadata.brokers.values(),
                                                             key=lambda b: b.id))
    say(f"  {OK} cluster {metadata.cluster_id}: {len(metadata.brokers)} brokers ({brokers})")
    topic = metadata.topics.get(settings.topic)
    if topic is None or topic.error is not None:
        say(f"  {SKIP} topic {settings.topic} does not exist yet: create it with as many "
            "partitions as `consume` members may ever run (or let the brokers create it at the "
            "first record, with their default partition count)")
        return 0
    say(f"  {OK} topic {settings.topic}: {len(topic.partitions)} partitions")
    return 0
