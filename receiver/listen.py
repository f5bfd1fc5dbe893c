"""Listeners: the sockets HAProxy's `log` directive sends to, and the loops that read them.

- Datagram sockets (UDP over IPv4/IPv6, Unix datagram) are read by one thread each, with a
  blocking-style loop: wait for readability, then drain the socket without blocking (up to
  `DATAGRAM_BATCH` datagrams) and hand the whole batch to `Ingest`. A thread per socket costs
  ~3 µs per datagram here, a third of asyncio's datagram protocol (PERF-NOTES).
- Stream sockets (TCP, Unix stream) share one asyncio loop in one thread: each read is cut into
  messages by `StreamFramer` and handed over in one batch. When the spool is full under the
  `block` policy, `FlowControl` pauses reading every connection until there is room again, so
  senders feel TCP backpressure instead of losing data.

All sockets are bound by `open_listeners()` before anything starts, so an address in use is
reported at start with the setting that named it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import logging
import os
import select
import socket
import ssl
import stat
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

log = logging.getLogger(__name__)

DATAGRAM_BATCH = 512
COALESCE_BELOW = 16  # datagrams per drain under which the reader waits for company
COALESCE_WAIT = 0.001
MAX_DATAGRAM = 65535 + 1  # one more than UDP allows, so nothing is ever cut by recvfrom
STREAM_READ = 256 * 1024
TLS_HANDSHAKE_TIMEOUT = 10.0
LOG_EVERY = 10.0  # seconds between two warnings about refused connections
UNIX_SOCKET_MODE = 0o666  # HAProxy runs as its own user; the socket must be writable by it
_NO_PEER: Peer = (None, None)  # Unix sockets: no address


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


def open_listeners(settings: ListenSettings) -> Listeners:
    """Bind every configured socket, or raise ListenError naming the one that failed."""
    opened = Listeners()
    try:
        for i, address in enumerate(settings.udp):
            opened.datagram.append(_bind_inet(f"listen.udp[{i}]", address, socket.SOCK_DGRAM, settings))
        for i, path in enumerate(settings.unix):
            opened.datagram.append(_bind_unix(f"listen.unix[{i}]", path, socket.SOCK_DGRAM, settings))
        for i, address in enumerate(settings.tcp):
            opened.stream.append(_bind_inet(f"listen.tcp[{i}]", address, socket.SOCK_STREAM, settings))
        for i, address in enumerate(settings.tls):
            listener = _bind_inet(f"listen.tls[{i}]", address, socket.SOCK_STREAM, settings)
            listener.transport, listener.name = "tls", listener.name.replace("tcp://", "tls://")
            opened.stream.append(listener)
        for i, path in enumerate(settings.unix_stream):
            opened.stream.append(_bind_unix(f"listen.unix_stream[{i}]", path, socket.SOCK_STREAM, settings))
    except BaseException:
        opened.close()
        raise
    return opened


def _bind_inet(setting: str, address: str, kind: int, settings: ListenSettings) -> Listener:
    host, port = parse_host_port(address)
    family = family_of(host)
    sock = socket.socket(family, kind)
    transport = "udp" if kind == socket.SOCK_DGRAM else "tcp"

    def bind() -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))

    _open(sock, bind, f"{setting} = {address!r}", settings)
    listener = Listener("", transport, sock)
    listener.name = f"{transport}://{listener.address}"
    return listener


def _bind_unix(setting: str, path: str, kind: int, settings: ListenSettings) -> Listener:
    _remove_stale_socket(setting, path)
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
            sock.listen(1024)
    except OSError as error:
        sock.close()
        raise ListenError(f"{described}: cannot listen: {error.strerror}") from None
    sock.setblocking(False)


def _remove_stale_socket(setting: str, path: str) -> None:
    """A socket file left by a previous run is removed; any other file is an error."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ListenError(f"{setting} = {path!r}: exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError as error:
        if error.errno in (errno.ECONNREFUSED, errno.ENOENT, errno.EPROTOTYPE):
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
    """Reads one datagram socket in its own thread until `stop()`."""

    def __init__(self, listener: Listener, ingest: Sink, wait_for_room: Callable[[float], bool],
                 metrics: ListenMetrics, allow: SourceFilter | None = None) -> None:
        self.listener = listener
        self._metrics = metrics
        self._allow = allow
        self._ingest = ingest
        self._wait_for_room = wait_for_room
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"recv {listener.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:
            log.exception("%s: reader failed; restarting it", self.listener.name)
            if not self._stop.is_set():
                self._run()

    def _loop(self) -> None:
        sock = self.listener.sock
        recvfrom = sock.recvfrom
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        unix = self.listener.transport == "unix"
        name, transport, accept = self.listener.name, self.listener.transport, self._ingest.accept
        trickle = False
        while not self._stop.is_set():
            if not self._wait_for_room(0.2):
                continue  # spool full under `block`: leave datagrams to the kernel buffer
            if not poller.poll(200):
                continue
            if trickle:
                # The last drain found only a few datagrams: let some company arrive, so the
                # per-batch costs (spool write, locks, metric updates: tens of µs) are shared
                # by more messages. Adds at most COALESCE_WAIT of latency, and none under load.
                time.sleep(COALESCE_WAIT)
            messages: list[bytes] = []
            sources: list[Peer] = []
            try:
                while len(messages) < DATAGRAM_BATCH:
                    data, address = recvfrom(MAX_DATAGRAM)
                    messages.append(data)
                    sources.append(_NO_PEER if unix else address[:2])
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as error:
                if self._stop.is_set():
                    break
                log.warning("%s: receive failed: %s", name, error.strerror)
            trickle = len(messages) < COALESCE_BELOW
            if self._allow is not None:
                messages, sources = self._filter(messages, sources)
            if messages:
                accept(messages, sources, name, transport)

    def _filter(
        self, messages: list[bytes], sources: list[Peer]
    ) -> tuple[list[bytes], list[Peer]]:
        assert self._allow is not None
        allows = self._allow.allows
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

    def add(self, transport: asyncio.Transport) -> None:
        self._transports.add(transport)
        if self.paused:
            transport.pause_reading()

    def discard(self, transport: asyncio.Transport) -> None:
        self._transports.discard(transport)

    def check(self) -> None:
        """Called after every batch and periodically: pause or resume all readers."""
        room = self._has_room()
        if room == (not self.paused):
            return
        self.paused = not room
        for transport in self._transports:
            if transport.is_closing():
                continue
            if self.paused:
                transport.pause_reading()
            else:
                transport.resume_reading()
        log.warning("spool %s: %s reading from %d stream connections",
                    "full" if self.paused else "has room again",
                    "paused" if self.paused else "resumed", len(self._transports))


class StreamConnection(asyncio.Protocol):
    """One TCP/Unix stream connection: frame, hand over, count."""

    def __init__(self, server: StreamServer, listener: Listener) -> None:
        self._server = server
        self.listener = listener
        self._framer = StreamFramer(server.settings.max_message_bytes)
        self._transport: asyncio.Transport | None = None
        self.peer: str | None = None
        self._peer: Peer = _NO_PEER
        self.last_activity = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
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
        self._server.flow.add(transport)

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        messages = self._framer.feed(data)
        self._deliver(messages)

    def eof_received(self) -> bool:
        self._deliver(self._framer.finish())
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.forget(self)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._transport

    def _deliver(self, messages: list[bytes]) -> None:
        if self._framer.truncated:
            self._server.metrics.messages_truncated.labels(self.listener.name).inc(self._framer.truncated)
            self._framer.truncated = 0
        if messages:
            self._server.ingest.accept(messages, self._peer, self.listener.name, self.listener.transport)
            self._server.flow.check()


_REFUSALS = {
    "source_not_allowed": "its address is not in listen.allow",
    "max_connections": "listen.max_connections reached",
    "max_connections_per_source": "listen.max_connections_per_source reached for this address",
}


class StreamServer:
    """All stream listeners on one asyncio loop in one thread."""

    def __init__(self, listeners: list[Listener], settings: ListenSettings, ingest: Sink,
                 metrics: ListenMetrics, has_room: Callable[[], bool]) -> None:
        self.listeners = listeners
        self.settings = settings
        self.ingest = ingest
        self.metrics = metrics
        self.flow = FlowControl(has_room)
        self._allow = source_filter(settings)
        self._tls = tls_context(settings)
        self._per_source: Tally[str | None] = Tally()
        self._handshakes: set[asyncio.Task[None]] = set()
        self._last_refusal_log: dict[tuple[str, str], float] = {}
        self._connections: set[StreamConnection] = set()
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.Server] = []
        self._thread = threading.Thread(target=self._run, name="recv streams", daemon=True)
        self._started = threading.Event()

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def admit(self, connection: StreamConnection) -> bool:
        reason = self._refusal(connection)
        if reason:
            self.metrics.connections_refused.labels(connection.listener.name, reason).inc()
            self._refusal_log(connection.listener.name, connection.peer, _REFUSALS[reason])
            return False
        self._per_source[connection.peer] += 1
        self._connections.add(connection)
        self.metrics.connections_open.labels(connection.listener.name).inc()
        assert connection.transport is not None
        self.flow.add(connection.transport)
        return True

    def _refusal(self, connection: StreamConnection) -> str:
        if self._allow is not None and not self._allow.allows(connection.peer):
            return "source_not_allowed"
        if len(self._connections) >= self.settings.max_connections:
            return "max_connections"
        limit = self.settings.max_connections_per_source
        if limit and connection.peer is not None and self._per_source[connection.peer] >= limit:
            return "max_connections_per_source"
        return ""

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
                                                ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT)
        except (OSError, TimeoutError, ConnectionError, asyncio.CancelledError) as error:
            name = connection.listener.name
            self.metrics.connections_refused.labels(name, "tls_handshake_failed").inc()
            self._refusal_log(name, connection.peer, f"TLS handshake failed: {error}")
            raw.abort()
            self.forget(connection)
            return
        finally:
            self._handshakes.discard(asyncio.current_task())
        if secure is None:  # the connection closed during the handshake
            self.forget(connection)
            return
        connection.upgraded(secure)

    def _refusal_log(self, listener: str, peer: str | None, why: str) -> None:
        """One warning per listener and reason every 10 s: a scan must not flood the log."""
        now = time.monotonic()
        key = (listener, why.split(":")[0])
        if now - self._last_refusal_log.get(key, -LOG_EVERY) >= LOG_EVERY:
            self._last_refusal_log[key] = now
            log.warning("%s: refused a connection from %s: %s", listener, peer or "a local process", why)

    def forget(self, connection: StreamConnection) -> None:
        if connection in self._connections:
            self._connections.discard(connection)
            self._per_source[connection.peer] -= 1
            if self._per_source[connection.peer] <= 0:
                del self._per_source[connection.peer]
            self.metrics.connections_open.labels(connection.listener.name).dec()
        if connection.transport is not None:
            self.flow.discard(connection.transport)

    def start(self) -> None:
        self._thread.start()
        self._started.wait(10)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, read what each connection already sent, close them."""
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        with contextlib.suppress(Exception):
            future.result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        for listener in self.listeners:
            factory = functools.partial(StreamConnection, self, listener)
            server = self._loop.run_until_complete(self._loop.create_server(factory, sock=listener.sock))
            self._servers.append(server)
        self._housekeeper = self._loop.create_task(self._housekeeping())
        self._started.set()
        self._loop.run_forever()
        self._loop.close()

    async def _housekeeping(self) -> None:
        """Resume paused readers when room returns; close idle connections."""
        while True:
            await asyncio.sleep(0.05)
            self.flow.check()
            idle = self.settings.idle_timeout
            if idle:
                limit = time.monotonic() - idle
                for connection in [c for c in self._connections if c.last_activity < limit]:
                    self.metrics.connections_refused.labels(connection.listener.name, "idle_timeout").inc()
                    connection.close()

    async def _shutdown(self) -> None:
        self._housekeeper.cancel()
        for server in self._servers:
            server.close()
        for connection in list(self._connections):
            connection.close()
        await asyncio.sleep(0)
