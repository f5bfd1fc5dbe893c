from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("confluent_kafka", reason="the kafka extra is not installed")

from tests.kafka.cluster import MockCluster


@pytest.fixture
def cluster() -> Iterator[MockCluster]:
    mock = MockCluster()
    try:
        yield mock
    finally:
        mock.close()
