"""`haproxy-receiver consume`: one member of the worker tier (run as many, on as many hosts, as
the parsing needs: they share the topic's partitions as one consumer group).

It runs the shipper of the spool workers (receiver/ship/shipper.py: parse, batching, delivery,
retries, dead letters) on a `KafkaSource` instead of a spool reader, and serves its metrics and
health on `metrics.listen`. SIGTERM/SIGINT: stop reading, let the bulk requests in flight finish
within `service.shutdown_grace`, commit what was acknowledged, leave the group (what was read
and not acknowledged is read again by the partition's next owner; a second signal stops at
once). SIGHUP: read the configuration again and, if it changed, start the member anew with it.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

from receiver.config import ConfigError, Settings
from receiver.kafka.consumer import KafkaSource
from receiver.logs import setup_logging
from receiver.metrics import ConsumerMetrics, serve
from receiver.ship.dead_letter import dead_letter_path
from receiver.ship.output import Output, make_output
from receiver.ship.shipper import Shipper

log = logging.getLogger("receiver.kafka")


class Member:
    """One consumer group member: source, shipper and output, for one set of settings."""

    def __init__(self, settings: Settings, metrics: ConsumerMetrics) -> None:
        self.settings = settings
        self._output: Output = make_output(settings.elasticsearch, metrics, sys.stdout.buffer)
        self.source = KafkaSource(settings, metrics)
        self._shipper = Shipper(settings.elasticsearch, self.source, self._output, metrics,
                                str(dead_letter_path(settings)), settings.parse)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._shipper.run, args=(self._stop,),
                                        name="shipper", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("consuming Kafka topic %s as group %s", self.settings.kafka.topic,
                 self.settings.kafka.group_id)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        self._stop.set()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self._shipper.drain(deadline)
        self.source.close()
        self._output.close()


def run_member(settings: Settings, loader: Callable[[], Settings] | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status."""
    if not settings.kafka.bootstrap_servers:
        log.error("consume: kafka.bootstrap_servers is empty; there is nothing to consume")
        return 2
    metrics = ConsumerMetrics()
    member = Member(settings, metrics)
    exit_now, reload = threading.Event(), threading.Event()
    force = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if exit_now.is_set():
            force.set()
        exit_now.set()

    def on_hangup(signum: int, frame: FrameType | None) -> None:
        reload.set()

    def ready() -> tuple[bool, str]:
        if not member.alive():
            return False, "the shipper is not running"
        if metrics.registry.get_sample_value("haproxy_receiver_kafka_up") == 0:
            return False, "Kafka unreachable"
        return True, "ready"

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hangup)
    server = serve(metrics.registry, settings.metrics.listen, ready) \
        if settings.metrics.listen else None
    member.start()
    try:
        while not exit_now.wait(0.25):
            if not member.alive():
                log.error("consume: the shipper stopped unexpectedly; exiting")
                member.stop(0.0)
                return 3
            if reload.is_set() and loader is not None:
                reload.clear()
                member = _reloaded(member, loader, metrics)
        member.stop(0.0 if force.is_set() else float(member.settings.service.shutdown_grace))
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _reloaded(member: Member, loader: Callable[[], Settings], metrics: ConsumerMetrics) -> Member:
    try:
        new = loader()
    except ConfigError as error:
        log.error("reload: the new configuration is refused, the running one stays: %s", error)
        return member
    if new == member.settings:
        log.info("reload: nothing changed")
        return member
    setup_logging(new.service.log_level, new.service.log_format)
    member.stop(float(member.settings.service.shutdown_grace))
    try:
        fresh = Member(new, metrics)
    except Exception as error:
        log.error("reload: cannot consume with the new configuration (%s); the previous one "
                  "runs again", error)
        fresh = Member(member.settings, metrics)
    fresh.start()
    log.info("reload: done")
    return fresh
