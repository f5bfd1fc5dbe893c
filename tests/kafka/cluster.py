"""librdkafka's built-in mock cluster (`test.mock.num.brokers`) as a process of its own: real
brokers speaking the Kafka protocol on loopback ports, which every client under test reaches by
its `bootstrap.servers` as it would a real cluster. No broker can be installed on the machines
the tests run on; the mock handles idempotent producers and consumer groups.

The mock refuses CreateTopics (its metadata names no controller), so the topic is created as
Kafka's auto-creation does, by asking for its metadata: with the mock's default of 4 partitions
(3 replicas). Pausing the process (SIGSTOP) makes every broker unreachable while keeping its
data; SIGCONT brings them back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

OWNER = """
import sys
from confluent_kafka import Producer
owner = Producer({"test.mock.num.brokers": int(sys.argv[1]), "log_level": 3})
metadata = owner.list_topics(sys.argv[2], timeout=30)
partitions = len(metadata.topics[sys.argv[2]].partitions)
brokers = ",".join(f"{b.host}:{b.port}" for b in metadata.brokers.values())
print(brokers, partitions, flush=True)
sys.stdin.read()  # until the test closes it
"""


class MockCluster:
    def __init__(self, topic: str = "haproxy-receiver", brokers: int = 3) -> None:
        self.topic = topic
        self.process = subprocess.Popen([sys.executable, "-c", OWNER, str(brokers), topic],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        assert len(line) == 2, "the mock cluster did not start"
        self.bootstrap, self.partitions = line[0], int(line[1])

    def env(self, **more: str) -> dict[str, str]:
        """The receiver's settings for this cluster, as environment variables."""
        values = {"BOOTSTRAP_SERVERS": self.bootstrap, "TOPIC": self.topic,
                  "UNREACHABLE_AFTER": "3", **{k.upper(): v for k, v in more.items()}}
        return {f"HAPROXY_RECEIVER_KAFKA__{k}": v for k, v in values.items()}

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.resume()
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def read_all(self, group: str, expected: int, timeout: float = 30.0) -> list[Any]:
        """Every record of the topic, read by a fresh consumer group (until `expected` came or
        `timeout`)."""
        import time

        from confluent_kafka import Consumer

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group,
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe([self.topic])
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        try:
            while len(got) < expected and time.monotonic() < deadline:
                got += [m for m in consumer.consume(1000, 0.5) if m.error() is None]
        finally:
            consumer.close()
        return got


class Member:
    """`python -m receiver consume` as a real child process."""

    def __init__(self, workdir: Path, es_url: str, env: dict[str, str],
                 options: str = "") -> None:
        from tests.support import free_port

        self.workdir = workdir
        self.metrics_port = free_port()
        self.args = [sys.executable, "-m", "receiver", "consume", "--elasticsearch", es_url,
                     "--metrics", f"127.0.0.1:{self.metrics_port}"]
        # A member killed with -9 holds its partitions until the group misses its heartbeats.
        self.env = {**os.environ, **env,
                    "HAPROXY_RECEIVER_KAFKA__OPTIONS":
                        ",".join(["session.timeout.ms=3000,heartbeat.interval.ms=300"]
                                 + ([options] if options else [])),
                    "HAPROXY_RECEIVER_SPOOL__DIR": str(workdir)}
        self.process: subprocess.Popen[bytes] | None = None
        self.stderr_path = workdir / "consume.stderr"

    def start(self) -> Member:
        return self.launch().started()

    def launch(self) -> Member:
        """Start the process without waiting (members started together start faster)."""
        from tests.support import REPO

        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.stderr_path.open("ab") as err:
            self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=err,
                                            env=self.env, cwd=REPO, start_new_session=True)
        return self

    def started(self) -> Member:
        from tests.support import http_get_text, wait_for

        def up() -> str:
            assert self.process is not None and self.process.poll() is None, self.stderr()
            return http_get_text(f"http://127.0.0.1:{self.metrics_port}/healthz")

        wait_for(up, 30, f"a consumer to start (stderr: {self.stderr_path})")
        return self

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def metric(self, name: str, **labels: str) -> float:
        from tests.support import metric_value

        return metric_value(f"http://127.0.0.1:{self.metrics_port}/metrics", name, **labels)

    def stop(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()
