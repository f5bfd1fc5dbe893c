"""Restart (issue 3): Elasticsearch is down while events arrive over UDP and TCP, the receiver
is stopped (SIGTERM, exit 0) and started again, Elasticsearch comes back: every event is indexed
exactly once. Elasticsearch being down is a stopped TCP proxy in front of the in-memory server."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from receiver.event import Received, decode
from receiver.spool.format import FRAME_SIZE, HEADER_SIZE, iter_records
from tests.support import REPO, Receiver, TcpProxy, search_sorted, wait_for

PER_TRANSPORT = 300
ENV = {
    "HAPROXY_RECEIVER_SERVICE__SHUTDOWN_GRACE": "1",  # Elasticsearch is down: do not wait 10 s
    "HAPROXY_RECEIVER_ELASTICSEARCH__RETRY_INITIAL": "0.05",
    "HAPROXY_RECEIVER_ELASTICSEARCH__RETRY_MAX": "0.3",
}


def line(transport: str, seq: int) -> bytes:
    return (
        b'<134>Feb 26 05:17:05 restarthost haproxy[22]: {"ci":"10.0.0.1","cp":43174,'
        b'"t":"26/Feb/2020:05:17:05.438","ft":"fe_http","b":"be_app","s":"app1","Tt":92,'
        b'"ST":200,"r":"GET /item HTTP/1.1","via":"%s","seq":%d}\n' % (transport.encode(), seq)
    )


def send(receiver: Receiver, first: int) -> range:
    """PER_TRANSPORT datagrams over UDP, then as many lines over one TCP connection."""
    udp = range(first, first + PER_TRANSPORT)
    tcp = range(udp.stop, udp.stop + PER_TRANSPORT)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for seq in udp:
            sock.sendto(line("udp", seq), ("127.0.0.1", receiver.udp_port))
    with socket.create_connection(("127.0.0.1", receiver.tcp_port)) as sock:
        sock.sendall(b"".join(line("tcp", seq) for seq in tcp))
    return range(first, tcp.stop)


def spool_stats(spool_dir: Path) -> dict[str, object]:
    """`haproxy-receiver spool stats`, the operator's view (safe while stopped or running)."""
    done = subprocess.run([sys.executable, "-m", "receiver", "spool", "stats", "--spool-dir",
                           str(spool_dir)], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    stats: dict[str, object] = json.loads(done.stdout)
    return stats


def test_events_received_while_elasticsearch_is_down_survive_a_restart_exactly_once(
    tmp_path: Path, es_url: str
) -> None:
    proxy = TcpProxy(es_url)  # not started: Elasticsearch is unreachable
    receiver = Receiver(tmp_path, proxy.url, env=ENV)
    try:
        receiver.start()
        first = send(receiver, 0)
        wait_for(lambda: receiver.metric("haproxy_receiver_events_spooled_total") == len(first), 30,
                 "every event spooled")
        assert receiver.metric("haproxy_receiver_messages_received_total", transport="udp") == PER_TRANSPORT
        assert receiver.metric("haproxy_receiver_events_shipped_total") == 0
        started = time.monotonic()
        assert receiver.stop() == 0
        assert time.monotonic() - started < 8, "shutdown_grace = 1 s was not honoured"
        assert spool_stats(receiver.spool_dir)["events_pending"] == len(first)

        receiver.start()  # Elasticsearch still down: the spool keeps everything, more arrives
        second = send(receiver, first.stop)
        wait_for(lambda: receiver.metric("haproxy_receiver_events_spooled_total") == len(second), 30,
                 "the second round spooled")
        assert receiver.metric("haproxy_receiver_spool_events_pending") == len(first) + len(second)
        assert receiver.stop() == 0

        receiver.start()
        proxy.start()  # Elasticsearch is back
        wait_for(lambda: receiver.metric("haproxy_receiver_spool_events_pending") == 0, 60,
                 "the spool to drain into the index")
        total = len(first) + len(second)  # the shipper may count in a child process: a moment later
        wait_for(lambda: receiver.metric("haproxy_receiver_events_shipped_total") == total, 10,
                 "every event counted shipped, once")
        assert receiver.stop() == 0
        assert spool_stats(receiver.spool_dir)["events_pending"] == 0
    finally:
        proxy.close()
        if receiver.process is not None and receiver.process.poll() is None:
            receiver.kill()

    rows = search_sorted(es_url, "haproxy.seq", ["haproxy.seq", "haproxy.via"])
    numbers = [int(row["haproxy.seq"]) for row in rows]
    assert len(numbers) == len(set(numbers)), "an event was indexed twice"
    assert numbers == list(range(second.stop))
    assert {row["haproxy.via"] for row in rows} == {"udp", "tcp"}


# --- recovery (issue 4): a damaged spool directory never stops the start ---------------------

RECOVERY_ENV = {
    **ENV,
    "HAPROXY_RECEIVER_SPOOL__SEGMENT_BYTES": "64KiB",  # several segments to damage
    "HAPROXY_RECEIVER_SPOOL__MAX_RECORD_BYTES": "16KiB",
    "HAPROXY_RECEIVER_LISTEN__MAX_MESSAGE_BYTES": "8KiB",
}


def send_tcp(receiver: Receiver, numbers: range) -> None:
    with socket.create_connection(("127.0.0.1", receiver.tcp_port)) as sock:
        sock.sendall(b"".join(line("tcp", seq) for seq in numbers))


def records(segment: Path) -> list[tuple[int, int, int]]:
    """(sequence number, frame offset, frame end) of each valid record of a segment file."""
    data = segment.read_bytes()
    found = []
    for frame in iter_records(data, HEADER_SIZE):
        record = decode(frame.payload)
        assert isinstance(record, Received)  # the spool holds messages as received
        seq = re.search(rb'"seq":(\d+)', record.frame)
        assert seq is not None
        found.append((int(seq.group(1)), frame.offset, frame.end))
    return found


def flip_a_byte(segment: Path, record: tuple[int, int, int]) -> bytes:
    """Damage one record's payload in place; returns the damaged frame's bytes."""
    data = bytearray(segment.read_bytes())
    _, start, end = record
    data[(start + FRAME_SIZE + end) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))
    return bytes(data[start:end])


def test_a_damaged_spool_starts_ships_the_valid_events_and_quarantines_the_rest(
    tmp_path: Path, es_url: str
) -> None:
    proxy = TcpProxy(es_url).start()
    receiver = Receiver(tmp_path, proxy.url, env=RECOVERY_ENV)
    spool = receiver.spool_dir
    shipped, pending = range(0, 200), range(200, 800)
    try:
        receiver.start()
        send_tcp(receiver, shipped)
        wait_for(lambda: receiver.metric("haproxy_receiver_events_shipped_total") == len(shipped), 60,
                 "the first events shipped (a checkpoint exists)")
        proxy.stop()
        send_tcp(receiver, pending)
        wait_for(lambda: receiver.metric("haproxy_receiver_events_spooled_total") == 800, 30,
                 "every event spooled")
        receiver.kill()  # the last segment stays open: no footer, recovery must scan it

        segments = sorted(spool.glob("*.seg"))
        assert len(segments) >= 4, [s.name for s in segments]
        closed, last = segments[-2], segments[-1]
        lost: set[int] = set()
        damaged_frames: list[bytes] = []
        for segment in (closed, last):
            victim = [record for record in records(segment) if record[0] in pending][3]
            lost.add(victim[0])
            damaged_frames.append(flip_a_byte(segment, victim))
        _, start, end = records(last)[-1]
        with last.open("ab") as handle:  # a torn tail: half of a record, as after a power cut
            handle.write(last.read_bytes()[start : start + FRAME_SIZE + (end - start - FRAME_SIZE) // 2])
        number = int(last.stem)
        empty = spool / f"{number + 1:012d}.seg"
        empty.write_bytes(b"")
        cut_header = spool / f"{number + 2:012d}.seg"
        cut_header.write_bytes(segments[0].read_bytes()[:20])
        (spool / "ledger").unlink()  # and the acknowledged prefixes are lost too

        receiver.start()
        proxy.start()
        wait_for(lambda: receiver.metric("haproxy_receiver_spool_events_pending") == 0, 60,
                 "every valid event shipped")
        # records lost: two flipped, one torn; a cut header and an empty file held none
        wait_for(lambda: receiver.metric("haproxy_receiver_spool_corrupt_records_total") == 3, 10,
                 f"3 lost records counted ({receiver.stderr_path})")
        assert receiver.stop() == 0
    finally:
        proxy.close()
        if receiver.process is not None and receiver.process.poll() is None:
            receiver.kill()

    assert not empty.exists() and not cut_header.exists()
    quarantined = [path.read_bytes() for path in (spool / "quarantine").iterdir()]
    assert len(quarantined) == 4
    for frame in damaged_frames:
        assert any(frame in data for data in quarantined), "a damaged record is not in quarantine/"
    rows = search_sorted(es_url, "haproxy.seq", ["haproxy.seq"])
    numbers = [int(row["haproxy.seq"]) for row in rows]
    assert len(numbers) == len(set(numbers)), "an event was indexed twice (checkpoint lost)"
    assert set(numbers) == set(range(800)) - lost
