"""Slowloris (issue 27, item 7): connections that drip bytes without ever ending a line, and TLS
connections that never send a ClientHello, fill the connection limits of a real receiver; a
legitimate sender still gets every line through, from a new address and from one of the
attackers' (per-source limit), and a stalled message ends its connection after
`listen.line_timeout` with its part kept. Attackers bind distinct loopback addresses
(127.0.0.x). Documents go to stdout; the counters account for every message."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import Receiver, tls_files, wait_for

REFUSED = "haproxy_receiver_connections_refused_total"
LINE = b"<134>Nov 25 18:21:18 haproxy[7]: {\"ci\":\"10.0.0.1\",\"who\":\"%s\",\"n\":%d}\n"


def connect_from(source: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


@contextmanager
def dripping(sockets: list[socket.socket], payload: bytes | None) -> Iterator[None]:
    """Send `payload` (one byte, never a line end) on every socket every 0.2 s until the end of
    the block; `None`: send nothing at all (a TLS client that never says hello)."""
    stop = threading.Event()

    def drip() -> None:
        while not stop.wait(0.2):
            for sock in sockets:
                if sock.fileno() < 0 or not payload:
                    continue
                with contextlib.suppress(OSError):  # closed by the receiver: done
                    sock.send(payload)

    thread = threading.Thread(target=drip, daemon=True)
    if payload is not None:
        for sock in sockets:
            sock.send(payload)  # every attacker has begun a message before anything else
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(5)
        for sock in sockets:
            sock.close()


def send_lines(sock: socket.socket, who: str, count: int) -> None:
    """Send, half-close, and read until the receiver closes: it read every line."""
    sock.sendall(b"".join(LINE % (who.encode(), n) for n in range(count)))
    sock.shutdown(socket.SHUT_WR)
    while sock.recv(4096):
        pass


def admitted_and_sent(source: str, port: int, who: str, count: int) -> bool:
    """One attempt: True when the receiver admitted the connection and read the lines; False
    when it refused it (a reset before or while sending)."""
    try:
        with connect_from(source, port) as sock:
            send_lines(sock, who, count)
        return True
    except (ConnectionResetError, BrokenPipeError):
        return False


def settled(receiver: Receiver, messages: int) -> None:
    wait_for(lambda: receiver.metric("haproxy_receiver_messages_received_total") == messages
             and receiver.metric("haproxy_receiver_spool_events_pending") == 0, 60,
             f"{messages} messages received and shipped")
    inflow, outflow = receiver.flows()
    assert (inflow, outflow) == (messages, messages)


def stdout_lines(receiver: Receiver, who: str) -> int:
    return sum(doc.get("haproxy.who") == who for doc in receiver.stdout_documents())


def test_dripping_connections_do_not_lock_senders_out(tmp_path: Path) -> None:
    receiver = Receiver(tmp_path, None, udp=False, env={
        "HAPROXY_RECEIVER_LISTEN__MAX_CONNECTIONS": "30",
        "HAPROXY_RECEIVER_LISTEN__MAX_CONNECTIONS_PER_SOURCE": "10",
        "HAPROXY_RECEIVER_LISTEN__EVICT_IDLE_AFTER": "1",
        "HAPROXY_RECEIVER_LISTEN__LINE_TIMEOUT": "0"})  # the eviction alone
    receiver.start()
    try:
        attackers = [connect_from(f"127.0.0.{2 + i // 10}", receiver.tcp_port) for i in range(30)]
        with dripping(attackers, b"x"):
            wait_for(lambda: receiver.metric("haproxy_receiver_connections_open") == 30, 30,
                     "30 dripping connections")
            # both limits reached: an attacker's address (per source), then a new one
            wait_for(lambda: admitted_and_sent("127.0.0.2", receiver.tcp_port, "attacker", 100),
                     60, "a sender sharing an attacker's address admitted")
            wait_for(lambda: receiver.metric("haproxy_receiver_connections_open") == 29, 30,
                     "the sender sharing an attacker's address done")
            held = connect_from("127.0.0.2", receiver.tcp_port)  # 30 open again, silent
            wait_for(lambda: receiver.metric("haproxy_receiver_connections_open") == 30, 30,
                     "30 connections again")
            wait_for(lambda: admitted_and_sent("127.0.0.9", receiver.tcp_port, "new", 200), 60,
                     "a sender from a new address admitted")
            held.close()
        # each dripping connection ends as one message of x's (evicted: cut; else at our close;
        # the silent one as none)
        settled(receiver, 200 + 100 + 30)
        assert receiver.metric(REFUSED, reason="evicted_max_connections") >= 1
        assert receiver.metric(REFUSED, reason="evicted_per_source") >= 1
        assert receiver.metric(REFUSED, reason="line_timeout") == 0
        assert receiver.stop() == 0
        assert (stdout_lines(receiver, "new"), stdout_lines(receiver, "attacker")) == (200, 100)
    finally:
        if receiver.process is not None and receiver.process.poll() is None:
            receiver.kill()


def test_a_stalled_message_ends_its_connection_and_is_kept(tmp_path: Path) -> None:
    receiver = Receiver(tmp_path, None, udp=False, env={
        "HAPROXY_RECEIVER_LISTEN__LINE_TIMEOUT": "1"})
    receiver.start()
    try:
        attackers = [connect_from(f"127.0.0.{2 + i % 2}", receiver.tcp_port) for i in range(20)]
        with dripping(attackers, b"y"):
            wait_for(lambda: receiver.metric(REFUSED, reason="line_timeout") == 20, 60,
                     "every stalled connection ended")
            wait_for(lambda: receiver.metric("haproxy_receiver_connections_open") == 0, 30,
                     "closed")
        settled(receiver, 20)
        assert receiver.metric("haproxy_receiver_messages_truncated_total") == 20
        assert receiver.metric(REFUSED, reason="line_timeout") == 20
        assert receiver.stop() == 0
    finally:
        if receiver.process is not None and receiver.process.poll() is None:
            receiver.kill()


def test_tls_connections_without_a_hello_do_not_lock_senders_out(tmp_path: Path) -> None:
    cert, key, ca = tls_files(tmp_path)
    port = Receiver(tmp_path, None).tcp_port  # a free port for the TLS listener
    receiver = Receiver(tmp_path, None, udp=False, env={
        "HAPROXY_RECEIVER_LISTEN__TLS": f"127.0.0.1:{port}",
        "HAPROXY_RECEIVER_LISTEN__TLS_CERT": str(cert),
        "HAPROXY_RECEIVER_LISTEN__TLS_KEY": str(key),
        "HAPROXY_RECEIVER_LISTEN__MAX_CONNECTIONS": "20",
        "HAPROXY_RECEIVER_LISTEN__MAX_CONNECTIONS_PER_SOURCE": "10"})
    receiver.start()
    context = ssl.create_default_context(cafile=str(ca))
    try:
        silent = [connect_from(f"127.0.0.{2 + i // 10}", port) for i in range(20)]
        with dripping(silent, None):
            wait_for(lambda: receiver.metric("haproxy_receiver_connections_open") == 20, 30,
                     "20 connections without a ClientHello")
            # the first attempt is admitted: a connection still in its handshake gives way
            with context.wrap_socket(connect_from("127.0.0.9", port),
                                     server_hostname="127.0.0.1") as sock:
                send_lines(sock, "tls", 100)
            # the others end at the handshake timeout
            wait_for(lambda: receiver.metric(REFUSED, reason="tls_handshake_failed") == 19, 60,
                     "19 handshakes timed out")
        settled(receiver, 100)
        assert receiver.metric(REFUSED, reason="evicted_max_connections") == 1
        assert receiver.metric(REFUSED, reason="tls_handshake_failed") == 19
        assert receiver.stop() == 0
        assert stdout_lines(receiver, "tls") == 100
    finally:
        if receiver.process is not None and receiver.process.poll() is None:
            receiver.kill()
