"""`haproxy-receiver import` end to end: the real command in a process of its own, real files,
osmem-server as Elasticsearch (409 on a repeated `create`) or the fault-injecting fake.

The promise checked: every line of every file is indexed exactly once, however often and under
whatever names the files are imported, and whatever stopped an import before."""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.fakes.es_server import FakeElasticsearch
from tests.importer.logs import corpus_frames, mixed_lines, rsyslog_line
from tests.support import (
    REPO,
    count,
    flatten,
    free_port,
    metric_value,
    receiver_command,
    search_all,
    wait_for,
)

SUMMARY = re.compile(r"([\d,]+) new, ([\d,]+) already there, ([\d,]+) dead-lettered")


def env_for(es_url: str, tmp_path: Path, **more: str) -> dict[str, str]:
    return {"HAPROXY_RECEIVER_ELASTICSEARCH__HOSTS": es_url,
            "HAPROXY_RECEIVER_ELASTICSEARCH__DEAD_LETTER_FILE": str(tmp_path / "dead.jsonl"),
            **more}


def do_import(es_url: str, tmp_path: Path, *args: str, **env: str
              ) -> tuple[int, tuple[int, int, int], str]:
    """Run the command; (exit status, (new, already there, dead-lettered), stderr)."""
    result = receiver_command("import", *args, env=env_for(es_url, tmp_path, **env), timeout=300)
    match = SUMMARY.search(result.stderr)
    assert match is not None, result.stderr[-3000:]
    counts = tuple(int(group.replace(",", "")) for group in match.groups())
    return result.returncode, (counts[0], counts[1], counts[2]), result.stderr


def write(path: Path, lines: list[bytes], compress: bool = False) -> None:
    data = b"".join(line + b"\n" for line in lines)
    path.write_bytes(gzip.compress(data) if compress else data)


def pids(lines: list[bytes]) -> list[int]:
    """The `process.pid` of each line (the tests number their lines through it)."""
    found = [re.search(rb"haproxy\[(\d+)\]", line) for line in lines]
    return sorted(int(match[1]) for match in found if match is not None)


def numbered(count: int) -> list[bytes]:
    """`count` different httplog lines: the corpus's, each with a pid of its own."""
    frames = [rsyslog_line(frame) for frame in corpus_frames("httplog.udp.jsonl")]
    return [frames[i % len(frames)].replace(b"haproxy[", b"haproxy[%d" % (i + 1), 1)
            for i in range(count)]


def sources(es_url: str) -> list[dict[str, Any]]:
    return [hit["_source"] for hit in search_all(es_url, size=10000)]


def logged_pids(documents: list[dict[str, Any]]) -> list[int]:
    return sorted(d["process.pid"] for d in documents)


def identity(document: dict[str, Any]) -> tuple[Any, ...]:
    """What tells the corpus's events apart."""
    return (document["@timestamp"], document.get("source.port"), document["haproxy.log_format"])


def test_a_rotated_set_imported_twice_then_renamed_is_indexed_exactly_once(
        es_url: str, tmp_path: Path) -> None:
    lines = mixed_lines()
    assert len(lines) > 120
    part = len(lines) // 4
    oldest, older, current, newer = (lines[:part], lines[part:2 * part], lines[2 * part:3 * part],
                                     lines[3 * part:])
    logs = tmp_path / "log"
    logs.mkdir()
    write(logs / "haproxy.log.2.gz", oldest, compress=True)
    write(logs / "haproxy.log.1", older)
    write(logs / "haproxy.log", current)
    first = oldest + older + current

    status, counts, text = do_import(es_url, tmp_path, str(logs))
    assert status == 0, text
    assert counts == (len(first), 0, 0)
    assert count(es_url) == len(first)
    # again, with a glob overlapping the directory: every line is already there
    status, counts, text = do_import(es_url, tmp_path, str(logs), str(logs / "haproxy.log*"))
    assert status == 0, text
    assert counts == (0, len(first), 0)
    assert count(es_url) == len(first)
    # rotation: each file moves on (and .1 gets compressed), a new live file begins
    (logs / "haproxy.log.2.gz").rename(logs / "haproxy.log.3.gz")
    write(logs / "haproxy.log.2.gz", older, compress=True)
    (logs / "haproxy.log.1").unlink()
    (logs / "haproxy.log").rename(logs / "haproxy.log.1")
    write(logs / "haproxy.log", newer)
    status, counts, text = do_import(es_url, tmp_path, str(logs))
    assert status == 0, text
    assert counts == (len(newer), len(first), 0)

    documents = sources(es_url)
    assert len(documents) == len(lines)
    assert Counter(map(identity, documents)) == Counter(
        identity(document) for document in expected_documents(lines))
    assert {d["haproxy.log_format"] for d in documents} >= {"httplog", "json"}
    assert {d["haproxy.syslog_format"] for d in documents} == {"file", "iso-file"}
    assert all("import" in d["tags"] for d in documents)
    paths = Counter(d["log.file.path"] for d in documents)
    # each event keeps the path it was first indexed under
    assert paths == {str(logs / "haproxy.log.2.gz"): len(oldest),
                     str(logs / "haproxy.log.1"): len(older), str(logs / "haproxy.log"): len(current)
                     + len(newer)}


def expected_documents(lines: list[bytes]) -> list[dict[str, Any]]:
    """What `parse` makes of the lines (no window: the corpus is from November 2026)."""
    result = subprocess.run([sys.executable, "-m", "receiver", "parse", "--compact"],
                            input=b"\n".join(lines) + b"\n", capture_output=True, cwd=REPO,
                            timeout=60, check=True)
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_a_file_appended_to_during_the_import_is_read_to_its_last_whole_line(
        es_url: str, tmp_path: Path) -> None:
    lines = numbered(3000)
    path = tmp_path / "haproxy.log"
    write(path, lines[:1000])
    with path.open("ab") as handle:  # a writer in the middle of a line
        handle.write(lines[1000][:40])
    status, counts, text = do_import(es_url, tmp_path, str(path))
    assert status == 0, text
    assert counts == (1000, 0, 0)
    assert "40 bytes after the last line end" in text

    stop = threading.Event()

    def append() -> None:  # goes on writing while the next import reads
        with path.open("ab", buffering=0) as handle:
            handle.write(lines[1000][40:] + b"\n")
            for line in lines[1001:2500]:
                if stop.is_set():
                    break
                handle.write(line[:30])
                handle.write(line[30:] + b"\n")

    writer = threading.Thread(target=append)
    writer.start()
    try:
        status, counts, text = do_import(es_url, tmp_path, str(path), "--workers", "1")
    finally:
        stop.set()
        writer.join(30)
    assert status == 0, text
    assert counts[1] == 1000 and counts[2] == 0  # what it read beyond is new, whole lines only
    with path.open("ab") as handle:
        handle.write(b"".join(line + b"\n" for line in lines[2500:]))
    status, counts, text = do_import(es_url, tmp_path, str(path))
    assert status == 0, text
    documents = sources(es_url)
    assert len(documents) == len(lines) == sum(counts[:2])
    assert logged_pids(documents) == pids(lines)
    assert not [d for d in documents if "_haproxy_parse_failure" in d.get("tags", [])]


def test_damaged_unreadable_and_binary_files_are_named_and_the_rest_is_imported(
        es_url: str, tmp_path: Path) -> None:
    lines = [rsyslog_line(frame) for frame in corpus_frames("httplog.udp.jsonl")]
    good = tmp_path / "haproxy.log"
    write(good, lines)
    cut = tmp_path / "haproxy.log.2.gz"  # other lines (the same would be "already there")
    older = numbered(len(lines))
    members = gzip.compress(b"".join(line + b"\n" for line in older[:20])) + gzip.compress(
        b"".join(line + b"\n" for line in older[20:]))
    first_member = members.index(b"\x1f\x8b", 2)
    cut.write_bytes(members[: first_member + (len(members) - first_member) // 2])
    binary = tmp_path / "core"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\0" + bytes(range(256)) * 64)
    gone = tmp_path / "haproxy.log.1"
    gone.symlink_to(tmp_path / "deleted")

    status, counts, text = do_import(es_url, tmp_path, str(good), str(cut), str(binary),
                                     str(gone))
    assert status == 1, text
    assert f"{cut}: gzip member 2 (at compressed byte {first_member})" in text
    assert f"{binary}: binary content" in text
    assert f"{gone}: cannot be read: No such file or directory" in text
    assert "3 of 4 files could not be read whole" in text
    documents = sources(es_url)
    by_file = Counter(d["log.file.path"] for d in documents)
    assert by_file[str(good)] == len(lines)
    assert 20 <= by_file[str(cut)] < len(lines)  # the first member, and the second's whole lines
    assert counts == (len(documents), 0, 0)


def slow_import(es_url: str, tmp_path: Path, lines: list[bytes], *more: str
                ) -> tuple[subprocess.Popen[bytes], bytes]:
    """An import of a file and then stdin, half of stdin written and the pipe held open: it
    cannot end before the test lets it. Returns the process and the rest of stdin."""
    write(tmp_path / "haproxy.log.1", lines[: len(lines) // 2])
    piped = b"".join(line + b"\n" for line in lines[len(lines) // 2:])
    env = {**os.environ, **env_for(es_url, tmp_path, HAPROXY_RECEIVER_ELASTICSEARCH__BATCH_EVENTS="20")}
    process = subprocess.Popen(
        [sys.executable, "-m", "receiver", "import", *more, str(tmp_path / "haproxy.log.1"), "-"],
        cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    assert process.stdin is not None
    process.stdin.write(piped[: len(piped) // 2])  # ends in the middle of a line
    process.stdin.flush()
    wait_for(lambda: count(es_url) > len(lines) // 2 + 100, timeout=120,
             what="the import reading stdin")
    assert process.poll() is None
    return process, piped


def import_again(es_url: str, tmp_path: Path, piped: bytes) -> tuple[int, list[int], str]:
    result = subprocess.run(
        [sys.executable, "-m", "receiver", "import", str(tmp_path / "haproxy.log.1"), "-"],
        input=piped, capture_output=True, cwd=REPO, timeout=300,
        env={**os.environ, **env_for(es_url, tmp_path)})
    text = result.stderr.decode()
    match = SUMMARY.search(text)
    assert match is not None, text
    return result.returncode, [int(group.replace(",", "")) for group in match.groups()], text


def test_kill_9_during_an_import_then_again_loses_and_duplicates_nothing(
        es_url: str, tmp_path: Path) -> None:
    # 3,000 lines in bulk requests of 20: the kill lands among ~80 acknowledged requests, the
    # file done and stdin half read (6,000 took twice as long to show the same)
    lines = numbered(3000)
    process, piped = slow_import(es_url, tmp_path, lines)
    try:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    before = count(es_url)
    assert len(lines) // 2 < before < len(lines)
    status, counts, text = import_again(es_url, tmp_path, piped)
    assert status == 0, text
    assert counts[0] + counts[1] == len(lines)
    assert counts[1] == before  # what the killed run delivered: nothing new, nothing twice
    assert logged_pids(sources(es_url)) == pids(lines)


def test_year_from_the_file_across_new_year_and_no_receive_window(
        es_url: str, tmp_path: Path) -> None:
    bodies = [frame.split(b": ", 1)[1] for frame in corpus_frames("events.udp.jsonl")]
    dates = [b"Dec 20 10:00:00", b"Dec 31 23:59:58", b"Dec 31 23:59:59", b"Jan  1 00:00:00",
             b"Jan  1 00:00:02"]
    lines = [date + b" lb1 haproxy[7]: " + bodies[i] for i, date in enumerate(dates)]
    path = tmp_path / "haproxy.log.1"
    write(path, lines)
    mtime = datetime(2027, 1, 1, 0, 5, tzinfo=UTC).timestamp()
    os.utime(path, (mtime, mtime))
    status, counts, text = do_import(es_url, tmp_path, str(path))
    assert (status, counts) == (0, (len(lines), 0, 0)), text
    stamps = sorted(d["@timestamp"] for d in sources(es_url))
    assert stamps == ["2026-12-20T10:00:00.000Z", "2026-12-31T23:59:58.000Z",
                      "2026-12-31T23:59:59.000Z", "2027-01-01T00:00:00.000Z",
                      "2027-01-01T00:00:02.000Z"]
    # 12 days before the file's time: beyond parse.max_past, yet not re-stamped
    assert not [d for d in sources(es_url) if "_timestamp_out_of_range" in d.get("tags", [])]


def test_since_until_and_dry_run(es_url: str, tmp_path: Path) -> None:
    lines = mixed_lines()
    path = tmp_path / "haproxy.log"
    write(path, [*lines, b"", b"   "])
    documents = expected_documents(lines)
    middle = sorted(d["@timestamp"] for d in documents)[len(documents) // 2]
    dry = receiver_command("import", "--dry-run", str(path), env=env_for(es_url, tmp_path))
    assert dry.returncode == 0, dry.stderr
    formats = Counter(d["haproxy.log_format"] for d in documents)
    by_format = ", ".join(f"{name} {number}" for name, number in sorted(
        formats.items(), key=lambda item: (-item[1], item[0])))
    assert f"{path} (plain): {len(lines):,} lines: {by_format}; 2 blank lines skipped" in dry.stderr
    assert formats["httplog"] > 50 and formats["json"] > 50
    assert count(es_url) == 0

    status, counts, text = do_import(es_url, tmp_path, "--until", middle, str(path))
    early = sum(d["@timestamp"] < middle for d in documents)
    assert status == 0, text
    assert counts == (early, 0, 0)
    assert f"{len(lines) - early:,} outside the period" in text
    status, counts, text = do_import(es_url, tmp_path, "--since", middle, str(path))
    assert status == 0, text
    assert counts == (len(lines) - early, 0, 0)
    assert count(es_url) == len(lines)


def test_stdin_gzipped(es_url: str, tmp_path: Path) -> None:
    lines = mixed_lines()
    data = gzip.compress(b"\n".join(lines))  # no line end at the end: the stream's end ends it
    env = {**os.environ, **env_for(es_url, tmp_path)}
    result = subprocess.run([sys.executable, "-m", "receiver", "import", "-"], input=data,
                            capture_output=True, cwd=REPO, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert b"standard input (gzip)" in result.stderr
    documents = sources(es_url)
    assert len(documents) == len(lines)
    assert all("log.file.path" not in d and "import" in d["tags"] for d in documents)
    # the same lines as a file: the same ids
    write(tmp_path / "haproxy.log", lines)
    status, counts, text = do_import(es_url, tmp_path, str(tmp_path / "haproxy.log"))
    assert (status, counts) == (0, (0, len(lines), 0)), text


def test_throttling_is_waited_out_and_refused_documents_dead_lettered(tmp_path: Path) -> None:
    lines = [rsyslog_line(frame) for frame in corpus_frames("httplog.udp.jsonl")]
    path = tmp_path / "haproxy.log"
    write(path, lines)
    with FakeElasticsearch.start("es8") as fake:
        fake.script(["429", "503", "items:201,429"])
        status, counts, text = do_import(
            fake.url, tmp_path, str(path), HAPROXY_RECEIVER_ELASTICSEARCH__RETRY_INITIAL="0.05")
        assert status == 0, text
        assert counts == (len(lines), 0, 0)
        assert len(fake.documents) == len(lines)
        assert len(fake.bulk_requests()) >= 4
    with FakeElasticsearch.start("es8", reject_fields=("url.query",)) as fake:
        status, counts, text = do_import(fake.url, tmp_path, str(path))
        letters = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
        assert letters and all("url.query" in flatten(letter["document"]) for letter in letters)
        assert status == 1, text
        assert counts == (len(lines) - len(letters), 0, len(letters))
        assert str(tmp_path / "dead.jsonl") in text
    # Refused documents also indexed into a dead-letter index: those are not the import's
    # documents, and are not counted as delivered (nor as already there on the second run).
    (tmp_path / "dead.jsonl").unlink()
    with FakeElasticsearch.start("es8", reject_fields=("url.query",)) as fake:
        status, counts, text = do_import(
            fake.url, tmp_path, str(path),
            HAPROXY_RECEIVER_ELASTICSEARCH__DEAD_LETTER_INDEX="haproxy-dead-%Y")
        assert status == 1, text
        assert counts == (len(lines) - len(letters), 0, len(letters))
        in_letters_index = [index for index, _ in fake.documents.values()
                            if index.startswith("haproxy-dead-")]
        assert len(in_letters_index) == len(letters)


def test_several_workers_share_large_files(es_url: str, tmp_path: Path) -> None:
    lines = numbered(3000)  # was 6,000: the plain file's 2,500 lines are still ~9 pieces
    write(tmp_path / "big.log", lines[:2500])
    write(tmp_path / "small.log.1.gz", lines[2500:], compress=True)
    # pieces of 64 KiB: the plain file is read by both workers at once
    status, counts, text = do_import(es_url, tmp_path, "--workers", "2", "--piece-bytes",
                                     "65536", str(tmp_path))
    assert status == 0, text
    assert counts == (len(lines), 0, 0)
    documents = sources(es_url)
    assert logged_pids(documents) == pids(lines)
    status, counts, text = do_import(es_url, tmp_path, "--workers", "3", str(tmp_path))
    assert (status, counts) == (0, (0, len(lines), 0)), text


def test_a_killed_import_with_workers_leaves_no_process(es_url: str, tmp_path: Path) -> None:
    # Killed as soon as both workers run: 3,000 lines in requests of 20, one at a time, are
    # far from done by then (9,000 only made the import again three times longer)
    lines = numbered(3000)
    write(tmp_path / "a.log", lines[:1500])
    write(tmp_path / "b.log", lines[1500:])
    env = {**os.environ, **env_for(es_url, tmp_path, HAPROXY_RECEIVER_ELASTICSEARCH__BATCH_EVENTS="20",
                                   HAPROXY_RECEIVER_ELASTICSEARCH__MAX_IN_FLIGHT="1")}
    process = subprocess.Popen(
        [sys.executable, "-m", "receiver", "import", "--workers", "2", str(tmp_path)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        children = wait_for(lambda: _workers(process.pid), timeout=120, what="the workers")
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        wait_for(lambda: not [pid for pid in children if os.path.exists(f"/proc/{pid}")
                              and _state(int(pid)) != "Z"], timeout=30, what="workers gone")
    finally:
        if process.poll() is None:
            process.kill()
    status, counts, text = do_import(es_url, tmp_path, "--workers", "2", str(tmp_path))
    assert status == 0, text
    assert sum(counts[:2]) == len(lines)
    assert len(sources(es_url)) == len(lines)


def _workers(parent: int) -> list[str]:
    """The import's worker processes, once both are running."""
    children = [pid for pid in os.listdir("/proc") if pid.isdigit() and _parent(int(pid)) == parent
                and b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    return children if len(children) >= 2 else []


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def test_an_unreachable_output_is_said_at_once(tmp_path: Path) -> None:
    write(tmp_path / "haproxy.log", [b"x"])
    started = time.monotonic()
    result = receiver_command("import", str(tmp_path / "haproxy.log"),
                              env=env_for("http://127.0.0.1:9", tmp_path), timeout=60)
    assert result.returncode == 1
    assert "cannot use the output" in result.stderr and "127.0.0.1:9" in result.stderr
    assert time.monotonic() - started < 50


def test_ctrl_c_stops_with_a_summary_and_a_rerun_finishes(es_url: str, tmp_path: Path) -> None:
    lines = numbered(2000)
    process, piped = slow_import(es_url, tmp_path, lines)
    try:
        process.send_signal(signal.SIGINT)
        # stdin stays open until it has stopped: closed at once (communicate), the import could
        # read its end before it saw the signal and finish normally (seen on a loaded machine)
        process.wait(60)
        _, errors = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    text = errors.decode()
    assert process.returncode == 1, text
    assert "interrupted:" in text and "run the same command again" in text
    status, counts, text = import_again(es_url, tmp_path, piped)
    assert status == 0, text
    assert sum(counts[:2]) == len(lines) and counts[1] > len(lines) // 2
    assert logged_pids(sources(es_url)) == pids(lines)


def test_metrics_are_served_while_it_runs(es_url: str, tmp_path: Path) -> None:
    lines = numbered(1000)  # was 2,000: the scrape comes at the same point, half-way
    url = f"http://127.0.0.1:{free_port()}/metrics"
    process, piped = slow_import(es_url, tmp_path, lines, "--metrics", url[7:-8])
    try:
        parsed = metric_value(url, "haproxy_receiver_events_parsed_total", format="httplog")
        assert parsed > len(lines) // 2
        assert metric_value(url, "haproxy_receiver_bulk_requests_total", outcome="ok") > 0
        _, errors = process.communicate(piped[len(piped) // 2:], timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, errors.decode()
    assert count(es_url) == len(lines)
