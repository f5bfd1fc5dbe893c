from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from tests.kafka.cluster import MockCluster

if importlib.util.find_spec("confluent_kafka") is None:  # the kafka extra is not installed
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture
def cluster() -> Iterator[MockCluster]:
    mock = MockCluster()
    try:
        yield mock
    finally:
        mock.close()
