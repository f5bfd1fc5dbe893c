"""A listening port is this process's alone unless `listen.reuse_port` asks to share it (issue
26, item 1): a second `run` beside the service is refused in one line, exit 2, and does not take
the service's UDP datagrams (with SO_REUSEADDR on UDP the kernel handed every one of them to the
newcomer)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.support import REPO, Receiver, free_port, wait_for

LINE = b"<134>Nov 25 18:21:08 haproxy[7]: exclusive port test\n"


def send_udp(port: int, count: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        for _ in range(count):
            client.sendto(LINE, ("127.0.0.1", port))


def second_run(tmp_path: Path, udp: str, tcp: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", "run", "--spool-dir", str(tmp_path / "second-spool"),
         "--metrics", f"127.0.0.1:{free_port()}", "--udp", udp, "--tcp", tcp],
        capture_output=True, text=True, cwd=REPO, timeout=60)


def received(receiver: Receiver) -> float:
    return receiver.metric("haproxy_receiver_messages_received_total",
                           listener=f"udp://127.0.0.1:{receiver.udp_port}")


def test_a_second_receiver_on_the_same_udp_port_is_refused_and_the_first_keeps_everything(
        tmp_path: Path) -> None:
    first = Receiver(tmp_path / "first", None, tcp=False).start()
    try:
        send_udp(first.udp_port, 20)
        wait_for(lambda: received(first) == 20, 30, "the first 20 datagrams")
        address = f"127.0.0.1:{first.udp_port}"
        second = second_run(tmp_path, address, "")
        assert second.returncode == 2, second.stderr
        errors = [line for line in second.stderr.splitlines() if "ERROR" in line]
        assert len(errors) == 1, second.stderr
        assert f"listen.udp[0] = '{address}'" in errors[0] and "in use" in errors[0]
        assert "Traceback" not in second.stderr
        assert not (tmp_path / "second-spool" / "dead-letter.jsonl").exists()
        send_udp(first.udp_port, 20)
        wait_for(lambda: received(first) == 40, 30, "all 40 datagrams at the first receiver")
    finally:
        assert first.stop() == 0


def test_a_tcp_clash_is_refused_the_same_way(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        second = second_run(tmp_path, "", address)
    assert second.returncode == 2, second.stderr
    assert f"listen.tcp[0] = '{address}'" in second.stderr and "Traceback" not in second.stderr


def test_ports_are_shared_only_when_every_process_asks(tmp_path: Path) -> None:
    from receiver.config import ListenSettings
    from receiver.listen import ListenError, open_listeners

    port = free_port(socket.SOCK_DGRAM)
    shared = ListenSettings(udp=[f"127.0.0.1:{port}"], tcp=[f"127.0.0.1:{port}"], reuse_port=True)
    one = open_listeners(shared)
    try:
        two = open_listeners(shared)  # both ask: the kernel spreads the traffic over them
        two.close()
        alone = ListenSettings(udp=[f"127.0.0.1:{port}"], tcp=[])
        try:
            open_listeners(alone).close()
        except ListenError as error:
            assert "listen.udp[0]" in str(error)
        else:
            raise AssertionError("a socket that did not ask to share bound a shared port")
    finally:
        one.close()


def test_a_unix_datagram_socket_in_use_is_not_taken_over(tmp_path: Path) -> None:
    from receiver.config import ListenSettings
    from receiver.listen import ListenError, open_listeners

    path = str(tmp_path / "log.sock")
    settings = ListenSettings(udp=[], tcp=[], unix=[path])
    held = open_listeners(settings)
    try:
        try:
            open_listeners(settings).close()
        except ListenError as error:
            assert f"listen.unix[0] = '{path}'" in str(error)
        else:
            raise AssertionError("a second process took over a Unix datagram socket in use")
    finally:
        held.close()
    open_listeners(settings).close()  # a socket file nobody holds is stale: replaced
