"""Listeners with real sockets: UDP (IPv4, IPv6), Unix datagram, TCP with both framings, TLS
with and without client certificates, the source allowlist and connection limits."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import trustme

from receiver.config import ListenSettings, load_settings
from receiver.listen import (
    DatagramReader,
    ListenError,
    Listeners,
    StreamServer,
    open_listeners,
)
from receiver.metrics import Metrics
from tests.support import wait_for


@dataclass
class Collected:
    """The listeners' sink for these tests: records every batch handed over."""

    messages: list[tuple[bytes, str | None, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accept(self, messages: Sequence[bytes], source: str | Sequence[str | None] | None,
               listener: str, transport: str) -> int:
        with self.lock:
            for i, message in enumerate(messages):
                sender = source if source is None or isinstance(source, str) else source[i]
                self.messages.append((message, sender, transport))
        return len(messages)

    def bodies(self) -> list[bytes]:
        with self.lock:
            return [m for m, _, _ in self.messages]


@dataclass
class Running:
    listeners: Listeners
    sink: Collected
    metrics: Metrics
    streams: StreamServer | None
    readers: list[DatagramReader]

    def address(self, transport: str) -> tuple[str, int]:
        for listener in self.listeners.all():
            if listener.transport == transport:
                host, port = listener.sock.getsockname()[:2]
                return host, port
        raise KeyError(transport)


Start = Callable[[ListenSettings], Running]


def name_of(running: Running, transport: str) -> str:
    host, port = running.address(transport)
    return f"{transport}://{host}:{port}"


def closed_by_peer(sock: socket.socket) -> bool:
    """The receiver closed (or reset) this connection without reading from it."""
    sock.settimeout(10)
    try:
        return sock.recv(10) == b""
    except ConnectionResetError:
        return True


def base_settings(**changes: object) -> ListenSettings:
    settings = load_settings(env={}).listen
    values: dict[str, object] = {"udp": ["127.0.0.1:0"], "tcp": ["127.0.0.1:0"], **changes}
    return replace(settings, **values)  # type: ignore[arg-type]


@pytest.fixture
def start() -> Iterator[Start]:
    started: list[Running] = []

    def run(settings: ListenSettings) -> Running:
        listeners = open_listeners(settings)
        sink, metrics = Collected(), Metrics()
        from receiver.listen import source_filter

        readers = [DatagramReader(item, sink, lambda _t: True, metrics, source_filter(settings))
                   for item in listeners.datagram]
        for reader in readers:
            reader.start()
        streams = None
        if listeners.stream:
            streams = StreamServer(listeners.stream, settings, sink, metrics, lambda: True)
            streams.start()
        running = Running(listeners, sink, metrics, streams, readers)
        started.append(running)
        return running

    yield run
    for running in started:
        for reader in running.readers:
            reader.stop()
        if running.streams is not None:
            running.streams.stop()
        for reader in running.readers:
            reader.join(2)
        running.listeners.close()


def test_udp_ipv4_and_ipv6_datagrams_arrive_whole_with_sender(start: Start) -> None:
    running = start(base_settings(udp=["127.0.0.1:0", "[::1]:0"], tcp=[]))
    big = b"<134>" + b"x" * 65000
    for listener in running.listeners.datagram:
        host, port = listener.sock.getsockname()[:2]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as client:
            client.sendto(b"<134>hello " + host.encode() + b"\n", (host, port))
            client.sendto(big, (host, port))
    wait_for(lambda: len(running.sink.bodies()) == 4, 10, "4 datagrams")
    assert sorted(running.sink.bodies()) == sorted(
        [b"<134>hello 127.0.0.1\n", b"<134>hello ::1\n", big, big])
    assert {sender for _, sender, _ in running.sink.messages} == {"127.0.0.1", "::1"}


def test_unix_datagram_socket(start: Start, tmp_path: Path) -> None:
    path = str(tmp_path / "log.sock")
    running = start(base_settings(udp=[], tcp=[], unix=[path]))
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
        client.sendto(b"<134>via unix\n", path)
    wait_for(lambda: running.sink.bodies() == [b"<134>via unix\n"], 10, "unix datagram")
    assert running.sink.messages[0][1] is None


def test_tcp_lf_and_octet_counting_connections(start: Start) -> None:
    running = start(base_settings(udp=[]))
    address = running.address("tcp")
    with socket.create_connection(address) as lf, socket.create_connection(address) as octet:
        lf.sendall(b"<134>one\n<134>two\n")
        octet.sendall(b"8 <134>abc9 <134>defg")
    wait_for(lambda: len(running.sink.bodies()) == 4, 10, "4 messages")
    assert sorted(running.sink.bodies()) == [b"<134>abc", b"<134>defg", b"<134>one", b"<134>two"]


def test_a_line_without_newline_for_megabytes_is_cut_and_counted(start: Start) -> None:
    running = start(base_settings(udp=[], max_message_bytes=4096))
    with socket.create_connection(running.address("tcp")) as client:
        chunk = b"z" * 65536
        for _ in range(64):  # 4 MiB without a newline
            client.sendall(chunk)
        client.sendall(b"\n<134>after\n")
    wait_for(lambda: b"<134>after" in running.sink.bodies(), 20, "the line after the garbage")
    assert running.sink.bodies() == [b"z" * 4096, b"<134>after"]
    assert running.metrics.messages_truncated.labels(name_of(running, "tcp"))._value.get() == 1


def test_allowlist_refuses_other_sources_and_counts_them(start: Start) -> None:
    running = start(base_settings(allow=["10.0.0.0/8"]))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(b"<134>refused\n", running.address("udp"))
    with socket.create_connection(running.address("tcp")) as client:
        client.sendall(b"<134>refused too\n")
        assert closed_by_peer(client)
    udp_name = name_of(running, "udp")
    wait_for(lambda: running.metrics.messages_refused.labels(udp_name)._value.get() == 1, 10, "refusal")
    tcp_name = name_of(running, "tcp")
    refused = running.metrics.connections_refused.labels(tcp_name, "source_not_allowed")._value.get()
    assert refused == 1
    assert running.sink.bodies() == []


def test_connection_limits_per_source_and_total(start: Start) -> None:
    running = start(base_settings(udp=[], max_connections=3, max_connections_per_source=2))
    address = running.address("tcp")
    first, second = socket.create_connection(address), socket.create_connection(address)
    first.sendall(b"<134>1\n")
    second.sendall(b"<134>2\n")
    wait_for(lambda: len(running.sink.bodies()) == 2, 10, "two connections admitted")
    third = socket.create_connection(address)
    assert closed_by_peer(third)
    name = name_of(running, "tcp")
    assert running.metrics.connections_refused.labels(name, "max_connections_per_source")._value.get() == 1
    for sock in (first, second, third):
        sock.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    directory = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("haproxy.example")
    paths = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server.key"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    server.private_key_pem.write_to_path(str(paths["key"]))
    return {"paths": paths, "ca": ca, "client": client}


def test_tls_listener_with_required_client_certificate(start: Start, pki: dict[str, object]) -> None:
    paths = pki["paths"]
    assert isinstance(paths, dict)
    settings = base_settings(udp=[], tcp=[], tls=["127.0.0.1:0"], tls_cert=str(paths["cert"]),
                             tls_key=str(paths["key"]), tls_client_ca=str(paths["ca"]))
    running = start(settings)
    address = running.address("tls")
    ca, client_cert = pki["ca"], pki["client"]
    assert isinstance(ca, trustme.CA) and isinstance(client_cert, trustme.LeafCert)

    good = ssl.create_default_context()
    ca.configure_trust(good)
    client_cert.configure_cert(good)
    with socket.create_connection(address) as raw, good.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"<134>over tls\n")
    wait_for(lambda: running.sink.bodies() == [b"<134>over tls"], 10, "a TLS message")

    anonymous = ssl.create_default_context()
    ca.configure_trust(anonymous)
    with socket.create_connection(address) as raw, \
            anonymous.wrap_socket(raw, server_hostname="localhost") as tls:
        try:  # TLS 1.3: the refusal arrives after the client's side of the handshake
            tls.sendall(b"<134>no certificate\n")
            assert tls.recv(10) == b""
        except (ssl.SSLError, ConnectionError):
            pass
    failed = running.metrics.connections_refused.labels(name_of(running, "tls"), "tls_handshake_failed")
    wait_for(lambda: failed._value.get() == 1, 10, "the refused handshake counted")
    assert running.sink.bodies() == [b"<134>over tls"]


def test_a_busy_address_is_reported_with_its_setting() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        settings = base_settings(udp=[f"127.0.0.1:{port}"], tcp=[])
        expected = r"listen.udp\[0\] = '127.0.0.1:\d+': cannot listen: Address already in use"
        with pytest.raises(ListenError, match=expected):
            open_listeners(settings)
