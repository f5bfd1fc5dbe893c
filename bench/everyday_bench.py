"""CPU the receiver's processes spend at an everyday rate, per process and per thread.

    .venv/bin/python bench/everyday_bench.py --proto tcp --rate 2000 --count 60000
    .venv/bin/python bench/everyday_bench.py --proto tcp --framing octet --rate 500 --count 20000
    .venv/bin/python bench/everyday_bench.py --proto udp --checkout ../main --checkout . --repeat 2

Starts `receiver run` (of `--checkout`, default this one, with that checkout's .venv) against
bench/nullsink.py, warms it up, then sends `--count` lines of bench/workload.py at `--rate`
lines a second (paced every millisecond, one line a datagram or one framed line a stream
write, as HAProxy sends them) and prints the CPU seconds every thread of the receiver's
processes used meanwhile (/proc/PID/task/TID/schedstat), their sum, µs a message, the peak
RSS, how long after the last line was sent the null sink had them all, and the delay of the
lines in steady flow (coalescing waits, the worker's batch age, shipping). With several
`--checkout`s they run alternately (the order reversed every other turn), `--repeat` times
each, and their medians close the report. At everyday rates the cost is per wake-up more than
per message, and a shared machine is noisy: compare side by side in one sitting, by medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.workload import lines  # noqa: E402

TICK = 0.001  # the sender's pacing step
WARM_UP = 2000


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Sender:
    """Paced sending of framed lines over one UDP socket or one TCP connection."""

    def __init__(self, proto: str, framing: str, port: int) -> None:
        self.proto, self.framing = proto, framing
        kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.connect(("127.0.0.1", port))
        self.started: float | None = None  # when the current `send` began

    def frame(self, line: bytes) -> bytes:
        if self.proto == "udp":
            return line
        return b"%d %s" % (len(line), line) if self.framing == "octet" else line + b"\n"

    def send(self, payload: list[bytes], rate: float) -> float:
        """Send at `rate` lines a second (absolute schedule); returns when the last was sent."""
        frames = [self.frame(line) for line in payload]
        start, sent = time.monotonic(), 0
        self.started = start
        while sent < len(frames):
            due = min(len(frames), int((time.monotonic() - start) * rate) + 1)
            for data in frames[sent:due]:
                self.sock.send(data)
            sent = due
            next_due = start + sent / rate
            delay = next_due - time.monotonic()
            if delay > 0:
                time.sleep(max(delay, TICK))
        return time.monotonic()

    def close(self) -> None:
        self.sock.close()


def sink_stats(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats/sink", timeout=5) as answer:
        return {key: int(value) for key, value in json.load(answer).items()}


def sink_docs(port: int) -> int:
    return sink_stats(port)["docs"]


def ready(tcp: int, sink_port: int) -> bool:
    """The receiver accepts connections and the sink answers."""
    try:
        socket.create_connection(("127.0.0.1", tcp), timeout=5).close()
        sink_docs(sink_port)
    except OSError:
        return False
    return True


def wait_docs(port: int, wanted: int, timeout: float) -> float | None:
    """Until the sink holds `wanted` documents; the time it did, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sink_docs(port) >= wanted:
            return time.monotonic()
        time.sleep(0.01)
    return None


class LagWatch:
    """Samples the sink's count while lines are sent: a sample's lag is how long ago the line
    the count has reached was sent (the schedule says when), so the delay of events on their
    way in steady flow, not only at the end."""

    def __init__(self, port: int, base: int, rate: float) -> None:
        self.port, self.base, self.rate = port, base, rate
        self.lags: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self, sender: Sender) -> None:
        self.sender = sender
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.1):
            started = getattr(self.sender, "started", None)
            docs = sink_docs(self.port) - self.base
            if started is None or docs <= 0:
                continue
            self.lags.append(time.monotonic() - (started + docs / self.rate))

    def finish(self) -> tuple[float, float]:
        self.stop.set()
        self.thread.join()
        lags = sorted(self.lags) or [0.0]
        return lags[len(lags) // 2], lags[-1]


def session_pids(leader: int) -> list[int]:
    out = subprocess.run(["pgrep", "-s", str(leader)], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def thread_cpu(leader: int) -> dict[tuple[int, str, str], tuple[float, int]]:
    """CPU seconds and wake-ups (voluntary context switches: each sleep ends in one) of every
    thread of the session's processes (schedstat: nanoseconds on a CPU, where stat's user and
    system times count whole clock ticks)."""
    seen: dict[tuple[int, str, str], tuple[float, int]] = {}
    for pid in session_pids(leader):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
                on_cpu = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0]
                status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
            except OSError:
                continue
            switches = status.split("voluntary_ctxt_switches:")[1].split()[0]
            seen[(pid, tid, name)] = (int(on_cpu) / 1e9, int(switches))
    return seen


def peak_rss_kb(leader: int) -> dict[int, int]:
    peaks = {}
    for pid in session_pids(leader):
        try:
            for row in Path(f"/proc/{pid}/status").read_text().splitlines():
                if row.startswith("VmHWM:"):
                    peaks[pid] = int(row.split()[1])
        except OSError:
            continue
    return peaks


@dataclass
class Result:
    receiving: float  # CPU s of the receiving process
    workers: float  # CPU s of its worker processes
    busiest_thread: float  # of the receiving process (the stream or datagram reader)
    delay_median: float
    delay_max: float


def run(args: argparse.Namespace, checkout: Path) -> Result:
    python = checkout / ".venv" / "bin" / "python"
    sink_port, udp, tcp = free_port(), free_port(socket.SOCK_DGRAM), free_port()
    work = Path(tempfile.mkdtemp(prefix="everyday-"))
    sink = subprocess.Popen([sys.executable, str(HERE / "nullsink.py"), "--port", str(sink_port),
                             "--ready-file", str(work / "sink-ready")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    receiver = subprocess.Popen(
        [str(python), "-m", "receiver", "run", "--udp", f"127.0.0.1:{udp}",
         "--tcp", f"127.0.0.1:{tcp}", "--elasticsearch", f"http://127.0.0.1:{sink_port}",
         "--spool-dir", str(work / "spool"), "--metrics", "", *args.receiver_args],
        cwd=checkout, start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=open(work / "receiver.log", "wb"))  # noqa: SIM115
    sender: Sender | None = None
    try:
        payload = lines(WARM_UP + args.count)
        deadline = time.monotonic() + 60
        while not ready(tcp, sink_port):  # the receiver binds every socket before it listens
            if time.monotonic() > deadline or receiver.poll() is not None:
                raise SystemExit(f"the receiver did not start: {(work / 'receiver.log').read_text()}")
            time.sleep(0.2)
        sender = Sender(args.proto, args.framing, udp if args.proto == "udp" else tcp)
        sender.send(payload[:WARM_UP], args.rate)
        if wait_docs(sink_port, WARM_UP, 60) is None:
            raise SystemExit("the warm-up did not reach the sink")
        time.sleep(1.0)
        requests = sink_stats(sink_port)["bulk_requests"]
        before, started = thread_cpu(receiver.pid), time.monotonic()
        watch = LagWatch(sink_port, WARM_UP, args.rate)
        sender.started = None
        watch.start(sender)
        last_sent = sender.send(payload[WARM_UP:], args.rate)
        lags = watch.finish()
        arrived = wait_docs(sink_port, WARM_UP + args.count, 60)
        time.sleep(max(0.0, last_sent + args.settle - time.monotonic()))
        after, elapsed = thread_cpu(receiver.pid), time.monotonic() - started
        requests = sink_stats(sink_port)["bulk_requests"] - requests
        print(f"  {requests} bulk requests, {args.count / max(requests, 1):.0f} documents each")
        return report(args, checkout, receiver.pid, before, after, elapsed,
                      None if arrived is None else arrived - last_sent, lags,
                      peak_rss_kb(receiver.pid))
    finally:
        if sender is not None:
            sender.close()
        os.killpg(receiver.pid, signal.SIGTERM)
        receiver.wait(30)
        sink.terminate()
        sink.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def report(args: argparse.Namespace, checkout: Path, leader: int,
           before: dict[tuple[int, str, str], tuple[float, int]],
           after: dict[tuple[int, str, str], tuple[float, int]],
           elapsed: float, tail: float | None, lags: tuple[float, float],
           rss: dict[int, int]) -> Result:
    framing = f" ({args.framing})" if args.proto == "tcp" else ""
    print(f"{checkout}: {args.proto}{framing} {args.count} lines at {args.rate:g}/s, "
          f"{elapsed:.1f} s")
    per_process: dict[int, float] = {}
    busiest = 0.0
    for key in sorted(after):
        used = after[key][0] - before.get(key, (0.0, 0))[0]
        wakeups = after[key][1] - before.get(key, (0.0, 0))[1]
        per_process[key[0]] = per_process.get(key[0], 0.0) + used
        if key[0] == leader:
            busiest = max(busiest, used)
        if used >= 0.005:
            print(f"  {key[0]:>7} {key[1]:>7} {key[2]:<16} {used:6.3f} s "
                  f"{wakeups / elapsed:6.1f} wake-ups/s")
    for pid, used in per_process.items():
        role = "receiving" if pid == leader else "worker"
        print(f"  {role} process {pid}: {used:.3f} s, peak RSS {rss.get(pid, 0) / 1024:.0f} MiB")
    total = sum(per_process.values())
    latency = "not all arrived" if tail is None else f"{tail:.2f} s"
    print(f"  total {total:.2f} s CPU, {total / args.count * 1e6:.1f} µs a message; the last "
          f"line reached the sink {latency} after it was sent")
    print(f"  delay while sending (sampled every 0.1 s): median {lags[0]:.2f} s, "
          f"max {lags[1]:.2f} s", flush=True)
    receiving = per_process.get(leader, 0.0)
    return Result(receiving, total - receiving, busiest, *lags)


def summary(results: dict[Path, list[Result]]) -> None:
    print("medians (CPU s: receiving process, its busiest thread, workers, total; delay s):")
    for checkout, rows in results.items():
        def median(values: list[float]) -> float:
            return statistics.median(values)
        print(f"  {checkout}: {median([r.receiving for r in rows]):.3f} "
              f"{median([r.busiest_thread for r in rows]):.3f} "
              f"{median([r.workers for r in rows]):.3f} "
              f"{median([r.receiving + r.workers for r in rows]):.3f}; delay median "
              f"{median([r.delay_median for r in rows]):.2f} max "
              f"{max(r.delay_max for r in rows):.2f} ({len(rows)} runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proto", choices=("udp", "tcp"), default="tcp")
    parser.add_argument("--framing", choices=("lf", "octet"), default="lf",
                        help="TCP framing (RFC 6587): LF-terminated or octet-counted")
    parser.add_argument("--rate", type=float, default=2000.0, help="lines a second")
    parser.add_argument("--count", type=int, default=60000)
    parser.add_argument("--checkout", action="append",
                        help="a checkout whose .venv and receiver run (default: this one); "
                             "given several times, they run alternately")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each checkout")
    parser.add_argument("--settle", type=float, default=2.5,
                        help="seconds after the last line before the CPU is read again")
    parser.add_argument("receiver_args", nargs="*", help="more `receiver run` options (after --)")
    args = parser.parse_args()
    checkouts = [Path(c).resolve() for c in args.checkout or [str(HERE.parent)]]
    results: dict[Path, list[Result]] = {c: [] for c in checkouts}
    for turn in range(args.repeat):
        for checkout in checkouts if turn % 2 == 0 else checkouts[::-1]:
            results[checkout].append(run(args, checkout))
    summary(results)


if __name__ == "__main__":
    main()
