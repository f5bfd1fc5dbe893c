"""SIGTERM while a sender streams over TCP at full speed (issue 17, item 2): what the sender's
kernel accepted is read, spooled and shipped exactly once, across a restart on the same spool.

The sender behaves as HAProxy's ring forwarder does: it sends as fast as the socket takes bytes,
watches the connection, and when the receiver half-closes it (FIN) it stops and closes its side.
It counts the bytes `send` accepted; those bytes, cut into lines, are what must come out.
The output is the stdout one (documents as JSON lines; no Elasticsearch needed), appended to by
both runs; `parse.keep_original` puts each line's body in `event.original` to compare them."""

from __future__ import annotations

import errno
import itertools
import select
import signal
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import Receiver, wait_for

HEADER = b"<134>Feb 26 05:17:05 drainhost haproxy[22]: "
ENV = {
    "HAPROXY_RECEIVER_PARSE__KEEP_ORIGINAL": "true",
    "HAPROXY_RECEIVER_SERVICE__SHUTDOWN_GRACE": "10",
}
SIGTERM_AFTER = 30_000  # lines received before the signal: mid-stream, the queues are full
PIECE = 65_000


def body(seq: int) -> bytes:
    return b'{"ci":"10.0.0.1","ST":200,"seq":%d,"pad":"drain-test-line"}' % seq


def stream() -> Iterator[bytes]:
    """The endless stream of lines, in pieces of 65,000 bytes that end anywhere in a line (so
    the sender usually stops in the middle of one)."""
    pending = b""
    for first in itertools.count(0, 1000):
        pending += b"".join(HEADER + body(seq) + b"\n" for seq in range(first, first + 1000))
        while len(pending) >= PIECE:
            yield pending[:PIECE]
            pending = pending[PIECE:]


@dataclass
class Sent:
    accepted: bytes = b""  # every byte `send` accepted, in order
    saw_fin: bool = False
    reset: bool = False


def stream_until_fin(sock: socket.socket, result: Sent) -> None:
    sock.setblocking(False)
    accepted: list[bytes] = []
    chunks = stream()
    pending = b""
    try:
        while True:
            readable, writable, _ = select.select([sock], [sock], [], 30)
            if not readable and not writable:
                raise AssertionError("the connection stalled for 30 s")
            if readable:
                try:
                    data = sock.recv(4096)
                except ConnectionResetError:
                    result.reset = True
                    return
                if not data:  # the receiver's FIN: stop sending, close our side
                    result.saw_fin = True
                    return
            if writable:
                if not pending:
                    pending = next(chunks)
                try:
                    sent = sock.send(pending)
                except BlockingIOError:
                    continue
                except OSError as error:
                    if error.errno in (errno.ECONNRESET, errno.EPIPE):
                        result.reset = True
                        return
                    raise
                accepted.append(pending[:sent])
                pending = pending[sent:]
    finally:
        result.accepted = b"".join(accepted)
        sock.close()


def test_sigterm_mid_stream_ships_every_accepted_line_exactly_once(tmp_path: Path) -> None:
    receiver = Receiver(tmp_path, None, udp=False, env=ENV)
    result = Sent()
    try:
        receiver.start()
        sock = socket.create_connection(("127.0.0.1", receiver.tcp_port))
        sender = threading.Thread(target=stream_until_fin, args=(sock, result), daemon=True)
        sender.start()
        wait_for(lambda: receiver.metric("haproxy_receiver_messages_received_total") >= SIGTERM_AFTER,
                 60, f"{SIGTERM_AFTER} lines received")
        assert receiver.stop(signal.SIGTERM) == 0
        sender.join(30)
        assert not sender.is_alive()

        receiver.start()  # the same spool: ship what the first run left there
        wait_for(lambda: receiver.metric("haproxy_receiver_spool_events_pending") == 0, 60,
                 "the spool shipped")
        assert receiver.stop() == 0
    finally:
        if receiver.process is not None and receiver.process.poll() is None:
            receiver.kill()

    *whole, tail = result.accepted.split(b"\n")
    assert len(whole) > SIGTERM_AFTER
    expected = Counter(line.removeprefix(HEADER).decode() for line in whole)
    # keep_original: every document carries its body; one not understood (the cut tail) in `message`
    shipped = Counter(str(doc.get("event.original", doc.get("message")))
                      for doc in receiver.stdout_documents())
    extra = shipped - expected
    missing = expected - shipped
    duplicated = sum(n - 1 for n in shipped.values() if n > 1)
    lost = sum(missing.values())
    assert (result.reset, lost, duplicated) == (False, 0, 0), (
        f"reset {result.reset}, {lost} of {len(whole)} lines the sender's kernel accepted lost, "
        f"{duplicated} duplicated")
    assert result.saw_fin, "the receiver closed without a FIN"
    if tail:  # the sender stopped in the middle of a line: kept, and counted as cut
        assert len(extra) == 1
        (original,) = extra
        assert tail.decode().rstrip().endswith(original)  # trailing blanks are not the body
        assert "1 cut at the end" in receiver.stderr(), receiver.stderr()
    else:
        assert not extra
