"""The Kafka path's speed, against librdkafka's mock cluster (3 brokers, 4 partitions, in a
process of its own; tests/kafka/cluster.py) and bench/nullsink.py as Elasticsearch.

    python3 bench/kafka_bench.py                          # 200k events, 1 and 2 consumers
    python3 bench/kafka_bench.py --events 50000 --workers 1,2,3 --messages 100000

1. Consumer side: fills the topic with N records as receivers produce them (loadgen-shaped
   messages as received, bench/workload.py; key: the event id), then for each member count runs
   that many `haproxy-receiver consume` processes (a fresh consumer group each) and times them
   from the first document in the sink (start-up and joining the group are shown apart) until
   the sink holds every document. Prints events/s, the members' CPU seconds and peak RSS
   and the mock cluster's CPU (the brokers share the machine's cores with the members).
2. Receiving side: runs `haproxy-receiver run` twice on the same M messages sent over one TCP
   connection: shipping to the sink (the spool-only path of the receiving process: listen,
   frame, spool) and producing to Kafka. Prints the CPU per message of the receiving process,
   of its workers (parse and ship, or produce), and of both.

On a shared machine the numbers move with the other load: say so when quoting them.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ship_bench import payloads, process_usage, start_sink
from bench.workload import lines
from receiver.spool.records import Position, event_id
from tests.kafka.cluster import MockCluster

IDENTITY = "BENCHAAAAA"
SEGMENT_RECORDS = 10_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sink_docs(url: str) -> int:
    import json

    with urllib.request.urlopen(url + "/_stats/sink", timeout=5) as response:
        return int(json.loads(response.read())["docs"])


def reset_sink(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url + "/_stats/sink/reset", method="POST"),
                           timeout=5).read()


def fill_topic(cluster: MockCluster, records: list[bytes]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": cluster.bootstrap, "enable.idempotence": True,
                         "acks": "all", "compression.type": "zstd", "linger.ms": 20})
    now = int(time.time() * 1000)
    for n, payload in enumerate(records):
        key = event_id(IDENTITY, Position(1 + n // SEGMENT_RECORDS, 42 + 300 * (n % SEGMENT_RECORDS)))
        while True:
            try:
                producer.produce(cluster.topic, payload, key, timestamp=now)
                break
            except BufferError:
                producer.poll(0.05)
        if n % 10000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise SystemExit("the mock cluster did not take every record")


def env_for(cluster: MockCluster, workdir: Path, **kafka: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HAPROXY_RECEIVER_")}
    return {**clean, **cluster.env(**kafka), "HAPROXY_RECEIVER_SPOOL__DIR": str(workdir),
            "HAPROXY_RECEIVER_CONFIG": str(workdir / "empty.toml"),
            "HAPROXY_RECEIVER_SERVICE__LOG_LEVEL": "warning"}


def consumers(cluster: MockCluster, count: int, total: int, url: str, workdir: Path,
              run: int) -> dict[str, Any]:
    reset_sink(url)
    owner_before = process_usage(cluster.process.pid)[0]
    members = []
    started = time.perf_counter()
    for n in range(count):
        home = workdir / f"consume-{run}-{n}"
        home.mkdir()
        (home / "empty.toml").write_text("")
        env = env_for(cluster, home, group_id=f"bench-{run}")
        members.append(subprocess.Popen(
            [sys.executable, "-m", "receiver", "consume", "-e", url, "--metrics", ""], env=env,
            stdout=subprocess.DEVNULL))
    last, since, first = 0, time.monotonic(), 0.0
    while (docs := sink_docs(url)) < total:
        if docs != last:
            if not last:  # the members started and joined the group: shipping begins
                first = time.perf_counter()
            last, since = docs, time.monotonic()
        elif time.monotonic() - since > 60:
            raise SystemExit(f"no progress for 60 s at {docs} documents")
        time.sleep(0.02)
    elapsed = time.perf_counter() - (first or started)
    start_up = (first or started) - started
    usage = [process_usage(m.pid) for m in members]
    owner = process_usage(cluster.process.pid)[0] - owner_before
    for member in members:
        member.send_signal(signal.SIGTERM)
    for member in members:
        member.wait(30)
    return {"members": count, "events": total, "seconds": round(elapsed, 2),
            "start_up_s": round(start_up, 2),
            "events_per_s": round(total / elapsed),
            "member_cpu_s": round(sum(cpu for cpu, _ in usage), 2),
            "member_peak_rss_mib": round(max(rss for _, rss in usage)),
            "brokers_cpu_s": round(owner, 2)}


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry))
    return found


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def receiving(mode: str, cluster: MockCluster, messages: list[bytes], url: str,
              workdir: Path) -> dict[str, Any]:
    home = workdir / f"receiver-{mode}"
    home.mkdir()
    (home / "empty.toml").write_text("")
    env = env_for(cluster, home)
    if mode == "spool":
        env = {k: v for k, v in env.items() if not k.startswith("HAPROXY_RECEIVER_KAFKA__")}
    tcp, metrics_port = free_port(), free_port()
    args = [sys.executable, "-m", "receiver", "run", "--udp", "", "--tcp", f"127.0.0.1:{tcp}",
            "--metrics", f"127.0.0.1:{metrics_port}", "-e", url]
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            metric(metrics_port, "haproxy_receiver_events_shipped_total")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("the receiver did not start") from None
            time.sleep(0.1)
    time.sleep(1.0)  # the worker's start-up is not the per-message cost
    workers = children(process.pid)
    before = process_usage(process.pid)[0], sum(process_usage(p)[0] for p in workers)
    with socket.create_connection(("127.0.0.1", tcp)) as stream:
        stream.sendall(b"".join(m + b"\n" for m in messages))
    total = len(messages)
    while metric(metrics_port, "haproxy_receiver_events_shipped_total") < total:
        time.sleep(0.05)
    after = process_usage(process.pid)[0], sum(process_usage(p)[0] for p in workers)
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    parent = (after[0] - before[0]) / total * 1e6
    worker = (after[1] - before[1]) / total * 1e6
    return {"mode": "producing to Kafka" if mode == "kafka" else "shipping to Elasticsearch",
            "messages": total, "receiving_us": round(parent, 2), "workers_us": round(worker, 2),
            "both_us": round(parent + worker, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--workers", default="1,2", help="comma list of consumer counts")
    parser.add_argument("--messages", type=int, default=100_000,
                        help="messages for the receiving side's CPU per message")
    parser.add_argument("--sink-port", type=int, default=15922)
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.sink_port}"
    with tempfile.TemporaryDirectory(prefix="kafka-bench-") as tmp:
        workdir = Path(tmp)
        sink = start_sink(args.sink_port, workdir)
        cluster = MockCluster(topic="bench")
        try:
            fill_topic(cluster, payloads("received", args.events))
            rows = [consumers(cluster, int(n), args.events, url, workdir, run)
                    for run, n in enumerate(args.workers.split(","))]
            messages = lines(args.messages)
            sides = [receiving(mode, cluster, messages, url, workdir) for mode in ("spool", "kafka")]
        finally:
            cluster.close()
            sink.terminate()
            sink.wait(10)
    print(f"Consumers (`consume` members, {cluster.partitions} partitions, mock cluster):")
    print("| members | events | start-up s | seconds | events/s | member CPU s "
          "| member peak RSS MiB | brokers CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['members']} | {r['events']} | {r['start_up_s']} | {r['seconds']} | "
              f"{r['events_per_s']:,} | "
              f"{r['member_cpu_s']} | {r['member_peak_rss_mib']} | {r['brokers_cpu_s']} |")
    print()
    print("Receiving side, CPU µs per message (one TCP connection):")
    print("| workers | messages | receiving process | its workers | both |")
    print("|---|---|---|---|---|")
    for s in sides:
        print(f"| {s['mode']} | {s['messages']} | {s['receiving_us']} | {s['workers_us']} | "
              f"{s['both_us']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
