"""Operating a running receiver: health, a live /metrics scrape checked by promtool, `status`,
`spool stats`/`spool dump` while it runs, one instance per spool directory, stdout output."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, Receiver, count, flatten, group_members, http_get_text, wait_for

LINE = (b'<134>Nov 25 18:21:08 haproxy[7]: {"ci":"192.0.2.7","cp":40000,"t":"25/Nov/2026:18:21:08.761",'
        b'"ft":"fe","b":"be","s":"s1","Tt":5,"ST":200,"r":"GET /ops HTTP/1.1","B":10}\n')


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "receiver", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=timeout)


def send_udp(receiver: Receiver, lines: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        for line in lines:
            client.sendto(line, ("127.0.0.1", receiver.udp_port))


def test_live_metrics_pass_promtool_and_status_reports_the_pipeline(tmp_path: Path, es_url: str) -> None:
    receiver = Receiver(tmp_path, es_url).start()
    try:
        send_udp(receiver, [LINE] * 3)
        wait_for(lambda: count(es_url) == 3, 30, "3 documents")
        wait_for(lambda: receiver.metric("haproxy_receiver_events_shipped_total") == 3, 10, "shipped")
        assert http_get_text(f"http://127.0.0.1:{receiver.metrics_port}/readyz").strip() == "ready"
        exposition = http_get_text(receiver.metrics_url)
        udp = f"udp://127.0.0.1:{receiver.udp_port}"
        assert receiver.metric("haproxy_receiver_messages_received_total", listener=udp) == 3
        wait_for(lambda: receiver.metric("haproxy_receiver_events_parsed_total", format="json")
                 == 3, 10, "events_parsed relayed from the worker")
        wait_for(lambda: receiver.metric("haproxy_receiver_spool_events_pending") == 0, 10,
                 "the checkpoint to pass the shipped events")
        promtool = shutil.which("promtool")
        if promtool is None:
            pytest.skip("promtool not installed (Debian package prometheus); tests/run.sh installs it")
        checked = subprocess.run([promtool, "check", "metrics"], input=exposition,
                                 capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        wait_for(lambda: receiver.metric("haproxy_receiver_output_up") == 1, 10,
                 "output_up relayed from the worker")
        status = cli("status", "--metrics", f"127.0.0.1:{receiver.metrics_port}")
        assert status.returncode == 0, status.stderr
        assert f"{udp}" in status.stdout and "3 messages" in status.stdout
        assert "output:    up; shipped 3" in status.stdout
    finally:
        assert receiver.stop() == 0


def _niceness(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[16])


def test_the_ship_process_yields_the_cpu_to_the_receiving_one(tmp_path: Path, es_url: str) -> None:
    receiver = Receiver(tmp_path, es_url).start()
    try:
        assert receiver.process is not None
        main = receiver.process.pid
        wait_for(lambda: len(group_members(main)) == 2, 30, "the ship process")
        [ship] = [pid for pid in group_members(main) if pid != main]
        assert _niceness(ship) == _niceness(main) + 10
    finally:
        assert receiver.stop() == 0


def test_status_of_an_instance_that_is_not_there_fails_clearly() -> None:
    result = cli("status", "--metrics", "127.0.0.1:1")
    assert result.returncode == 1
    assert "cannot reach http://127.0.0.1:1/metrics" in result.stderr


def test_one_instance_per_spool_directory_and_spool_commands_while_running(tmp_path: Path) -> None:
    unreachable = "http://127.0.0.1:9"  # nothing listens: events stay pending
    # at stop, nothing could be shipped in any grace: the default (10 s) was waited out in vain
    quick_stop = {"HAPROXY_RECEIVER_SERVICE__SHUTDOWN_GRACE": "0.5"}
    first = Receiver(tmp_path / "a", unreachable, spool_dir=tmp_path / "spool",
                     env=quick_stop).start()
    try:
        send_udp(first, [LINE] * 4)
        wait_for(lambda: first.metric("haproxy_receiver_events_spooled_total") == 4, 10, "spooled")
        stats = cli("spool", "stats", "--spool-dir", str(tmp_path / "spool"))
        assert stats.returncode == 0, stats.stderr
        assert json.loads(stats.stdout)["events_pending"] == 4
        dump = cli("spool", "dump", "--spool-dir", str(tmp_path / "spool"))
        received = [json.loads(line) for line in dump.stdout.splitlines()]
        assert [r["frame"] for r in received] == [LINE.decode()] * 4  # as it arrived
        assert {r["listener"] for r in received} == {f"udp://127.0.0.1:{first.udp_port}"}
        dump = cli("spool", "dump", "--documents", "--spool-dir", str(tmp_path / "spool"))
        documents = [json.loads(line) for line in dump.stdout.splitlines()]
        assert [d["url.path"] for d in documents] == ["/ops"] * 4  # what it becomes
        second = Receiver(tmp_path / "b", unreachable, spool_dir=tmp_path / "spool")
        with pytest.raises(AssertionError, match="receiver exited 1"):
            second.start()
        assert str(tmp_path / "spool") in second.stderr()
        assert "one instance per spool directory" in second.stderr()
        assert first.process is not None and f"pid {first.process.pid}" in second.stderr()
    finally:
        assert first.stop() == 0


def test_without_elasticsearch_documents_go_to_stdout(tmp_path: Path) -> None:
    receiver = Receiver(tmp_path, None).start()
    try:
        send_udp(receiver, [LINE])
        wait_for(lambda: receiver.stdout_path.read_bytes().count(b"\n") == 1, 10, "one JSON line")
    finally:
        assert receiver.stop() == 0
    document = flatten(json.loads(receiver.stdout_path.read_text()))  # written nested
    assert document["url.path"] == "/ops" and document["source.ip"] == "192.0.2.7"
    assert document["log.source.address"] == "127.0.0.1"
