"""Helpers shared by the tests: free ports, waiting on conditions, running the real receiver,
a real HAProxy and a tiny HTTP backend, and reading an Elasticsearch-compatible server."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest

from receiver.config import CONFIG_ENV

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "data" / "corpus"  # origin and capture: its README.md
T = TypeVar("T")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free for both TCP and UDP right now."""
    while True:
        with socket.socket(socket.AF_INET, kind) as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
            with socket.socket(socket.AF_INET, other) as second:
                try:
                    second.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


def wait_for(condition: Callable[[], T], timeout: float = 30.0, what: str = "condition",
             interval: float = 0.05) -> T:
    """Poll `condition` until it returns a truthy value; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = condition()
        except AssertionError:
            raise  # the condition knows it can never become true (e.g. the process died)
        except Exception as error:  # a server still starting refuses connections
            last = error
        else:
            if result:
                return result
            last = result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def receiver_command(*args: str, env: dict[str, str] | None = None,
                     timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m receiver ARGS` in the repository with the settings in `env` only: this
    environment without its HAPROXY_RECEIVER_* variables, but still with the configuration file
    tests/conftest.py names (without it the command would read the machine's /etc)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HAPROXY_RECEIVER_")}
    clean[CONFIG_ENV] = os.environ[CONFIG_ENV]
    return subprocess.run([sys.executable, "-m", "receiver", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=timeout, env={**clean, **(env or {})})


def tls_files(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """A private CA (trustme) and a certificate it issued for `host`, written to `directory`:
    (certificate chain, its key, the CA's certificate)."""
    import trustme

    authority = trustme.CA()
    leaf = authority.issue_cert(host)
    cert, key, ca = directory / "cert.pem", directory / "key.pem", directory / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    authority.cert_pem.write_to_path(str(ca))
    return cert, key, ca


def http_json(method: str, url: str, body: Any = None, timeout: float = 10.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read()
    return json.loads(text) if text else None


def http_get_text(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


def search_all(es_url: str, index: str = "haproxy-*", size: int = 10000) -> list[dict[str, Any]]:
    """Every document in `index` (after a refresh), as hits with `_id` and `_source`; `_source`
    flattened to dotted names (the receiver writes nested objects, tests name fields dotted)."""
    try:
        http_json("POST", f"{es_url}/{index}/_refresh")
    except urllib.error.HTTPError:
        return []
    result = http_json("POST", f"{es_url}/{index}/_search", {"size": size, "query": {"match_all": {}}})
    hits = list(result["hits"]["hits"])
    for hit in hits:
        hit["_source"] = flatten(hit["_source"])
    return hits


def count(es_url: str, index: str = "haproxy-*") -> int:
    try:
        http_json("POST", f"{es_url}/{index}/_refresh")
        return int(http_json("POST", f"{es_url}/{index}/_count")["count"])
    except urllib.error.HTTPError:
        return 0


@contextmanager
def small_tmpfs(point: Path, size: int) -> Iterator[Path]:
    """A real file system of `size` bytes (tmpfs, private to the owner) mounted at `point` for
    the block: what a full disk does is only seen on one. Skips where it cannot be mounted
    (not root, no `mount`, a container without the capability), naming why."""
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot build a small file system to fill")
    if os.geteuid() != 0:
        pytest.skip(f"mounting a {size}-byte tmpfs needs root (mount -t tmpfs)")
    point.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                              str(point)], capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a {size}-byte tmpfs here: {mounted.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def metric_value(metrics_url: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    return metric_sum(http_get_text(metrics_url), name, **labels)


def metric_sum(exposition: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`, in one scrape's text."""
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        sample, _, value = line.rpartition(" ")
        metric, _, label_text = sample.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
    return total


# The counters an accepted event is counted in on the way in, and the ones that say what became
# of it (shipped, dead-lettered, dropped by policy, still pending, lost to corruption).
INFLOWS = ("haproxy_receiver_messages_received_total", "haproxy_receiver_events_recovered_total")
OUTFLOWS = ("haproxy_receiver_events_shipped_total", "haproxy_receiver_events_dead_lettered_total",
            "haproxy_receiver_events_dropped_total", "haproxy_receiver_spool_events_pending",
            "haproxy_receiver_spool_corrupt_records_total")


class Receiver:
    """`python -m receiver run` as a real child process."""

    def __init__(self, workdir: Path, es_url: str | None, *, udp: bool = True, tcp: bool = True,
                 extra: list[str] | None = None, env: dict[str, str] | None = None,
                 spool_dir: Path | None = None, listen_flags: bool = True) -> None:
        self.workdir = workdir
        self.udp_port = free_port(socket.SOCK_DGRAM) if udp else 0
        self.tcp_port = free_port() if tcp else 0
        self.metrics_port = free_port()
        self.spool_dir = spool_dir or workdir / "spool"
        self.es_url = es_url
        args = [sys.executable, "-m", "receiver", "run", "--spool-dir", str(self.spool_dir),
                "--metrics", f"127.0.0.1:{self.metrics_port}"]
        if listen_flags:  # else the listeners come from a configuration file (`extra`)
            args += ["--udp", f"127.0.0.1:{self.udp_port}"] if udp else ["--udp", ""]
            args += ["--tcp", f"127.0.0.1:{self.tcp_port}"] if tcp else ["--tcp", ""]
        if es_url:
            args += ["--elasticsearch", es_url]
        self.args = args + (extra or [])
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.stdout_path = workdir / "receiver.stdout"
        self.stderr_path = workdir / "receiver.stderr"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> Receiver:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self.process = subprocess.Popen(self.args, stdout=out, stderr=err, env=self.env,
                                            cwd=REPO, start_new_session=True)
        wait_for(self._ready, 30, f"receiver to start (stderr: {self.stderr_path})")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"receiver exited {self.process.returncode}: {self.stderr()}")
        http_get_text(f"http://127.0.0.1:{self.metrics_port}/healthz")
        return True

    def stdout_documents(self) -> list[dict[str, Any]]:
        """The documents written to stdout (without Elasticsearch hosts), by dotted names: they
        are written nested, as shipped; a line being written is left for the next look."""
        lines = self.stdout_path.read_bytes().split(b"\n")[:-1]
        return [flatten(orjson.loads(line)) for line in lines if line.strip()]

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"receiver did not stop within {timeout}s: {self.stderr()}") from None

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def metric(self, name: str, **labels: str) -> float:
        return metric_value(self.metrics_url, name, **labels)

    def flows(self) -> tuple[float, float]:
        """(what came in, what became of it), from one scrape: equal whenever nothing is in
        flight between the receiving process and the spool (every event is counted once on
        each side)."""
        exposition = http_get_text(self.metrics_url)
        return (sum(metric_sum(exposition, name) for name in INFLOWS),
                sum(metric_sum(exposition, name) for name in OUTFLOWS))


class Backend:
    """A tiny HTTP application server behind HAProxy: `/status/NNN` answers NNN, else 200."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                status = 200
                parts = self.path.split("/")
                if len(parts) > 2 and parts[1] == "status" and parts[2][:3].isdigit():
                    status = int(parts[2][:3])
                body = b"" if self.command == "HEAD" else f"path={self.path}\n".encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

            def log_message(self, format: str, *args: object) -> None:
                return

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                return  # HAProxy resets idle keep-alive connections when it stops: not news

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def haproxy_binary() -> str:
    """The `haproxy` program, or a skip that names its package (only root can install it)."""
    binary = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if binary is None:
        pytest.skip("haproxy is not installed: apt-get install haproxy as root "
                    "(tests/run.sh does, when run as root)")
    return binary


@contextmanager
def haproxy(config: Path, env: dict[str, str], workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real haproxy in the foreground (-db) with `config`, stopped (soft stop) afterwards."""
    binary = haproxy_binary()
    check = subprocess.run([binary, "-c", "-f", str(config)], env={**os.environ, **env},
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    log_path = workdir / "haproxy.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen([binary, "-db", "-f", str(config)], env={**os.environ, **env},
                                   stdout=log, stderr=log)
    try:
        bind = env["FRONTEND_BIND"]
        host, _, port = bind.rpartition(":")
        wait_for(lambda: _connectable(host, int(port)), 15, f"haproxy on {bind}")
        yield process
    finally:
        process.send_signal(signal.SIGUSR1)  # soft stop: flushes its log rings
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _connectable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


# --- faults and observation for the crash, restart, bad-input and full-spool tests -----------

class TcpProxy:
    """A TCP forwarder on a fixed local port to `target_url`'s host and port. `stop()` resets
    every connection and refuses new ones, `start()` listens again on the same port: an
    Elasticsearch outage (the in-memory server itself cannot restart without losing its data)."""

    def __init__(self, target_url: str) -> None:
        parsed = urllib.parse.urlsplit(target_url)
        self.target = (parsed.hostname or "127.0.0.1", int(parsed.port or 80))
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._stop = threading.Event()
        self._acceptor: threading.Thread | None = None
        # While stopped, the port stays bound but not listening: connections are refused and
        # no other process (say, another test's server) can take the port meanwhile.
        self._placeholder: socket.socket | None = _bound(0)
        self.port = int(self._placeholder.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._acceptor is not None

    def start(self) -> TcpProxy:
        if self._acceptor is not None:
            return self
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None
        listener = _bound(self.port)
        listener.listen(128)
        listener.settimeout(0.05)  # the accept loop notices `stop()` within this time
        self._stop = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, args=(listener, self._stop),
                                          name="proxy-accept", daemon=True)
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Refuse new connections and reset the open ones (a crash, not a clean close)."""
        if self._acceptor is None:
            return
        self._stop.set()
        self._acceptor.join(5)
        self._acceptor = None
        self._placeholder = _bound(self.port)
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            reset(sock)

    def close(self) -> None:
        """Stop and give the port back."""
        self.stop()
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None

    def _accept(self, listener: socket.socket, stop: threading.Event) -> None:
        with listener:
            while not stop.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                client.settimeout(None)
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    reset(client)
                    continue
                upstream.settimeout(None)
                with self._lock:
                    if stop.is_set():
                        reset(client)
                        reset(upstream)
                        return
                    self._sockets |= {client, upstream}
                for source, sink in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            reset(source)
            reset(sink)


def _bound(port: int) -> socket.socket:
    """A socket bound to `port` on 127.0.0.1 (0: any free port).

    A fixed port can be busy for a moment after its listener was closed: a process being spawned
    meanwhile (the crash tests restart the receiver all the time) holds a copy of every
    descriptor between fork and exec, and so keeps the listener listening until its exec."""
    if port == 0:
        return _bind(0)
    return wait_for(lambda: _bind(port), timeout=10, what=f"port {port} to be free again",
                    interval=0.01)


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


def reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), like a peer that died."""
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def search_sorted(es_url: str, sort_field: str, fields: list[str],
                  index: str = "haproxy-*", page: int = 5000) -> list[dict[str, Any]]:
    """Every document's `fields` (flattened to dotted names) plus `_id`, sorted by `sort_field`,
    paged with search_after: beyond the 10,000-hit window of a plain search."""
    try:
        http_json("POST", f"{es_url}/{index}/_refresh")
    except urllib.error.HTTPError:
        return []
    rows: list[dict[str, Any]] = []
    after: list[Any] | None = None
    while True:
        body: dict[str, Any] = {"size": page, "sort": [{sort_field: "asc"}, {"_id": "asc"}],
                                "_source": fields, "query": {"match_all": {}}}
        if after is not None:
            body["search_after"] = after
        hits = http_json("POST", f"{es_url}/{index}/_search", body)["hits"]["hits"]
        for hit in hits:
            row = flatten(hit["_source"])
            row["_id"] = hit["_id"]
            rows.append(row)
        if len(hits) < page:
            return rows
        after = hits[-1]["sort"]


def flatten(source: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"haproxy": {"seq": 1}}` and `{"haproxy.seq": 1}` both become `{"haproxy.seq": 1}`
    (a value that is itself an object, as `source.geo.location`, is flattened too)."""
    flat: dict[str, Any] = {}
    for key, value in source.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """Resident set size of a process (`VmRSS` of /proc/PID/status; `VmHWM`: its peak), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for pid {pid}")


def group_members(group: int) -> list[int]:
    """Live processes (not zombies) of a process group, e.g. a receiver and its children."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == group:
            members.append(int(entry.name))
    return members
