"""The optional Kafka path (the `kafka` extra, confluent-kafka with its bundled librdkafka).

    receivers:   listen → spool → workers producing (producer.py) ─┐
                                                                  Kafka topic
    worker tier: `haproxy-receiver consume` (member.py): consumer.py → ship/ → Elasticsearch

In a receiver with `kafka.bootstrap_servers` set, each worker (receiver/workers/child.py) runs a
`Forwarder` instead of a `Shipper`: it reads its spool leases and produces every record (the
message as received with its receive metadata, as spooled; key: its event id) with idempotence
and `acks=all`, and acknowledges a spool batch only once Kafka reported every record of it
stored. A member of the worker tier reads the topic as a consumer group through `KafkaSource`,
which gives the very same `Shipper` (parse, batching, delivery, retries, dead letters) batches
whose `event_id` is the id carried in the record, and commits an offset only once every record
before it was acknowledged by Elasticsearch or dead-lettered.

This package file imports nothing, and nothing imports confluent-kafka unless Kafka is
configured (record.py and client.py are the only modules that name it).
"""
