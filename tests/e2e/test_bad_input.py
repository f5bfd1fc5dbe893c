"""Bad input (issue 3): binary garbage over UDP and TCP, a 64 KiB datagram, a TCP line without a
newline for megabytes, an absurd octet-count: the real receiver stays up, its memory stays
bounded, and every piece of garbage is either a document (the bytes as `message`, tagged as a
parse failure) or counted as cut (`messages_truncated_total`), never silently lost."""

from __future__ import annotations

import base64
import json
import random
import socket
from pathlib import Path
from typing import Any

from tests.support import (
    Receiver,
    group_members,
    http_get_text,
    rss_bytes,
    search_all,
    wait_for,
)

MIB = 1024 * 1024
FAILURE_TAG = "_haproxy_parse_failure"
MAX_DATAGRAM = 65507  # the largest UDP payload over IPv4
ENDLESS = 8 * MIB
VALID = (b'<134>Feb 26 05:17:05 badhost haproxy[22]: {"ci":"10.0.0.1","cp":43174,'
         b'"t":"26/Feb/2020:05:17:05.438","ft":"fe_http","b":"be_app","s":"app1","ST":200,'
         b'"r":"GET /after HTTP/1.1","seq":%d}\n')


def receiver_rss(receiver: Receiver) -> int:
    """Resident memory of the receiver and any process it started."""
    assert receiver.process is not None
    return sum(rss_bytes(pid) for pid in group_members(receiver.process.pid))


def healthy(receiver: Receiver) -> bool:
    assert receiver.process is not None and receiver.process.poll() is None, receiver.stderr()
    return http_get_text(f"http://127.0.0.1:{receiver.metrics_port}/healthz").strip() == "ok"


def text_of(document: dict[str, Any]) -> str:
    if document.get("error.type") == "binary":  # kept base64-encoded, once
        return base64.b64decode(document["event.original"]).decode("utf-8", "backslashreplace")
    return str(document.get("message") or document.get("event.original") or "")


def stream(port: int, *chunks: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        for chunk in chunks:
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(1)  # wait for the receiver to close its side: it read everything


def test_garbage_is_kept_or_counted_and_never_stops_the_receiver(tmp_path: Path, es_url: str) -> None:
    rng = random.Random(3)
    receiver = Receiver(tmp_path, es_url).start()
    try:
        rss_before = receiver_rss(receiver)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * MIB)
            for n in range(200):
                garbage = b"garbage-%d " % n + rng.randbytes(rng.randint(1, 2000))
                udp.sendto(garbage, ("127.0.0.1", receiver.udp_port))
            udp.sendto(b"X" * MAX_DATAGRAM, ("127.0.0.1", receiver.udp_port))
        assert healthy(receiver)

        tcp = receiver.tcp_port
        stream(tcp, b"".join(b"tcp-garbage-%d " % n + rng.randbytes(300).replace(b"\n", b"") + b"\n"
                             for n in range(300)))
        stream(tcp, b"<134>" + b"A" * ENDLESS, b"\n" + VALID % 1)  # megabytes without a newline
        stream(tcp, b"999999999 " + rng.randbytes(MIB))  # an octet count far beyond the limit
        stream(tcp, bytes(MIB) + b"\n" + VALID % 2)  # a megabyte of NUL bytes
        assert healthy(receiver)

        wait_for(lambda: receiver.metric("haproxy_receiver_messages_received_total", transport="udp")
                 == 201, 30, "every datagram received")
        truncated = receiver.metric("haproxy_receiver_messages_truncated_total")
        assert truncated >= 3, f"cut messages not counted: {truncated}"
        received = receiver.metric("haproxy_receiver_messages_received_total")
        wait_for(lambda: receiver.metric("haproxy_receiver_spool_events_pending") == 0, 60,
                 "everything shipped")
        assert receiver.metric("haproxy_receiver_events_spooled_total") == received
        wait_for(lambda: receiver.metric("haproxy_receiver_events_shipped_total") == received, 10,
                 "the shipper's counters to reach the endpoint")
        shipped = received
        dead = receiver.metric("haproxy_receiver_events_dead_lettered_total")
        growth = receiver_rss(receiver) - rss_before
        assert growth < 50 * MIB, f"memory grew by {growth / MIB:.1f} MiB"
        assert healthy(receiver)
        assert receiver.stop() == 0
    finally:
        if receiver.process is not None and receiver.process.poll() is None:
            receiver.kill()

    documents = [hit["_source"] for hit in search_all(es_url)]
    assert len(documents) + dead == shipped, "events shipped but neither indexed nor dead-lettered"
    by_prefix = {text_of(doc).split(" ", 1)[0]: doc for doc in documents}
    for name in [f"garbage-{n}" for n in range(200)] + [f"tcp-garbage-{n}" for n in range(300)]:
        assert name in by_prefix, f"{name} was not kept"
        assert FAILURE_TAG in by_prefix[name].get("tags", []), by_prefix[name]
    texts = [text_of(doc) for doc in documents]
    assert any(text == "X" * MAX_DATAGRAM for text in texts), "the 64 KiB datagram was not kept whole"
    assert any(text.startswith("A" * 1000) for text in texts), "the endless line was not kept (cut)"
    seqs = {doc.get("haproxy.seq") for doc in documents}
    assert {1, 2} <= seqs, "a connection stopped working after bad input"


def test_a_flood_of_64_kib_garbage_datagrams_costs_its_size_once(tmp_path: Path) -> None:
    # Issue 17's attack: 2,000 datagrams of b"\x01" * 65507 (131 MB on the wire) once became
    # 1.09 GB of spool (stored twice, each escaped) and left the receiving process at 492 MiB.
    receiver = Receiver(tmp_path, None, tcp=False, env={
        "HAPROXY_RECEIVER_ELASTICSEARCH__BATCH_AGE": "0.05"}).start()
    assert receiver.process is not None
    main = receiver.process.pid
    try:
        baseline = rss_bytes(main)
        datagram = b"\x01" * MAX_DATAGRAM
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for n in range(2000):
                udp.sendto(datagram, ("127.0.0.1", receiver.udp_port))
                if n % 100 == 99:  # at the pace the kernel buffer allows: none may be dropped
                    wait_for(lambda n=n: receiver.metric(  # type: ignore[misc]
                        "haproxy_receiver_messages_received_total") >= n - 300, 30, "reading")
        wait_for(lambda: receiver.metric("haproxy_receiver_events_spooled_total") == 2000, 60,
                 "2,000 datagrams spooled")
        spool = sum(p.stat().st_size for p in receiver.spool_dir.glob("*.seg"))
        peak = rss_bytes(main, "VmHWM")
        # Each message is on disk once, as received: 65,507 bytes and ~60 of record around it.
        assert spool < 2000 * (MAX_DATAGRAM + 200) + 64 * 1024, f"spool of {spool} bytes"
        assert peak - baseline < 48 * MIB, f"receiving took {(peak - baseline) / MIB:.0f} MiB"
        wait_for(lambda: receiver.metric("haproxy_receiver_spool_events_pending") == 0, 120,
                 "everything shipped")
        workers = [pid for pid in group_members(main) if pid != main]
        for pid in workers:  # shipments are bounded by elasticsearch.batch_bytes
            worker_peak = rss_bytes(pid, "VmHWM")
            assert worker_peak < 160 * MIB, f"a worker peaked at {worker_peak / MIB:.0f} MiB"
        assert receiver.stop() == 0
    finally:
        if receiver.process is not None and receiver.process.poll() is None:
            receiver.kill()
    documents = [json.loads(line) for line in receiver.stdout_path.read_bytes().splitlines()]
    assert len(documents) == 2000
    sizes = sorted(len(json.dumps(doc)) for doc in documents)
    assert sizes[-1] < 8 * MAX_DATAGRAM, f"a document of {sizes[-1]} bytes for 64 KiB received"
