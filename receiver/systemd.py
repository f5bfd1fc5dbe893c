"""systemd's notify protocol (sd_notify) and a watchdog fed by the loops that matter.

Owns talking to the service manager; guarantees that without `NOTIFY_SOCKET` in the
environment (a terminal, a container, a test) every call is a no-op, and that a notification
that cannot be delivered is never an error for the service.

- `Notifier` sends `KEY=value` lines in one datagram to the `AF_UNIX` socket named by
  `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket), as `sd_notify(3)` does, without
  libsystemd: `READY=1`, `RELOADING=1` (with `MONOTONIC_USEC`, which `Type=notify-reload` on
  systemd >= 253 uses to match the answer to its signal), `STOPPING=1`, `WATCHDOG=1`, `STATUS=`.
- `Watchdog` pings `WATCHDOG=1` every half of `WATCHDOG_USEC` (as `sd_watchdog_enabled(3)`
  advises), but only while every registered `Heartbeat` is fresh: each loop whose progress
  matters (a listener, the shipper, the supervising main loop) calls `beat()` as it goes round.
  A wedged loop stops the pings, and systemd restarts the service (`WatchdogSec=`,
  `Restart=on-failure`); the `STATUS=` line names the loop that went silent.
- `ServiceNotifier` strings these together for a service's life: starting, ready (after the
  sockets are bound), a one-line summary refreshed while running, reloading, stopping.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

# A loop that beats at least once a second (the main loop waits 1 s between rounds; listener
# loops wake at least that often) has missed 5 rounds before it counts as wedged: slack for a
# busy 2-core machine, and still far below the 30 s WatchdogSec of the shipped unit.
MIN_SILENCE = 5.0
# STATUS= summaries are refreshed at most this often (each one costs a metrics collection).
STATUS_INTERVAL = 5.0


class Notifier:
    """A client of the service manager's notification socket."""

    def __init__(self, address: str | None) -> None:
        self.address = _socket_address(address) if address else None
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._failed = False

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Notifier:
        return cls((os.environ if env is None else env).get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str) -> bool:
        """Send `KEY=value` lines (keys as given, e.g. `READY="1"`); False when not delivered."""
        if self.address is None:
            return False
        # One datagram, one field per line; a value may not span lines.
        payload = "\n".join(f"{key}={' '.join(str(value).splitlines())}"
                            for key, value in fields.items()).encode("utf-8", "replace")
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.sendto(payload, self.address)
            except OSError as error:
                if not self._failed:  # once: a vanished socket would otherwise log every second
                    log.warning("systemd notification socket %s: %s", self.address_text, error)
                    self._failed = True
                return False
        return True

    @property
    def address_text(self) -> str:
        address = self.address or ""
        return "@" + address[1:] if address.startswith("\0") else address

    def ready(self, status: str = "") -> bool:
        return self.send(READY="1", **({"STATUS": status} if status else {}))

    def reloading(self, status: str = "reloading the configuration") -> bool:
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send(RELOADING="1", MONOTONIC_USEC=str(monotonic_usec), STATUS=status)

    def stopping(self, status: str = "stopping") -> bool:
        return self.send(STOPPING="1", STATUS=status)

    def status(self, text: str) -> bool:
        return self.send(STATUS=text)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG="1")

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


def _socket_address(name: str) -> str | None:
    if name.startswith("@"):
        return "\0" + name[1:]  # Linux abstract namespace
    if name.startswith("/"):
        return name
    log.warning("NOTIFY_SOCKET=%s: only Unix socket paths and @abstract names are supported", name)
    return None


def watchdog_interval(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """The watchdog timeout in seconds when systemd expects pings from this process, else None."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if usec <= 0 or (owner and owner != str(os.getpid() if pid is None else pid)):
        return None  # not set, or meant for another process (we are its child)
    return usec / 1e6


class Heartbeat:
    """The liveness of one loop: `beat()` each time round (a float store: hot-path cheap)."""

    __slots__ = ("last", "max_silence", "name")

    def __init__(self, name: str, max_silence: float) -> None:
        self.name = name
        self.max_silence = max_silence
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()

    def silence(self, now: float) -> float:
        return now - self.last


class Watchdog:
    """Pings `WATCHDOG=1` while every heartbeat is fresh. Disabled (heartbeats still work, and
    cost nothing) when systemd set no watchdog for this process."""

    def __init__(self, notifier: Notifier, timeout: float | None) -> None:
        self.notifier = notifier
        self.timeout = timeout if notifier.enabled else None
        self._heartbeats: list[Heartbeat] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stale_names: tuple[str, ...] = ()
        self.checks = 0  # rounds done (tests wait on it)

    @property
    def enabled(self) -> bool:
        return self.timeout is not None

    def heartbeat(self, name: str, max_silence: float | None = None) -> Heartbeat:
        """Register a loop. `max_silence` defaults to half the watchdog timeout, at least
        `MIN_SILENCE`; a loop that may legitimately sleep longer between beats passes more."""
        default = max((self.timeout or 0.0) / 2, MIN_SILENCE)
        heartbeat = Heartbeat(name, default if max_silence is None else max_silence)
        with self._lock:
            self._heartbeats.append(heartbeat)
        return heartbeat

    def remove(self, heartbeat: Heartbeat) -> None:
        """A loop that ends on purpose (closed listener, reload) stops being watched."""
        with self._lock:
            if heartbeat in self._heartbeats:
                self._heartbeats.remove(heartbeat)

    def stale(self, now: float | None = None) -> list[Heartbeat]:
        now = time.monotonic() if now is None else now
        with self._lock:
            return [h for h in self._heartbeats if h.silence(now) > h.max_silence]

    def check(self) -> bool:
        """One round: ping when everything is fresh; say which loop is silent when not."""
        stale = self.stale()
        names = tuple(h.name for h in stale)
        if names != self._stale_names:
            if names:
                now = time.monotonic()
                silent = ", ".join(f"{h.name} ({h.silence(now):.0f} s)" for h in stale)
                log.error("watchdog: no progress from %s; not pinging systemd, which will restart "
                          "the service", silent)
                self.notifier.status(f"wedged: no progress from {silent}")
            else:
                log.warning("watchdog: every loop makes progress again")
            self._stale_names = names
        self.checks += 1
        return False if stale else self.notifier.watchdog()

    def start(self) -> None:
        if self.timeout is None or self._thread is not None:
            return
        self.check()
        self._thread = threading.Thread(target=self._run, name="systemd-watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self.timeout is not None
        while not self._stop.wait(self.timeout / 2):
            self.check()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None


class ServiceNotifier:
    """A service's life as systemd sees it. `summary` returns the one-line `STATUS=` text."""

    def __init__(self, summary: Callable[[], str], env: Mapping[str, str] | None = None) -> None:
        self.notifier = Notifier.from_environment(env)
        self.watchdog = Watchdog(self.notifier, watchdog_interval(env))
        self._summary = summary
        self._main_loop = self.watchdog.heartbeat("main loop")
        self._status_due = 0.0

    def starting(self, status: str = "starting") -> None:
        self.notifier.status(status)

    def ready(self) -> None:
        """After the listeners are bound: from here on senders are served."""
        self._main_loop.beat()
        self.notifier.ready(self._summary_text())
        self._status_due = time.monotonic() + STATUS_INTERVAL
        self.watchdog.start()

    def tick(self) -> None:
        """Each round of the main loop: it is alive, and the summary is refreshed when due."""
        self._main_loop.beat()
        if self.notifier.enabled and time.monotonic() >= self._status_due:
            self._status_due = time.monotonic() + STATUS_INTERVAL
            if not self.watchdog.stale():  # keep the "wedged" status visible
                self.notifier.status(self._summary_text())

    def reloading(self) -> None:
        self.notifier.reloading()

    def stopping(self, status: str = "stopping") -> None:
        self.watchdog.stop()
        self.notifier.stopping(status)

    def close(self) -> None:
        self.watchdog.stop()
        self.notifier.close()

    def _summary_text(self) -> str:
        if not self.notifier.enabled:
            return ""
        try:
            return self._summary()
        except Exception:  # the summary is a courtesy: never let it stop the service
            log.exception("systemd status summary failed")
            return "running"
