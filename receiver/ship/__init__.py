"""Shipping from the spool to Elasticsearch/OpenSearch (or stdout): the output stage.

`Shipper` (shipper.py) drives it; `make_output` picks the output from the settings;
`run_setup` (template.py) is `haproxy-receiver setup`.
"""

from __future__ import annotations

from typing import BinaryIO

from receiver.config import ElasticsearchSettings
from receiver.metrics import Metrics
from receiver.ship.elasticsearch import ElasticsearchOutput, OutputError
from receiver.ship.output import Output
from receiver.ship.shipper import Shipper
from receiver.ship.stdout import StdoutOutput
from receiver.ship.template import run_setup


def make_output(
    settings: ElasticsearchSettings, metrics: Metrics | None, stdout: BinaryIO
) -> Output:
    """Elasticsearch when `hosts` is set, else JSON lines on `stdout`."""
    if settings.hosts:
        return ElasticsearchOutput(settings, metrics)
    return StdoutOutput(stdout)


__all__ = [
    "ElasticsearchOutput", "Output", "OutputError", "Shipper", "StdoutOutput", "make_output",
    "run_setup",
]
