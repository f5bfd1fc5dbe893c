"""The ship process (receiver/workers/) under the real `python -m receiver run`: metrics
relayed to the parent's /metrics exactly once, a killed child restarted without loss (also one
killed while it starts), a graceful
stop that stops the child, and a killed parent that takes the child with it."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

from tests.support import Receiver, count, http_get_text, wait_for

LINE = (
    '<134>Nov 25 18:21:08 haproxy[11604]: {{"ci":"127.0.0.1","cp":{port},'
    '"t":"25/Nov/2026:18:21:08.761","ft":"fe_json","b":"be_app","s":"s1","ST":200,'
    '"r":"GET /{n} HTTP/1.1"}}'
)


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def ship_child(receiver: Receiver) -> int:
    assert receiver.process is not None
    pids = wait_for(lambda: children(receiver.process.pid), 30, "the ship process")  # type: ignore[union-attr]
    assert len(pids) == 1, pids  # one helper process, nothing else (no multiprocessing tracker)
    return pids[0]


def send(receiver: Receiver, first: int, number: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for n in range(first, first + number):
            sock.sendto(LINE.format(port=1024 + n, n=n).encode(), ("127.0.0.1", receiver.udp_port))


def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def metric_families(receiver: Receiver) -> list[str]:
    text = http_get_text(receiver.metrics_url)
    return [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]


def test_shipping_runs_in_a_child_whose_metrics_the_parent_serves_once(
    tmp_path: Path, es_url: str
) -> None:
    receiver = Receiver(tmp_path, es_url).start()
    try:
        child = ship_child(receiver)
        assert child != receiver.process.pid  # type: ignore[union-attr]
        send(receiver, 0, 200)
        wait_for(lambda: count(es_url) >= 200, 30, "200 documents indexed")
        wait_for(lambda: receiver.metric("haproxy_receiver_events_shipped_total") >= 200, 10,
                 "events_shipped relayed from the child")
        families = metric_families(receiver)
        assert len(families) == len(set(families)), sorted(families)
        for name in ("haproxy_receiver_events_shipped", "haproxy_receiver_bulk_requests",
                     "haproxy_receiver_output_up", "haproxy_receiver_spool_corrupt_records",
                     "haproxy_receiver_events_spooled"):
            assert any(family.startswith(name) for family in families), name
        wait_for(lambda: receiver.metric("haproxy_receiver_output_up") == 1, 10,
                 "output_up relayed from the worker")
        assert http_get_text(receiver.metrics_url.replace("/metrics", "/readyz")) == "ready\n"
    finally:
        assert receiver.stop() == 0
    assert gone(child), "the ship process outlived a graceful stop"
    assert count(es_url) == 200


def test_a_killed_ship_process_is_restarted_and_nothing_is_lost(
    tmp_path: Path, es_url: str
) -> None:
    receiver = Receiver(tmp_path, es_url).start()
    try:
        first = ship_child(receiver)
        send(receiver, 0, 100)
        wait_for(lambda: count(es_url) >= 100, 30, "the first 100 documents")
        shipped = wait_for(lambda: receiver.metric("haproxy_receiver_events_shipped_total") >= 100
                           and receiver.metric("haproxy_receiver_events_shipped_total"), 10,
                           "events_shipped relayed")
        os.kill(first, signal.SIGKILL)
        send(receiver, 100, 100)  # spooled while no shipper runs
        second = wait_for(lambda: [p for p in children(receiver.process.pid)  # type: ignore[union-attr]
                                   if p != first], 30, "a new ship process")[0]
        assert second != first
        wait_for(lambda: count(es_url) >= 200, 30, "the 100 documents spooled meanwhile")
        wait_for(lambda: receiver.metric("haproxy_receiver_events_shipped_total") >= shipped + 100,
                 10, "events_shipped keeps counting across the restart")
        assert "exited unexpectedly" in receiver.stderr()
    finally:
        assert receiver.stop() == 0
    assert count(es_url) == 200


def test_a_worker_killed_while_it_starts_is_started_again(tmp_path: Path, es_url: str) -> None:
    """Seen in CI: a worker killed before it reported started was never started again, and its
    segments waited for good. Now every start that fails is tried again, later each time."""
    receiver = Receiver(tmp_path, es_url).start()
    try:
        assert receiver.process is not None
        parent = receiver.process.pid
        killed = {ship_child(receiver)}
        os.kill(next(iter(killed)), signal.SIGKILL)
        for _ in range(3):  # each new worker dies at once, before its start is complete
            new = wait_for(lambda: [p for p in children(parent) if p not in killed], 30,
                           "a worker started again", interval=0.005)[0]
            os.kill(new, signal.SIGKILL)
            killed.add(new)
        send(receiver, 0, 100)
        wait_for(lambda: count(es_url) >= 100, 60, "the documents sent after the kills")
        log = receiver.stderr()
        assert "starting it again in 0.5 s" in log, log  # it had run only briefly: backing off
        assert "did not start" in log and "trying again in" in log, log
    finally:
        assert receiver.stop() == 0
    assert count(es_url) == 100


def test_the_ship_process_dies_with_a_killed_receiver(tmp_path: Path, es_url: str) -> None:
    receiver = Receiver(tmp_path, es_url).start()
    child = ship_child(receiver)
    receiver.kill()
    wait_for(lambda: gone(child), 10, "the ship process to die with its parent")
    # the next instance starts on the same spool (no orphan holds or reads it)
    again = Receiver(tmp_path / "again", es_url, spool_dir=receiver.spool_dir).start()
    try:
        send(again, 0, 10)
        wait_for(lambda: count(es_url) >= 10, 30, "documents from the restarted instance")
    finally:
        assert again.stop() == 0
