"""The ledger as a worker process sees it: in the receiving process, across the socket pair."""

from __future__ import annotations

import threading
from multiprocessing.connection import Connection

from receiver.spool.ledger import Ack, Lease
from receiver.spool.reader import LeaseNews
from receiver.workers import protocol
from receiver.workers.protocol import Acknowledged, AskLease, Granted, Released, Sealed


class RemoteLedger(LeaseNews):
    """The worker's `LedgerClient` (spool/reader.py): the ledger is in the parent, across the
    socket pair. Leases and seals arrive in the worker's main thread (`on_message`)."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self._conn = conn
        self._send_lock = threading.Lock()
        self._asked = False  # a request the parent has not granted yet
        self._answered = False  # ... but answered: it grants one later

    def send(self, message: protocol.ToParent) -> None:
        with self._send_lock:
            protocol.send(self._conn, message)

    def on_message(self, message: Granted | Sealed) -> None:
        if isinstance(message, Sealed):
            self.sealed(message.segment, message.end)
            return
        with self._news:
            if message.lease is None:
                self._answered = True
            else:
                self._granted.append(message.lease)
                self._asked = False
            self._news.notify_all()

    def lease(self) -> Lease | None:
        with self._news:
            if self._granted:
                return self._granted.pop(0)
            if self._asked:
                return None
            self._asked, self._answered = True, False
        self.send(AskLease())
        with self._news:  # the parent answers at once
            self._news.wait_for(lambda: bool(self._granted) or self._answered, 5.0)
            return self._granted.pop(0) if self._granted else None

    def acknowledge(self, ack: Ack) -> None:
        self.send(Acknowledged(ack))

    def release(self, segment: int, read: int, offset: int) -> None:
        self._forget(segment)
        self.send(Released(segment, read, offset))
