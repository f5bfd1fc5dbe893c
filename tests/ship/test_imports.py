"""The ship process's memory: the Elasticsearch output loads without `requests` (never used).

`requests` need not be installed for this: a stand-in package of that name is put first on the
path, so any import of it, installed or not, is seen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import REPO

CHECK = """
import sys
import receiver.ship.elasticsearch
import receiver.ship.process
assert "requests" not in sys.modules, "requests was loaded"
import requests  # the stand-in: proves it was there to be found
print("ok", requests.STAND_IN)
"""


def test_the_output_does_not_load_requests(tmp_path: Path) -> None:
    stand_in = tmp_path / "requests"
    stand_in.mkdir()
    (stand_in / "__init__.py").write_text("STAND_IN = True\n")
    path = os.pathsep.join(filter(None, [str(tmp_path), str(REPO), os.environ.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=REPO, capture_output=True, text=True,
                          timeout=60, check=False, env={**os.environ, "PYTHONPATH": path})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok True"
