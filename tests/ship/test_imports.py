"""The ship process's memory: the Elasticsearch output loads one HTTP stack (libcurl), not the
urllib3/elastic_transport/requests stack it replaced (~15 MiB of resident imports)."""

from __future__ import annotations

import subprocess
import sys

from tests.support import REPO

CHECK = """
import sys
import receiver.ship.elasticsearch, receiver.ship.template, receiver.kibana
loaded = sorted(name for name in ("urllib3", "elastic_transport", "elasticsearch", "requests")
                if name in sys.modules)
print("pycurl" in sys.modules, loaded)
"""


def test_the_output_loads_libcurl_and_no_second_http_stack() -> None:
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True []"
