"""Fixtures shared by every test module: one in-memory OpenSearch-compatible server per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from osmem_server import OsmemServer


@pytest.fixture(scope="session")
def search_server() -> Iterator[OsmemServer]:
    """A real OpenSearch-compatible server (osmem-server), shared by the session."""
    server = OsmemServer.start()
    try:
        yield server
    finally:
        server.process.terminate()
        server.process.wait(10)


@pytest.fixture
def es_url(search_server: OsmemServer) -> Iterator[str]:
    """A fresh, empty clone of the session's server for one test."""
    with search_server.clone() as clone:
        yield clone.url
