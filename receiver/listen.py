"""Listeners: the sockets HAProxy's `log` directive sends to, and the loops that read them.

- Datagram sockets (UDP over IPv4/IPv6, Unix datagram) are read by one thread each, with a
  blocking-style loop: wait for readability, then drain the socket without blocking (up to
  `DATAGRAM_BATCH` datagrams) and hand the whole batch to `Ingest`. A thread per socket costs
  ~3 µs per datagram here, a third of asyncio's datagram protocol (measured on a 2-vCPU VM).
- Stream sockets (TCP, TLS, Unix stream) share one asyncio loop in one thread: each read is cut
  into messages by `StreamFramer` and handed over in one batch; after a small read a
  connection waits briefly for more (`STREAM_COALESCE_BELOW`), as datagram readers do. When
  the spool is full under the `block` policy, `FlowControl` pauses reading every connection
  until there is room again, so senders feel TCP backpressure instead of losing data.
  Connection limits cannot be exhausted by idle connections: the one idle longest gives way
  to a newcomer (`StreamServer.admit`).
  Idle means no complete message, so bytes dripped without a line end do not hold a slot
  either; nor does a TLS handshake that never completes (it gives way first, and ends after
  `listen.tls_handshake_timeout`); a message incomplete after `listen.line_timeout` ends its
  connection (the part kept, marked cut).

All sockets are bound by `open_listeners()` before anything starts, so an address in use is
reported at start with the setting that named it; stream sockets listen with the kernel's
maximum backlog unless `listen.backlog` says otherwise.

Stop (`stop(deadline)`) loses nothing the kernel already took: datagram readers read their
socket's queue until it is empty; stream connections, including those still in the listen
backlog, are half-closed and read until their sender closes (HAProxy does at once), all within
the deadline; a partial last message is kept and counted as cut. Only a sender that ignores
the half-close and sends until the deadline loses what its own socket still held.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import fcntl
import functools
import ipaddress
import logging
import os
import select
import socket
import ssl
import stat
import struct
import termios
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from receiver.addresses import family_of, format_host_port, parse_host_port
from receiver.config import ListenSettings
from receiver.event import Peer
from receiver.frame import StreamFramer
from receiver.metrics import ListenMetrics
from receiver.ratelimit import RateLimitedLog
from receiver.systemd import Heartbeat

log = logging.getLogger(__name__)

DATAGRAM_BATCH = 512
# ... or this many bytes, whichever comes first: 512 HAProxy lines are ~200 KB, 512 datagrams of
# 64 KiB garbage would be 32 MiB held at once (and kept by malloc afterwards).
DATAGRAM_BATCH_BYTES = 1024 * 1024
# A drain of fewer datagrams than this waits for company before the next. It is what one wait
# (COALESCE_WAIT) gathers at the rate seen (below ~2,500 datagrams/s): below it, waiting again
# gathers about as many, ~100-250 KB of HAProxy lines, which `listen.udp_receive_buffer` holds;
# above it the reader drains as they come. (At 16, a 2,000/s sender got a wait, a drain of 40,
# a drain of 1 right after it, another wait: two wake-ups per wait instead of one.)
COALESCE_BELOW = 256
# At everyday rates each wake-up costs more than the datagrams it reads (on the 2-vCPU VM of
# the benchmarks, ~0.3-0.7 ms of the receiving process's CPU a wake-up, against a few µs a
# message): waiting 20 ms for company cut the receiver's CPU at 2,000 datagrams/s from
# 3.7-3.8 s to 2.4-2.7 s per 60,000 (peerbench udp-2k, side by side), and 50 ms (at most 20
# wake-ups a second) cut it again. A wake-up still cost ~0.3 ms whatever it read (a cold
# interpreter after a sleep, on a machine shared with other work), against ~2 µs a message, so
# 100 ms (at most 10 wake-ups a second) cut the stream thread's CPU at 2,000 lines/s by another
# third (bench/everyday_bench.py, side by side), for latency the 1 s batch budget dwarfs: the
# wait adds at most 100 ms to an event's, and a shipment still goes `batch_age` after its
# oldest event was spooled. Under load drains are large and nothing waits.
COALESCE_WAIT = 0.1
# Stream connections wait for company too: a read this small (a few lines: a host logging a few
# hundred lines a second over TCP gets one line a read) pauses the connection for
# COALESCE_WAIT, so the next read takes what arrived meanwhile in one wake-up, one framing and
# one spool append. Under load reads are large and never wait; while waiting, the kernel's
# socket buffer holds the lines and TCP flow control covers the rest.
STREAM_COALESCE_BELOW = 16 * 1024
# Once waiting, a connection keeps waiting while a wait gathers less than this, and less than a
# quarter of the socket's receive buffer (so that what a wait gathers is never what the buffer
# held back: a flood is not paced by waits): it is read at the end of each wait, with no
# wake-up of its own. At 2,000 lines/s of ~400 bytes a wait gathers ~80 KB; when a read of
# that much ended the waiting (as one of STREAM_COALESCE_BELOW or more did), the next
# line came in a wake-up of its own right after, then a wait: two wake-ups a wait, and two
# changes of the event loop's interest list (pause, resume) each.
STREAM_KEEP_WAITING_BELOW = 256 * 1024
MAX_DATAGRAM = 65535 + 1  # one more than UDP allows, so nothing is ever cut by recvfrom
STREAM_READ = 256 * 1024
UNIX_SOCKET_MODE = 0o666  # HAProxy runs as its own user; the socket must be writable by it
_NO_PEER: Peer = (None, None)  # Unix sockets: no address
SOMAXCONN_FILE = "/proc/sys/net/core/somaxconn"
# Ending a connection gracefully (StreamConnection): HAProxy 2.6 answered the receiver's FIN by
# closing within 10 ms (and reconnected at once); a sender silent for DRAIN_QUIET after the FIN,
# with nothing queued, is done. CLOSE_WAIT bounds an idle or evicted connection's close.
DRAIN_QUIET = 0.5
CLOSE_WAIT = 5.0
STOP_WAIT = 5.0  # stop deadline when the caller gives none
STOP_MARGIN = 2.0  # for the last reads after the deadline and the loop's own end
HOUSEKEEPING_EVERY = 0.05  # while reading is paused or connections are being ended
QUIET_HOUSEKEEPING_EVERY = 0.5  # else: idle timeouts and the spool's room change slowly
SETTLE_EVERY = 0.02


class Sink(Protocol):
    """Where listeners hand batches (`receiver.ingest.Ingest` in the service)."""

    def accept(self, messages: Sequence[bytes], peers: Peer | list[Peer], listener: str,
               transport: str, cut: frozenset[int] = frozenset()) -> int: ...


class ListenError(RuntimeError):
    """A listener could not be opened; the message names the setting."""


@dataclass
class Listener:
    """One bound socket and how to describe it."""

    name: str  # e.g. "udp://127.0.0.1:5140", used as the metrics label
    transport: str  # udp | tcp | tls | unix | unix_stream
    sock: socket.socket
    path: str = ""  # Unix socket file, removed on close
    configured: str = ""  # "<transport> <address or path>" as the settings name it (reload)

    @property
    def address(self) -> str:
        if self.path:
            return self.path
        host, port = self.sock.getsockname()[:2]
        return format_host_port(host, port)

    def close(self) -> None:
        self.sock.close()
        if self.path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


@dataclass
class Listeners:
    datagram: list[Listener] = field(default_factory=list)
    stream: list[Listener] = field(default_factory=list)

    def all(self) -> list[Listener]:
        return self.datagram + self.stream

    def inodes(self) -> list[int]:
        return [os.fstat(item.sock.fileno()).st_ino for item in self.datagram
                if item.transport == "udp" and item.sock.fileno() >= 0]

    def close(self) -> None:
        for item in self.all():
            item.close()


def open_listeners(settings: ListenSettings, reuse: Listeners | None = None) -> Listeners:
    """Bind every configured socket, or raise ListenError naming the one that failed (and close
    what this call opened). With `reuse` (a reload), a socket the settings still name is taken
    over as it is, bound and with whatever the kernel queued for it."""
    kept = {item.configured: item for item in reuse.all()} if reuse else {}
    opened, fresh = Listeners(), []

    def take(kind: str, key: str, bind: Callable[[], Listener]) -> Listener:
        listener = kept.get(f"{kind} {key}")
        if listener is None:
            listener = bind()
            listener.configured = f"{kind} {key}"
            fresh.append(listener)
        return listener

    dgram, stream = socket.SOCK_DGRAM, socket.SOCK_STREAM
    try:
        for i, address in enumerate(settings.udp):
            opened.datagram.append(take("udp", address, functools.partial(
                _bind_inet, f"listen.udp[{i}]", address, dgram, settings)))
        for i, path in enumerate(settings.unix):
            opened.datagram.append(take("unix", path, functools.partial(
                _bind_unix, f"listen.unix[{i}]", path, dgram, settings)))
        for i, address in enumerate(settings.tcp):
            opened.stream.append(take("tcp", address, functools.partial(
                _bind_inet, f"listen.tcp[{i}]", address, stream, settings)))
        for i, address in enumerate(settings.tls):
            opened.stream.append(take("tls", address, functools.partial(
                _bind_tls, f"listen.tls[{i}]", address, settings)))
        for i, path in enumerate(settings.unix_stream):
            opened.stream.append(take("unix_stream", path, functools.partial(
                _bind_unix, f"listen.unix_stream[{i}]", path, stream, settings)))
    except BaseException:
        for listener in fresh:
            listener.close()
        raise
    maximum = kernel_somaxconn()
    if opened.stream and settings.backlog > maximum:
        log.warning("listen.backlog = %d: the kernel caps it to net.core.somaxconn = %d; raise "
                    "that sysctl for a longer queue", settings.backlog, maximum)
    return opened


def _bind_inet(setting: str, address: str, kind: int, settings: ListenSettings) -> Listener:
    host, port = parse_host_port(address)
    family = family_of(host)
    sock = socket.socket(family, kind)
    transport = "udp" if kind == socket.SOCK_DGRAM else "tcp"

    def bind() -> None:
        # SO_REUSEADDR only for TCP, where it merely lets a restart bind beside connections in
        # TIME_WAIT; on UDP it lets a second process bind the same port and take its datagrams.
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if settings.reuse_port:  # shared on purpose, with processes that set it too
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))

    _open(sock, bind, f"{setting} = {address!r}", settings)
    listener = Listener("", transport, sock)
    listener.name = f"{transport}://{listener.address}"
    return listener


def _bind_tls(setting: str, address: str, settings: ListenSettings) -> Listener:
    listener = _bind_inet(setting, address, socket.SOCK_STREAM, settings)
    listener.transport, listener.name = "tls", listener.name.replace("tcp://", "tls://")
    return listener


def _bind_unix(setting: str, path: str, kind: int, settings: ListenSettings) -> Listener:
    _remove_stale_socket(setting, path, kind)
    sock = socket.socket(socket.AF_UNIX, kind)
    transport = "unix" if kind == socket.SOCK_DGRAM else "unix_stream"

    def bind() -> None:
        sock.bind(path)
        os.chmod(path, UNIX_SOCKET_MODE)

    _open(sock, bind, f"{setting} = {path!r}", settings)
    return Listener(f"{transport}://{path}", transport, sock, path)


def _open(sock: socket.socket, bind: Callable[[], None], described: str,
          settings: ListenSettings) -> None:
    """Bind, then size the receive buffer (datagrams) or listen (streams); non-blocking."""
    try:
        bind()
        if sock.type == socket.SOCK_DGRAM:
            _set_receive_buffer(sock, settings.udp_receive_buffer, described)
        else:
            sock.listen(listen_backlog(settings))
    except OSError as error:
        sock.close()
        hint = ""
        if error.errno == errno.EADDRINUSE:
            hint = (" (another process listens there; stop it, choose another address, or set "
                    "listen.reuse_port in every process meant to share it)")
        raise ListenError(f"{described}: cannot listen: {error.strerror}{hint}") from None
    sock.setblocking(False)


def kernel_somaxconn() -> int:
    """net.core.somaxconn: the kernel caps every listen backlog to it (4096 since Linux 5.4)."""
    try:
        with open(SOMAXCONN_FILE) as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return socket.SOMAXCONN


def listen_backlog(settings: ListenSettings) -> int:
    """The backlog to listen with: `listen.backlog`, or the kernel's maximum for 0."""
    return settings.backlog or kernel_somaxconn()


def _remove_stale_socket(setting: str, path: str, kind: int) -> None:
    """A socket file left by a previous run is removed; any other file is an error, and so is
    a socket some process still holds (probed with the socket's own type: a datagram socket
    refuses a stream connection as if nobody held it)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ListenError(f"{setting} = {path!r}: exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, kind)
    try:
        probe.connect(path)
    except OSError as error:
        if error.errno in (errno.ECONNREFUSED, errno.ENOENT):
            os.unlink(path)  # nobody listens: stale
            return
        raise ListenError(f"{setting} = {path!r}: {error.strerror}") from None
    finally:
        probe.close()
    raise ListenError(f"{setting} = {path!r}: another process is listening on it")


def _set_receive_buffer(sock: socket.socket, wanted: int, setting: str) -> None:
    # SO_RCVBUFFORCE (root/CAP_NET_ADMIN) may exceed net.core.rmem_max; try it first.
    force = getattr(socket, "SO_RCVBUFFORCE", 33)
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, wanted)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, wanted)
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2  # the kernel doubles it
    if granted < wanted:
        log.warning(
            "%s: asked for a %d-byte receive buffer (listen.udp_receive_buffer), the kernel "
            "granted %d; raise net.core.rmem_max or run with CAP_NET_ADMIN to absorb bursts",
            setting, wanted, granted)


def tls_context(settings: ListenSettings) -> ssl.SSLContext | None:
    """Server TLS context for the `tls` listeners (RFC 5425), client certificates optional."""
    if not settings.tls:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
        if settings.tls_client_ca:
            context.load_verify_locations(settings.tls_client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as error:
        raise ListenError(f"listen.tls_cert/tls_key/tls_client_ca: cannot load: {error}") from None
    return context


class SourceFilter:
    """`listen.allow`: is a sender's address in one of the allowed networks? (cached per address)"""

    def __init__(self, networks: list[str]) -> None:
        self._networks = [ipaddress.ip_network(n, strict=False) for n in networks]
        self._cache: dict[str, bool] = {}

    def allows(self, address: str | None) -> bool:
        if address is None:  # Unix sockets: guarded by file permissions instead
            return True
        verdict = self._cache.get(address)
        if verdict is None:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                return False
            verdict = any(ip in network for network in self._networks)
            if len(self._cache) > 65536:
                self._cache.clear()  # bounded: a scan from many addresses must not grow memory
            self._cache[address] = verdict
        return verdict


def source_filter(settings: ListenSettings) -> SourceFilter | None:
    return SourceFilter(settings.allow) if settings.allow else None


# --- datagram sockets --------------------------------------------------------------------------

class DatagramReader:
    """Reads one datagram socket in its own thread until `stop()`, then reads what the kernel
    still holds for it (until the socket would block, bounded by the stop deadline)."""

    def __init__(self, listener: Listener, ingest: Sink, wait_for_room: Callable[[float], bool],
                 metrics: ListenMetrics, allow: SourceFilter | None = None) -> None:
        self.listener = listener
        self._metrics = metrics
        self.allow = allow  # replaced by a reload
        self.heartbeat: Heartbeat | None = None  # the watchdog's view of this loop (receiver/systemd.py)
        self._ingest = ingest
        self._wait_for_room = wait_for_room
        self._stop = threading.Event()
        self._deadline = 0.0
        self._thread = threading.Thread(target=self._run, name=f"recv {listener.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, deadline: float | None = None) -> None:
        """Stop waiting for datagrams; what is queued is read until `deadline` (monotonic time;
        default: STOP_WAIT from now), then the thread ends. `join()` waits for that."""
        self._deadline = time.monotonic() + STOP_WAIT if deadline is None else deadline
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:  # a loop, not a recursion: failures must not pile up stack frames
            try:
                self._loop()
                break
            except Exception:
                log.exception("%s: reader failed; restarting it", self.listener.name)
                if self._stop.is_set():
                    break
        self._drain()

    def _loop(self) -> None:
        poller = select.poll()
        poller.register(self.listener.sock, select.POLLIN)
        trickle = False
        while not self._stop.is_set():
            if self.heartbeat is not None:
                self.heartbeat.beat()
            if not self._wait_for_room(0.2):
                continue  # spool full under `block`: leave datagrams to the kernel buffer
            if trickle:
                # The last drain found only a few datagrams: let some company arrive, so the
                # per-batch costs (spool write, locks, metric updates: tens of µs) are shared
                # by more messages. Adds at most COALESCE_WAIT of latency, and none under load.
                # Drained at the end of the wait without polling first: one wake-up a wait
                # (a poll woken by the next datagram, then this sleep, were two).
                time.sleep(COALESCE_WAIT)
            elif not poller.poll(200):
                continue
            messages, sources = self._receive()
            # Nothing came during a wait: the next datagram is awaited with poll again.
            trickle = 0 < len(messages) < COALESCE_BELOW
            self._hand_over(messages, sources)

    def _drain(self) -> None:
        """At stop: read the queue until it is empty, the deadline, or one receive buffer's
        worth (the queue cannot hold more, so a sender still flooding cannot keep us here).
        A full spool does not stop this: the sink counts what it cannot take."""
        try:
            limit = self.listener.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        except OSError:
            return  # already closed
        read = datagrams = 0
        while read < limit and time.monotonic() < self._deadline:
            messages, sources = self._receive()
            if not messages:
                break
            read += sum(map(len, messages))
            datagrams += len(messages)
            self._hand_over(messages, sources)
        if datagrams:
            log.info("%s: read %d datagrams the kernel held at stop", self.listener.name, datagrams)

    def _receive(self) -> tuple[list[bytes], list[Peer]]:
        """Up to DATAGRAM_BATCH datagrams or DATAGRAM_BATCH_BYTES without blocking, with their
        senders."""
        recvfrom = self.listener.sock.recvfrom
        unix = self.listener.transport == "unix"
        messages: list[bytes] = []
        sources: list[Peer] = []
        size = 0
        try:
            while len(messages) < DATAGRAM_BATCH and size < DATAGRAM_BATCH_BYTES:
                data, address = recvfrom(MAX_DATAGRAM)
                messages.append(data)
                sources.append(_NO_PEER if unix else address[:2])
                size += len(data)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as error:
            if not self._stop.is_set():
                log.warning("%s: receive failed: %s", self.listener.name, error.strerror)
        return messages, sources

    def _hand_over(self, messages: list[bytes], sources: list[Peer]) -> None:
        if self.allow is not None:
            messages, sources = self._filter(messages, sources)
        if messages:
            self._ingest.accept(messages, sources, self.listener.name, self.listener.transport)

    def _filter(
        self, messages: list[bytes], sources: list[Peer]
    ) -> tuple[list[bytes], list[Peer]]:
        assert self.allow is not None
        allows = self.allow.allows
        kept = [i for i, source in enumerate(sources) if allows(source[0])]
        if len(kept) < len(messages):
            self._metrics.messages_refused.labels(self.listener.name).inc(len(messages) - len(kept))
            return [messages[i] for i in kept], [sources[i] for i in kept]
        return messages, sources


# --- stream sockets ----------------------------------------------------------------------------

class FlowControl:
    """Pauses reading every stream connection while the spool has no room (policy `block`)."""

    def __init__(self, has_room: Callable[[], bool]) -> None:
        self._has_room = has_room
        self._transports: set[asyncio.Transport] = set()
        self.paused = False
        self.released = False  # at stop: every connection is read to its end, room or not

    def add(self, transport: asyncio.Transport) -> None:
        self._transports.add(transport)
        if self.paused:
            transport.pause_reading()

    def discard(self, transport: asyncio.Transport) -> None:
        self._transports.discard(transport)

    def check(self) -> None:
        """Called after every batch and periodically: pause or resume all readers."""
        if self.released:
            return
        room = self._has_room()
        if room == (not self.paused):
            return
        self._set(paused=not room)
        log.warning("spool %s: %s reading from %d stream connections",
                    "full" if self.paused else "has room again",
                    "paused" if self.paused else "resumed", len(self._transports))

    def release(self) -> None:
        """At stop: resume every reader for good. What a full spool cannot take then is counted
        as dropped by the sink; left unread, it would be lost uncounted when the socket closes."""
        self.released = True
        if self.paused:
            self._set(paused=False)

    def _set(self, *, paused: bool) -> None:
        self.paused = paused
        for transport in self._transports:
            if transport.is_closing():
                continue
            if paused:
                transport.pause_reading()
            else:
                transport.resume_reading()


class StreamConnection(asyncio.Protocol):
    """One TCP/Unix/TLS stream connection: frame, hand over, count; and end it gracefully.

    The receiver ends a connection (at stop, idle, evicted) by half-closing it: a FIN, to which
    HAProxy's log forwarder answers by closing its side (and reconnecting; what it had not sent
    stays in its ring). Reading goes on until the sender's own FIN, so every byte it sent is
    read; a sender that neither sends nor closes for DRAIN_QUIET, or that is still sending at
    the deadline, is closed after what its socket holds was read.
    """

    def __init__(self, server: StreamServer, listener: Listener) -> None:
        self._server = server
        self.listener = listener
        self._framer = StreamFramer(server.settings.max_message_bytes)
        self._transport: asyncio.Transport | None = None
        self._raw: asyncio.Transport | None = None  # the socket's own transport (below TLS)
        self._secured = listener.transport != "tls"
        self.peer: str | None = None
        self._peer: Peer = _NO_PEER
        self.last_activity = time.monotonic()  # the last byte (drains and idle_timeout)
        # The last complete message, or the connect: idleness for eviction. A sender dripping
        # bytes without ending a line is active by bytes, idle by this.
        self.last_message = self.last_activity
        self.in_message_since = 0.0  # when the message in progress began (0: none)
        self.closing = False  # the receiver is ending this connection
        self.closing_since = 0.0
        self.close_by = 0.0  # monotonic deadline of the graceful close
        self.lost = False  # the transport is gone (closed by either side)
        self._waiting = False  # reading paused to let a small read's successors gather

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = self._raw = transport
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else None
        self._peer = (peer[0], peer[1]) if isinstance(peer, tuple) else _NO_PEER
        if not self._server.admit(self):
            transport.abort()
            return
        transport.set_write_buffer_limits(0)
        if self.listener.transport == "tls":
            transport.pause_reading()  # until the handshake: TLS records are not syslog
            self._server.secure(self)

    def upgraded(self, transport: asyncio.Transport) -> None:
        """The TLS handshake succeeded: from now on read through the TLS transport."""
        self._server.flow.discard(self._transport)  # type: ignore[arg-type]
        self._transport = transport
        self._secured = True
        self._server.flow.add(transport)
        if self.closing:
            transport.resume_reading()

    @property
    def handshaking(self) -> bool:
        """A `tls` connection whose handshake has not completed: no log data yet."""
        return not self._secured

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        messages = self._framer.feed(data)
        self._deliver(messages)
        # Timed after the hand-over: under `block` it may have waited long for room, which is
        # not the sender stalling.
        now = time.monotonic()
        if messages:
            self.last_message = now
        if not self._framer.in_message:
            self.in_message_since = 0.0
        elif messages or not self.in_message_since:
            self.in_message_since = now
        if len(data) < STREAM_COALESCE_BELOW and not self.closing and not self._waiting:
            self._wait_for_company()

    def _wait_for_company(self) -> None:
        """Pause reading for COALESCE_WAIT after a small read (see STREAM_COALESCE_BELOW).

        The socket's own transport is paused, below TLS: the TLS layer then simply gets no
        bytes for a while. Pausing the TLS transport itself would hold decrypted data back
        from a sender's end of stream, which the TLS layer then closes without delivering."""
        raw = self._raw
        if raw is None or raw.is_closing() or not raw.is_reading():
            return
        self._waiting = True
        raw.pause_reading()
        self._server.loop.call_later(COALESCE_WAIT, self._company_waited)

    def _company_waited(self) -> None:
        """The end of a wait: read what it gathered here, and wait again while that is little
        (STREAM_KEEP_WAITING_BELOW); else resume reading as bytes come."""
        raw = self._raw
        if raw is None or raw.is_closing():
            self._waiting = False
            return
        try:
            again = self._read_gathered()
        except Exception:  # as the transport does when data_received fails: end the connection
            log.exception("%s: handing over a read of the connection from %s failed; closing it",
                          self.listener.name, self.peer or "a local process")
            self._waiting = False
            raw.abort()
            return
        if again:
            self._server.loop.call_later(COALESCE_WAIT, self._company_waited)
            return
        self._waiting = False
        # Without TLS, the socket's transport is also the one a full spool pauses
        # (FlowControl), whose pause outlasts this one: it resumes every reader itself.
        if raw is not self._transport or self.closing or not self._server.flow.paused:
            raw.resume_reading()

    def _read_gathered(self) -> bool:
        """Read what the kernel holds for this connection, as the transport would have, while
        it stays paused; True if that was little enough to wait again. Only bytes the kernel
        reports queued are read: an end of stream or an error is left to the transport, which
        meets it as soon as it reads again. Not under TLS (its layer reads from the loop), nor
        while closing or paused for a full spool."""
        raw = self._raw
        if (raw is None or raw is not self._transport or raw.is_reading() or self.closing
                or self._server.flow.paused):
            return False
        queued = self.queued_bytes()
        if queued <= 0:
            return False  # quiet: the next line is read when it comes
        sock = raw.get_extra_info("socket")
        try:
            data = os.read(sock.fileno(), min(queued, STREAM_READ))
        except OSError:  # the transport meets the error itself when it reads again
            return False
        if not data:
            return False
        self.data_received(data)  # no new wait from there: this one is still on
        if (len(data) >= STREAM_KEEP_WAITING_BELOW or self.closing or raw.is_closing()
                or self._server.flow.paused):
            return False
        try:
            buffer = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
        except OSError:
            return False
        return len(data) < buffer // 4

    def eof_received(self) -> bool:
        self._finish()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.forget(self)

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._transport

    # --- ending it -------------------------------------------------------------------------------
    def begin_close(self, deadline: float) -> None:
        """Half-close and keep reading (see the class); `settle()` finishes the job."""
        if self.closing:
            self.close_by = min(self.close_by, deadline)
            return
        self.closing, self.closing_since, self.close_by = True, time.monotonic(), deadline
        if self.lost or self._transport is None:
            return
        if not self._secured:  # a TLS handshake in progress: no log data can have come yet
            self._transport.abort()
            return
        self._transport.resume_reading()  # also if paused for a full spool: see FlowControl
        raw = self._raw
        if raw is not None and not raw.is_closing() and raw.can_write_eof():
            with contextlib.suppress(OSError, RuntimeError):
                raw.write_eof()  # below TLS too: HAProxy treats a bare FIN as the end as well

    def settle(self, now: float, force: bool) -> str:
        """Finish a graceful close if it is due; returns how it ended ("" while it goes on)."""
        if self.lost:
            return "closed by the sender"
        if force or now >= self.close_by:
            outcome = "cut at the deadline"
        elif now - max(self.closing_since, self.last_activity) >= DRAIN_QUIET \
                and self.queued_bytes() == 0:
            outcome = "quiet"
        else:
            return ""
        self._read_queued()
        self._finish()
        if self._transport is not None:
            self._transport.abort()
        return outcome

    def queued_bytes(self) -> int:
        """Bytes the kernel holds for this connection, not read yet (SIOCINQ)."""
        sock = self._raw.get_extra_info("socket") if self._raw is not None else None
        if sock is None:
            return 0
        try:
            value = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return 0
        return int(struct.unpack("i", value)[0])

    def _read_queued(self) -> None:
        """Before closing a sender that has not closed: read what its socket already holds
        (no more: a sender still flooding would keep us here). Not under TLS: the bytes would
        have to go through the TLS layer, which only reads from the event loop."""
        if self.listener.transport == "tls" or self._raw is None or self._raw.is_closing():
            return
        sock = self._raw.get_extra_info("socket")
        left = self.queued_bytes()
        while left > 0:
            try:
                data = os.read(sock.fileno(), min(left, STREAM_READ))
            except OSError:  # BlockingIOError included: nothing more after all
                return
            if not data:
                return
            left -= len(data)
            self.data_received(data)

    def _finish(self) -> None:
        """The end of the stream: a partial last message is kept (counted as cut when the
        receiver ended the connection)."""
        tail = self._framer.finish(cut=self.closing)
        if tail and self.closing:
            self._server.cut_tails += 1
        self._deliver(tail, frozenset({0}) if tail and self.closing else frozenset())

    def _deliver(self, messages: list[bytes], cut: frozenset[int] = frozenset()) -> None:
        if self._framer.truncated:
            self._server.metrics.messages_truncated.labels(self.listener.name).inc(self._framer.truncated)
            self._framer.truncated = 0
        if messages:
            if self.closing:
                self._server.drained_messages += len(messages)
            self._server.ingest.accept(messages, self._peer, self.listener.name,
                                       self.listener.transport, cut)
            self._server.flow.check()


_REFUSALS = {
    "source_not_allowed": "its address is not in listen.allow",
    "max_connections": "listen.max_connections reached",
    "max_connections_per_source": "listen.max_connections_per_source reached for this address",
}
# Reasons a connection is closed by the receiver, counted in the same metric as refusals
_EVICTIONS = {
    "evicted_per_source": "listen.max_connections_per_source",
    "evicted_max_connections": "listen.max_connections",
}


class StreamServer:
    """All stream listeners on one asyncio loop in one thread.

    Admission: `listen.allow`, then the connection limits; when a limit is reached, the
    connection idle longest (at least `evict_idle_after`) is ended to make room, so idle
    connections cannot lock senders out. Stop: accept what the listen backlog holds, stop
    listening, end every connection gracefully (StreamConnection), within the deadline.
    """

    def __init__(self, listeners: list[Listener], settings: ListenSettings, ingest: Sink,
                 metrics: ListenMetrics, has_room: Callable[[], bool]) -> None:
        self.listeners = listeners
        self.settings = settings
        self.ingest = ingest
        self.metrics = metrics
        self.flow = FlowControl(has_room)
        self.heartbeat: Heartbeat | None = None  # the watchdog's view of the loop (receiver/systemd.py)
        self._allow = source_filter(settings)
        self._tls = tls_context(settings)
        self._backlog = listen_backlog(settings)
        self._handshakes: set[asyncio.Task[None]] = set()
        self._log = RateLimitedLog(log)
        self._connections: set[StreamConnection] = set()  # every open one, closing ones too
        # What the limits count: connections not being closed.
        self._admitted = 0
        self._per_source: Tally[str | None] = Tally()
        self._closing: set[StreamConnection] = set()
        self._ended: Tally[str] = Tally()
        self.cut_tails = 0
        self.drained_messages = 0
        self.stopping = False
        self._stop_deadline = 0.0
        self._stop_requested: threading.Event | None = None
        self._reading_since = 0.0  # the end of the last pause of reading (full spool)
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.Server] = []
        self._thread = threading.Thread(target=self._run, name="recv streams", daemon=True)
        self._started = threading.Event()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the connections' timers go on (asyncio.get_running_loop() asks the kernel
        for the process id at every call)."""
        return self._loop

    # --- admission -------------------------------------------------------------------------------
    def admit(self, connection: StreamConnection) -> bool:
        reason = self._refusal(connection)
        if reason:
            self.metrics.connections_refused.labels(connection.listener.name, reason).inc()
            self._warn_sometimes(connection.listener.name, reason, "refused a connection from %s: %s",
                                 connection.peer or "a local process", _REFUSALS[reason])
            return False
        self._connections.add(connection)
        self._admitted += 1
        self._per_source[connection.peer] += 1
        self.metrics.connections_open.labels(connection.listener.name).inc()
        assert connection.transport is not None
        self.flow.add(connection.transport)
        if self.stopping:  # accepted by asyncio just before the listener closed
            self.end(connection, self._stop_deadline)
        return True

    def _refusal(self, connection: StreamConnection) -> str:
        if self._allow is not None and not self._allow.allows(connection.peer):
            return "source_not_allowed"
        if self.stopping:  # from the listen backlog, to be read and closed like all others
            return ""
        limit = self.settings.max_connections_per_source
        peer = connection.peer
        if limit and peer is not None and self._per_source[peer] >= limit:
            same = [c for c in self._connections if c.peer == peer and not c.closing]
            if not self._evict(same, "evicted_per_source"):
                return "max_connections_per_source"
        if self._admitted >= self.settings.max_connections and not self._evict(
                [c for c in self._connections if not c.closing], "evicted_max_connections"):
            return "max_connections"
        return ""

    def _evict(self, candidates: list[StreamConnection], reason: str) -> bool:
        """End a candidate to make room: one still in its TLS handshake (it holds no log data;
        the longest-waiting), else the one idle longest, if idle at least `evict_idle_after`;
        among all connections, one of the source holding the most, so a flood from a few
        addresses gives way before the one connection of a quiet HAProxy host. Idle means no
        complete message: bytes dripping without a line end do not keep a connection."""
        after = self.settings.evict_idle_after
        if not after:
            return False
        now = time.monotonic()
        handshaking = [c for c in candidates if c.handshaking]
        if handshaking:
            victim = min(handshaking, key=lambda c: c.last_message)
        else:
            idle = [c for c in candidates if now - c.last_message >= after]
            if not idle:
                return False
            victim = max(idle, key=lambda c: (self._per_source[c.peer], now - c.last_message))
        name = victim.listener.name
        self.metrics.connections_refused.labels(name, reason).inc()
        self._warn_sometimes(name, reason, "%s reached: closing the connection from %s %s for "
                             "%.0f s to admit a new one", _EVICTIONS[reason],
                             victim.peer or "a local process",
                             "in its TLS handshake" if victim.handshaking else "without a message",
                             now - victim.last_message)
        self.end(victim, now + CLOSE_WAIT)
        return True

    def secure(self, connection: StreamConnection) -> None:
        """Start the TLS handshake of a freshly accepted `tls` connection."""
        self._handshakes.add(self._loop.create_task(self._handshake(connection)))

    async def _handshake(self, connection: StreamConnection) -> None:
        # loop.start_tls (rather than create_server(ssl=...)) so that a failed handshake is
        # seen here, counted and logged; asyncio only logs those in debug mode.
        raw = connection.transport
        assert raw is not None and self._tls is not None
        try:
            secure = await self._loop.start_tls(raw, connection, self._tls, server_side=True,
                                                ssl_handshake_timeout=self.settings.tls_handshake_timeout)
        except (OSError, TimeoutError, ConnectionError, asyncio.CancelledError) as error:
            if not self.stopping and not connection.closing:  # not ended by the receiver
                name = connection.listener.name
                self.metrics.connections_refused.labels(name, "tls_handshake_failed").inc()
                self._warn_sometimes(name, "tls_handshake_failed", "refused a connection from %s: "
                                     "TLS handshake failed: %s", connection.peer, error)
            raw.abort()
            self.forget(connection)
            return
        finally:
            self._handshakes.discard(asyncio.current_task())
        if secure is None:  # the connection closed during the handshake
            self.forget(connection)
            return
        connection.upgraded(secure)

    def _warn_sometimes(self, listener: str, reason: str, message: str, *args: object) -> None:
        """One warning per listener and reason every few seconds: a scan must not flood the log."""
        self._log(logging.WARNING, f"{listener} {reason}", "%s: " + message, listener, *args)

    # --- ending connections ----------------------------------------------------------------------
    def end(self, connection: StreamConnection, deadline: float) -> None:
        """End a connection gracefully by `deadline`; it stops counting against the limits."""
        if not connection.closing and connection in self._connections:
            self._release(connection)
            self._closing.add(connection)
        connection.begin_close(deadline)

    def _release(self, connection: StreamConnection) -> None:
        self._admitted -= 1
        self._per_source[connection.peer] -= 1
        if self._per_source[connection.peer] <= 0:
            del self._per_source[connection.peer]

    def forget(self, connection: StreamConnection) -> None:
        connection.lost = True
        if connection in self._connections:
            self._connections.discard(connection)
            if not connection.closing:
                self._release(connection)
            self.metrics.connections_open.labels(connection.listener.name).dec()
        if connection.transport is not None:
            self.flow.discard(connection.transport)

    def _settle_closing(self, force: bool = False) -> None:
        now = time.monotonic()
        for connection in list(self._closing):
            outcome = connection.settle(now, force)
            if outcome:
                self._closing.discard(connection)
                self._ended[outcome] += 1

    # --- running ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        self._started.wait(10)

    def stop(self, deadline: float | None = None, interrupt: threading.Event | None = None) -> None:
        """Stop accepting, read every connection to its end (see StreamConnection), close them.

        `deadline` is a time.monotonic() value (default: STOP_WAIT from now); `interrupt`, when
        set (a second SIGTERM), closes what is still open at once."""
        if not self._thread.is_alive():
            return
        if deadline is None:
            deadline = time.monotonic() + STOP_WAIT
        stopped = self.request_stop(deadline, interrupt)
        if not stopped.wait(max(0.0, deadline - time.monotonic()) + STOP_MARGIN):
            log.warning("stream listeners did not stop within the deadline")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(STOP_MARGIN)

    def request_stop(self, deadline: float, interrupt: threading.Event | None = None) -> threading.Event:
        """The first half of `stop()`, without waiting: returns an event set once every
        connection has ended. Asking again returns the same event."""
        if self._stop_requested is None:
            self._stop_requested = threading.Event()
            self._loop.call_soon_threadsafe(self._begin_shutdown, deadline, interrupt,
                                            self._stop_requested)
        return self._stop_requested

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        for listener in self.listeners:
            factory = functools.partial(StreamConnection, self, listener)
            # backlog: create_server listens again, with asyncio's default of 100 otherwise
            server = self._loop.run_until_complete(
                self._loop.create_server(factory, sock=listener.sock, backlog=self._backlog))
            self._servers.append(server)
        self._housekeeper = self._loop.create_task(self._housekeeping())
        self._started.set()
        self._loop.run_forever()
        self._loop.close()

    def reconfigure(self, settings: ListenSettings, listeners: list[Listener],
                    grace: float) -> concurrent.futures.Future[None]:
        """A reload: new limits, allowlist, TLS and idle settings from now on; listeners the
        settings no longer name stop (their connections are ended as at stop, within `grace`
        seconds), new ones start. Connections of the listeners kept go on undisturbed.

        Runs on the loop: the returned future is done once it has. The loop may be held for a
        while (a connection's batch waiting for room in a full spool under `block`), so the
        caller decides how long to wait for it."""
        return asyncio.run_coroutine_threadsafe(
            self._reconfigure(settings, listeners, grace), self._loop)

    async def _reconfigure(self, settings: ListenSettings, listeners: list[Listener],
                           grace: float) -> None:
        deadline = time.monotonic() + grace  # from when it runs, not when it was asked for
        tls = tls_context(settings)  # raises ListenError before anything changes
        self.settings, self._allow, self._tls = settings, source_filter(settings), tls
        self._backlog = listen_backlog(settings)
        servers = dict(zip(map(id, self.listeners), self._servers, strict=True))
        keep = {id(listener) for listener in listeners}
        for listener in self.listeners:
            if id(listener) not in keep:
                servers[id(listener)].close()  # closes the listening socket
                for connection in [c for c in self._connections if c.listener is listener]:
                    self.end(connection, deadline)
        self.listeners, self._servers = [], []
        for listener in listeners:
            server = servers.get(id(listener))
            if server is None:
                factory = functools.partial(StreamConnection, self, listener)
                server = await self._loop.create_server(factory, sock=listener.sock,
                                                        backlog=self._backlog)
            self.listeners.append(listener)
            self._servers.append(server)

    async def _housekeeping(self) -> None:
        """Resume paused readers when room returns; end idle connections; finish closes."""
        while True:
            busy = self.flow.paused or self._closing
            await asyncio.sleep(HOUSEKEEPING_EVERY if busy else QUIET_HOUSEKEEPING_EVERY)
            if self.heartbeat is not None:
                self.heartbeat.beat()
            self.flow.check()
            now = time.monotonic()
            idle = self.settings.idle_timeout
            if idle:
                for connection in [c for c in self._connections
                                   if not c.closing and now - c.last_activity >= idle]:
                    self.metrics.connections_refused.labels(connection.listener.name, "idle_timeout").inc()
                    self.end(connection, now + CLOSE_WAIT)
            self._end_stalled_messages(now)
            self._settle_closing()

    def _end_stalled_messages(self, now: float) -> None:
        """`listen.line_timeout`: end a connection whose message in progress is older than
        the bound (its part is kept, as cut). Not while reading is paused for a full spool, nor
        right after: the sender is not the one stalling then."""
        bound = self.settings.line_timeout
        if self.flow.paused:
            self._reading_since = now
        if not bound:
            return
        since = self._reading_since
        for connection in [c for c in self._connections if not c.closing and c.in_message_since
                           and now - max(c.in_message_since, since) >= bound]:
            name = connection.listener.name
            self.metrics.connections_refused.labels(name, "line_timeout").inc()
            self._warn_sometimes(name, "line_timeout", "closing the connection from %s: a message "
                                 "incomplete for %.0f s (listen.line_timeout)",
                                 connection.peer or "a local process",
                                 now - connection.in_message_since)
            self.end(connection, now + CLOSE_WAIT)

    def _begin_shutdown(self, deadline: float, interrupt: threading.Event | None,
                        stopped: threading.Event) -> None:
        """The first step of a stop, run by the loop before the socket events it sees next: no
        more accepting by asyncio; what the listen backlog holds is taken here."""
        self.stopping, self._stop_deadline = True, deadline
        self._ended.clear()  # from here on, for the summary of the stop
        self.cut_tails = self.drained_messages = 0
        self._housekeeper.cancel()
        self.flow.release()
        for listener in self.listeners:
            if listener.sock.fileno() >= 0:
                self._loop.remove_reader(listener.sock.fileno())
        accepted = self._accept_backlog()
        task = self._loop.create_task(self._shutdown(deadline, interrupt, accepted))

        def done(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                log.error("stopping the stream listeners failed", exc_info=task.exception())
            stopped.set()

        task.add_done_callback(done)

    async def _shutdown(self, deadline: float, interrupt: threading.Event | None,
                        accepted: list[tuple[Listener, socket.socket]]) -> None:
        accepted += self._accept_backlog()  # arrived during the last loop iteration
        for server in self._servers:
            server.close()
        for listener, sock in accepted:
            factory = functools.partial(StreamConnection, self, listener)
            await self._loop.connect_accepted_socket(factory, sock)  # admitted, then ended
        handshakes = list(self._handshakes)
        for task in handshakes:  # no log data comes before the handshake: nothing to lose
            task.cancel()
        await asyncio.gather(*handshakes, return_exceptions=True)
        for connection in list(self._connections):
            self.end(connection, deadline)
        while self._closing:
            hurry = time.monotonic() >= deadline or (interrupt is not None and interrupt.is_set())
            self._settle_closing(force=hurry)
            if hurry:
                break
            await asyncio.sleep(SETTLE_EVERY)
        await asyncio.sleep(0)  # let the transports' connection_lost run
        ended = sum(self._ended.values())
        if ended:
            log.info("stopping: read %d stream connections to their end (%d from the listen "
                     "backlog): %s; %d messages read meanwhile, %d cut at the end (kept, counted "
                     "in messages_truncated_total)", ended, len(accepted),
                     ", ".join(f"{n} {how}" for how, n in sorted(self._ended.items())),
                     self.drained_messages, self.cut_tails)

    def _accept_backlog(self) -> list[tuple[Listener, socket.socket]]:
        """Connections the kernel completed but nobody accepted yet may carry log data already
        (HAProxy writes as soon as it is connected): take them, to be read like the others,
        instead of letting the closing listener reset them. Not TLS: no data before our
        handshake."""
        accepted: list[tuple[Listener, socket.socket]] = []
        for listener in self.listeners:
            if listener.transport == "tls" or listener.sock.fileno() < 0:
                continue
            while True:
                try:
                    sock, _ = listener.sock.accept()
                except OSError:  # BlockingIOError: the backlog is empty
                    break
                sock.setblocking(False)
                accepted.append((listener, sock))
        return accepted
