"""The worker protocol (receiver/workers/protocol.py) over a real socket pair, and the import
boundary it exists for: the receiving process loads neither the shipper nor the HTTP stack."""

from __future__ import annotations

import socket
import subprocess
import sys
from multiprocessing.connection import Connection

import pytest

from receiver.config import Settings
from receiver.metrics import WorkerMetrics
from receiver.spool.ledger import Ack, Lease
from receiver.workers import protocol
from receiver.workers.protocol import (
    Acknowledged,
    AskLease,
    Failed,
    Force,
    Granted,
    Released,
    Report,
    Sealed,
    Setup,
    Started,
    Stop,
)
from tests.support import REPO


def pair() -> tuple[Connection, Connection]:
    a, b = socket.socketpair()
    return Connection(a.detach()), Connection(b.detach())


def test_every_message_crosses_the_pair_unchanged() -> None:
    parent, child = pair()
    lease = Lease(segment=3, offset=42, ordinal=1, end=None)
    ack = Ack(segment=3, start=42, end=900, ordinal=9, shipped=7, dead=(("mapping", 1),), lost=1)
    to_child: list[protocol.ToChild] = [Setup(Settings(), 2), Granted(lease), Granted(None),
                                        Sealed(3, 900), Stop(5.0, True), Force()]
    for down in to_child:
        protocol.send(parent, down)
        assert protocol.receive_in_child(child) == down
    families = list(WorkerMetrics().registry.collect())
    to_parent: list[protocol.ToParent] = [Started(), Failed("output", "no"), AskLease(),
                                          Acknowledged(ack), Released(3, 10, 900),
                                          Report(families, 0.5), Report(None, 0.0)]
    for up in to_parent:
        protocol.send(child, up)
        got = protocol.receive_in_parent(parent)
        assert type(got) is type(up)
        if not isinstance(up, Report):  # metric families compare by identity
            assert got == up


def test_a_message_in_the_wrong_direction_is_refused() -> None:
    parent, child = pair()
    protocol.send(parent, Started())  # what a bug would do
    with pytest.raises(protocol.ProtocolError):
        protocol.receive_in_child(child)
    child.send(("ack", 1))  # the old untyped tuple
    with pytest.raises(protocol.ProtocolError):
        protocol.receive_in_parent(parent)


IMPORTS = """
import sys
import receiver.service, receiver.workers.pool
print(sorted(m for m in ("pycurl", "receiver.ship.shipper", "receiver.ship.http",
                         "receiver.workers.child", "confluent_kafka") if m in sys.modules))
"""


def test_the_receiving_process_loads_no_shipper_and_no_http_stack() -> None:
    done = subprocess.run([sys.executable, "-c", IMPORTS], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
