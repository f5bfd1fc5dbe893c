"""README's quick start sends a line to the running receiver dated relative to today (issue 26,
item 6): a fixed date came back tagged `_timestamp_out_of_range` a week later. The README's own
command is run against a real receiver, its UDP port replaced by a free one."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support import REPO, Receiver, flatten, wait_for

DEFAULT_ADDRESS = "/dev/udp/127.0.0.1/5140"


def quick_start_line() -> str:
    [line] = [line for line in (REPO / "README.md").read_text().splitlines()
              if line.startswith('echo "<134>$(date') and line.endswith(DEFAULT_ADDRESS)]
    return line


def test_the_quick_start_line_arrives_with_its_own_date_today(tmp_path: Path) -> None:
    receiver = Receiver(tmp_path, None, tcp=False).start()
    try:
        command = quick_start_line().replace(DEFAULT_ADDRESS, f"/dev/udp/127.0.0.1/{receiver.udp_port}")
        subprocess.run(["bash", "-c", command], check=True, timeout=30)
        text = wait_for(lambda: receiver.stdout_path.read_text().strip(), 30, "the document")
        document = flatten(json.loads(text.splitlines()[0]))  # written nested, as shipped
    finally:
        assert receiver.stop() == 0
    assert "_timestamp_out_of_range" not in document.get("tags", []), document
    assert "haproxy.claimed_time" not in document
    assert document["http.response.status_code"] == 200 and document["source.ip"] == "10.0.0.1"
