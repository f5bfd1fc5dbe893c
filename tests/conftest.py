"""Fixtures shared by every test module: one in-memory OpenSearch-compatible server per session,
and a configuration of the tests' own (an empty file) instead of whatever
/etc/haproxy-receiver/config.toml the machine running them may hold."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from osmem_server import OsmemServer


@pytest.fixture(scope="session", autouse=True)
def no_machine_configuration(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every receiver a test starts (they inherit the environment) reads an empty file unless
    the test names another: the tests do not depend on the machine's /etc."""
    empty = tmp_path_factory.mktemp("config") / "empty.toml"
    empty.write_text("")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HAPROXY_RECEIVER_CONFIG", str(empty))
        yield


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
