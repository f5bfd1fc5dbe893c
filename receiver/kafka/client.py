"""The Kafka client library and the properties every client of ours shares (from `[kafka]`)."""

from __future__ import annotations

import logging
import socket
from types import ModuleType
from typing import Any

from receiver.config import KafkaSettings
from receiver.ship.errors import OutputError

log = logging.getLogger("receiver.kafka")

EXTRA_HINT = "install the kafka extra: pip install 'haproxy-receiver[kafka]'"


class KafkaUnavailable(OutputError):
    """Kafka is configured but the client library is not installed (refused at start as an
    output that cannot work)."""


def library() -> ModuleType:
    """confluent_kafka, or a clear error naming the extra."""
    try:
        import confluent_kafka
    except ImportError as error:
        raise KafkaUnavailable(f"kafka.bootstrap_servers is set but confluent-kafka cannot be "
                               f"imported ({error}); {EXTRA_HINT}") from None
    return confluent_kafka


def client_config(settings: KafkaSettings, role: str) -> dict[str, Any]:
    """Connection, security and `options` properties; `role` names the client in the brokers'
    logs (`client.id`)."""
    config: dict[str, Any] = {
        "bootstrap.servers": ",".join(settings.bootstrap_servers),
        "client.id": f"haproxy-receiver-{role}-{socket.gethostname()}",
        "security.protocol": settings.security_protocol,
        "logger": log,
    }
    if settings.security_protocol.startswith("sasl"):
        config |= {"sasl.mechanisms": settings.sasl_mechanism,
                   "sasl.username": settings.username, "sasl.password": settings.password}
    if settings.security_protocol in ("ssl", "sasl_ssl"):
        if settings.ca_file:
            config["ssl.ca.location"] = settings.ca_file
        if settings.client_cert:
            config["ssl.certificate.location"] = settings.client_cert
            config["ssl.key.location"] = settings.client_key or settings.client_cert
        if settings.client_key_passphrase:
            config["ssl.key.password"] = settings.client_key_passphrase
        if not settings.verify_certs:
            log.warning("kafka.verify_certs = false: the brokers' certificates are not checked")
            config["enable.ssl.certificate.verification"] = False
            config["ssl.endpoint.identification.algorithm"] = "none"
        else:
            config["ssl.endpoint.identification.algorithm"] = "https"
    config.update(settings.options)
    return config
