"""References an operator follows lead somewhere (issue 26, item 7): no file cites a document
the repository lacks, no deployment file links to a repository that does not exist, and the
benchmark that needs files from outside the clone says so instead of failing obscurely."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.support import REPO

SOURCES = ["pyproject.toml", "Dockerfile", "README.md", *(str(p.relative_to(REPO)) for p in (
    *REPO.glob("receiver/**/*.py"), *REPO.glob("deploy/**/*"), *REPO.glob("charts/**/*"),
    *REPO.glob("bench/*")) if p.is_file())]


def test_every_cited_notes_file_exists() -> None:
    for name in SOURCES:
        text = (REPO / name).read_text(errors="replace")
        for cited in set(re.findall(r"\b([A-Z][A-Z0-9]+(?:-[A-Z0-9]+)+)\b(?!-)", text)):
            if cited.endswith("NOTES"):
                assert list(REPO.glob(f"{cited}*")), f"{name} cites {cited}, absent"


def test_no_deployment_file_links_to_the_nonexistent_repository() -> None:
    for name in ("deploy/systemd/haproxy-receiver.service", "charts/haproxy-receiver/Chart.yaml"):
        assert "github.com/haproxy-receiver" not in (REPO / name).read_text(), name


def test_the_peer_benchmark_without_its_harness_says_what_is_missing(tmp_path: Path) -> None:
    done = subprocess.run(["bash", str(REPO / "bench" / "peerbench.sh")], capture_output=True,
                          text=True, timeout=30, env={"PATH": "/usr/bin:/bin",
                                                      "SHARED_BENCH": str(tmp_path / "none")})
    assert done.returncode == 2 and "not part of this repository" in done.stderr
    assert "bench/ship_bench.py" in done.stderr
