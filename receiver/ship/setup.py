"""`haproxy-receiver setup` and `setup_on_start`: decide where documents go on this server
(receiver/ship/destination.py), then install the ILM policy and index template for it
(receiver/ship/template.py).

The two modules below stay apart: deciding on a data stream may install its template first
(destination uses template), and a template is built for settings already decided (template
uses neither this module nor destination).
"""

from __future__ import annotations

from receiver.config import ElasticsearchSettings
from receiver.ship.destination import resolve
from receiver.ship.elasticsearch import ElasticsearchOutput
from receiver.ship.errors import OutputError
from receiver.ship.template import SetupError, SetupStep, index_pattern, install


def setup(output: ElasticsearchOutput, settings: ElasticsearchSettings,
          overwrite: bool = True) -> list[SetupStep]:
    """Where documents go on this server, decided; then `template.install` for it."""
    return install(output, resolve(output, settings), overwrite)


def setup_at_start(output: ElasticsearchOutput,
                   settings: ElasticsearchSettings) -> list[SetupStep]:
    """`setup_on_start`: `setup`, replacing what differs only with `template_overwrite` (the
    installer `output.make_output` gives an Elasticsearch output)."""
    return setup(output, settings, settings.template_overwrite)


def run_setup(settings: ElasticsearchSettings) -> int:
    """`haproxy-receiver setup`: print what was done; 0 on success, 1 on failure."""
    return setup_target(settings)[0]


def setup_target(settings: ElasticsearchSettings) -> tuple[int, str]:
    """`run_setup`, and the index pattern documents go to on this server (for the data view)."""
    if not settings.hosts:
        print("setup: elasticsearch.hosts is empty; nothing to set up (documents go to stdout)")
        return 1, ""
    try:
        output = ElasticsearchOutput(settings)
    except OutputError as error:
        print(f"setup failed: {error}")
        return 1, ""
    try:
        steps = setup(output, settings)
        pattern = index_pattern(resolve(output, settings))
    except (OutputError, SetupError) as error:
        print(f"setup failed: {output.redact(str(error))}")
        return 1, ""
    finally:
        output.close()
    assert output.server is not None
    print(f"setup: {output.describe()}")
    for step in steps:
        print(f"  {step.what}: {step.note}")
    return 0, pattern
