"""Errors of the output stage, importable without loading the HTTP client.

The receiving process only starts the workers and reports their start-up failures; keeping
these here spares it libcurl and the HTTP client (receiver/ship/http.py).
"""

from __future__ import annotations


class OutputError(Exception):
    """The server cannot be used as it is (not Elasticsearch/OpenSearch, refused, ...)."""


class OutputUnavailable(OutputError):
    """No server answered (refused, reset, timed out): try again later."""
