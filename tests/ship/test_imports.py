"""The processes' memory: the receiving process never imports the `elasticsearch` client (its
~0.13 s of CPU and ~15 MiB are a worker's, paid when the worker makes its output), and a worker's
requests all go through libcurl: every node of the client's pool is ours (`elastic_transport`
imports urllib3 as its default node's library, but no connection is made with it)."""

from __future__ import annotations

import subprocess
import sys

from tests.support import REPO

CHECK = """
import sys
{imports}
{then}
loaded = sorted(name for name in ("urllib3", "elastic_transport", "elasticsearch", "requests")
                if name in sys.modules)
print("pycurl" in sys.modules, loaded)
"""


def loaded_after(imports: str, then: str = "") -> str:
    done = subprocess.run([sys.executable, "-c", CHECK.format(imports=imports, then=then)],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_receiving_process_and_the_output_modules_do_not_import_the_client() -> None:
    # receiver.service imports the worker pool, wherever it lives.
    assert loaded_after("import receiver.service, receiver.cli\n"
                        "import receiver.ship.elasticsearch, receiver.ship.template\n"
                        "import receiver.ship.classify, receiver.kibana") == "True []"


def test_the_output_loads_the_client_on_libcurl_and_no_second_http_stack() -> None:
    made = ("from receiver.config import ElasticsearchSettings\n"
            "from receiver.ship.elasticsearch import ElasticsearchOutput\n"
            "output = ElasticsearchOutput(ElasticsearchSettings(\n"
            "    hosts=['http://127.0.0.1:9', 'https://127.0.0.2:9']))\n"
            "nodes = output._cluster.transport.node_pool.all()\n"
            "assert len(nodes) == 2 and {type(n).__name__ for n in nodes} == {'CurlNode'}, nodes\n"
            "output.close()")
    pycurl, loaded = loaded_after("", made).split(" ", 1)
    assert pycurl == "True"
    assert "'elasticsearch'" in loaded and "'elastic_transport'" in loaded


def test_a_worker_with_the_client_stays_well_under_100_mib() -> None:
    """What a worker holds before its first batch: its modules, the client, its output (the
    replay benchmark measured 72 MiB at its peak while shipping, README "Dependencies")."""
    made = ("import receiver.service, receiver.ship.shipper, receiver.parse\n"
            "from receiver.config import ElasticsearchSettings\n"
            "from receiver.ship.elasticsearch import ElasticsearchOutput\n"
            "output = ElasticsearchOutput(ElasticsearchSettings(hosts=['http://127.0.0.1:9']))\n"
            "rss = next(int(line.split()[1]) for line in open('/proc/self/status')\n"
            "           if line.startswith('VmRSS:'))\n"
            "assert rss < 80 * 1024, f'{rss / 1024:.0f} MiB'\n")
    assert loaded_after("", made).startswith("True")
