"""The messages between the receiving process and its workers: one frozen type per message, and
one `send`/`receive` pair that every message goes through.

They travel pickled (multiprocessing's `Connection`) over a socket pair per worker, and only
between two interpreters of the same installation, so no version field is needed. The parent
says `Setup` once; the child answers `Started` or `Failed`, then asks for leases (`AskLease`,
answered at once by `Granted`, with no lease when none is free: one is granted later), reports
delivered batches (`Acknowledged`), segments it lets go (`Released`) and, every
`SNAPSHOT_INTERVAL`, its metrics (`Report`). The parent also says where a segment the child
reads ends (`Sealed`) and, at the end, `Stop` (then perhaps `Force`, a second signal).
"""

from __future__ import annotations

from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Literal, TypeAlias

from prometheus_client import Metric

from receiver.config import Settings
from receiver.spool.ledger import Ack, Lease

SNAPSHOT_INTERVAL = 1.0  # a scrape every 15 s or more sees at most this much lag


# --- parent -> child ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Setup:
    """The first message: what the worker runs with, and its number in the pool."""

    settings: Settings
    number: int


@dataclass(frozen=True, slots=True)
class Granted:
    """A segment leased to the worker; `None`: none is free now, one is granted later."""

    lease: Lease | None


@dataclass(frozen=True, slots=True)
class Sealed:
    """The records of `segment` (which the worker reads) end at `end` (the ledger's word, when a
    full disk left no room for the footer)."""

    segment: int
    end: int


@dataclass(frozen=True, slots=True)
class Stop:
    """Ship what is spooled (`catch_up`; a reload: only what is held) within `grace` seconds."""

    grace: float
    catch_up: bool


@dataclass(frozen=True, slots=True)
class Force:
    """A second stop signal: give up waiting for deliveries now."""


# --- child -> parent ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Started:
    """The worker built its reader, output and shipper; it asks for leases next."""


@dataclass(frozen=True, slots=True)
class Failed:
    """The worker could not start; `kind` picks the error the parent raises."""

    kind: Literal["output", "spool", "other"]
    message: str


@dataclass(frozen=True, slots=True)
class AskLease:
    """The worker's reader wants a segment."""


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """A delivered (or dead-lettered) batch."""

    ack: Ack


@dataclass(frozen=True, slots=True)
class Released:
    """The worker let go of `segment`, having read up to `offset` (`read` records)."""

    segment: int
    read: int
    offset: int


@dataclass(frozen=True, slots=True)
class Report:
    """What the metrics counted (`None`: nothing changed since the last report) and how long the
    shipper's loop had been still (the parent's wedge watch)."""

    families: list[Metric] | None
    loop_silence: float


ToChild: TypeAlias = Setup | Granted | Sealed | Stop | Force
ToParent: TypeAlias = Started | Failed | AskLease | Acknowledged | Released | Report
Message: TypeAlias = ToChild | ToParent
_TO_CHILD = (Setup, Granted, Sealed, Stop, Force)
_TO_PARENT = (Started, Failed, AskLease, Acknowledged, Released, Report)


class ProtocolError(RuntimeError):
    """The other end sent something that is not one of its messages (a bug, never input)."""


def send(conn: Connection, message: Message) -> None:
    conn.send(message)


def receive_in_child(conn: Connection) -> ToChild:
    """The next message from the parent; raises EOFError/OSError when the parent is gone."""
    message = conn.recv()
    if not isinstance(message, _TO_CHILD):
        raise ProtocolError(f"a worker received {message!r}, not a message for it")
    return message


def receive_in_parent(conn: Connection) -> ToParent:
    """The next message from a worker; raises EOFError/OSError when the worker is gone."""
    message = conn.recv()
    if not isinstance(message, _TO_PARENT):
        raise ProtocolError(f"the receiver got {message!r} from a worker, not a message for it")
    return message
