"""The ship process's memory: the Elasticsearch output loads without `requests` (never used)."""

from __future__ import annotations

import subprocess
import sys

from tests.support import REPO

CHECK = """
import sys
import receiver.ship.elasticsearch
assert "requests" not in sys.modules, "requests was loaded"
import requests  # still importable for anyone else
print("ok", bool(requests.__version__))
"""


def test_the_output_does_not_load_requests_but_leaves_it_importable() -> None:
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok True"
