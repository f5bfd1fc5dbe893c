"""Import throughput: a log file of N lines -> `haproxy-receiver import --workers W` -> nullsink.

    python3 bench/import_bench.py                              # 1,000,000 lines, 1 and 2 workers
    python3 bench/import_bench.py --lines 200000 --workers 1,2,3 --repeat 2

Writes one plain log file of loadgen-shaped lines (bench/workload.py, each with the `<PRI>`
header removed, as a file writer keeps them; the same messages `bench/ship_bench.py` replays
from a spool), starts the null Elasticsearch (bench/nullsink.py), then runs the real command
(`python -m receiver import`, a fresh process per run, the sink's counters reset) and prints
events/s (lines over the command's wall time, start-up included), the CPU seconds of the
command and its workers, the largest peak RSS among them, and the sink's CPU. Every run ships
to an empty sink: the nullsink answers 201 for everything, so a rerun is as much work as the
first run (against Elasticsearch a rerun costs the same parsing, and 409s).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ship_bench import start_sink  # noqa: E402
from bench.workload import lines  # noqa: E402

NULLSINK = REPO / "bench" / "nullsink.py"


def write_log(path: Path, count: int) -> int:
    with path.open("wb") as out:
        for start in range(0, count, 50000):
            chunk = lines(min(50000, count - start))
            out.write(b"".join(line.split(b">", 1)[1] + b"\n" for line in chunk))
    return path.stat().st_size


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sink_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/_stats/sink", timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def run_once(log: Path, count: int, workers: int, url: str, sink_pid: int,
             workdir: Path) -> dict[str, Any]:
    urllib.request.urlopen(urllib.request.Request(url + "/_stats/sink/reset", method="POST"),
                           timeout=5).read()
    env = {**os.environ, "HAPROXY_RECEIVER_CONFIG": str(workdir / "empty.toml"),
           "HAPROXY_RECEIVER_ELASTICSEARCH__HOSTS": url,
           "HAPROXY_RECEIVER_ELASTICSEARCH__DEAD_LETTER_FILE": str(workdir / "dead.jsonl")}
    sink_before = cpu_of(sink_pid)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "receiver", "import", "--no-progress",
                             "--workers", str(workers), str(log)], cwd=REPO, env=env,
                            capture_output=True, text=True)
    elapsed = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"import failed ({result.returncode}): {result.stderr[-2000:]}")
    docs = int(sink_stats(url)["docs"])
    if docs != count:
        raise SystemExit(f"the sink got {docs} documents of {count}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"workers": workers, "lines": count, "seconds": round(elapsed, 2),
            "events_per_s": round(count / elapsed), "cpu_s": round(cpu, 1),
            "cpu_us_per_event": round(cpu / count * 1e6, 1),
            "peak_rss_mib": round(after.ru_maxrss / 1024),  # the largest process of all runs
            "sink_cpu_s": round(cpu_of(sink_pid) - sink_before, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--port", type=int, default=15922)
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="import-bench-") as tmp:
        workdir = Path(tmp)
        (workdir / "empty.toml").write_text("")
        log = workdir / "haproxy.log"
        size = write_log(log, args.lines)
        print(f"{args.lines:,} lines, {size / 2**20:.0f} MiB: {log}", flush=True)
        sink = start_sink(args.port, workdir)
        url = f"http://127.0.0.1:{args.port}"
        try:
            results = []
            for _ in range(args.repeat):
                for workers in counts:
                    result = run_once(log, args.lines, workers, url, sink.pid, workdir)
                    print(json.dumps(result), flush=True)
                    results.append(result)
        finally:
            sink.terminate()
            sink.wait(10)
    print("\n| workers | events/s | CPU s | CPU µs/event | peak RSS MiB (largest process) | sink CPU s |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['workers']} | {r['events_per_s']:,} | {r['cpu_s']} | {r['cpu_us_per_event']} "
              f"| {r['peak_rss_mib']} | {r['sink_cpu_s']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
