"""The official `elasticsearch` client under the output: its node pool over several hosts (a
node that dies and comes back), and each server kind reached its own way (Elasticsearch 8/9
through the client's product-checked request method, 7.x and OpenSearch through its transport)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from receiver.ship.classify import RequestOutcome
from receiver.ship.elasticsearch import ElasticsearchOutput
from tests.fakes.es_server import FakeCluster, FakeElasticsearch
from tests.ship.harness import Running, es_settings, running_shipper
from tests.ship.memory_spool import MemorySpool, document
from tests.support import wait_for

BODY = b'{"create":{"_index":"haproxy-x","_id":"a1"}}\n{"seq":1}\n'


def sent_items(cluster: FakeCluster) -> int:
    """Documents in every bulk request the nodes processed (a dead node processes none)."""
    return sum(len(r.body.splitlines()) // 2 for node in cluster.nodes
               for r in node.bulk_requests())


def ship(run: Running, spool: MemorySpool, start: int, count: int) -> int:
    spool.add([document(n) for n in range(start, start + count)])
    wait_for(lambda: run.spool.acknowledged_records() == start + count, timeout=60,
             what=f"{start + count} records acknowledged")
    return start + count


def test_a_node_that_dies_and_comes_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "elastic_transport.node_pool")
    with FakeCluster.start(3) as cluster:
        spool = MemorySpool()
        settings = es_settings(cluster.urls, batch_events=10, compression="off")
        with running_shipper(settings, spool, tmp_path) as run:
            shipped = ship(run, spool, 0, 200)
            assert all(node.bulk_requests() for node in cluster.nodes)  # round robin
            dying = cluster.nodes[1]
            cluster.kill(1)
            before = len(dying.bulk_requests())
            shipped = ship(run, spool, shipped, 300)
            assert len(dying.bulk_requests()) == before  # the others took all of it
            assert f"{dying.url}" in caplog.text and "putting on" in caplog.text
            cluster.revive(1)
            # The node is tried again once its back-off is over (1 s, doubling per failure).
            while len(dying.bulk_requests()) == before:
                shipped = ship(run, spool, shipped, 20)
                assert shipped < 20_000, "the revived node never got a request again"
            shipped = ship(run, spool, shipped, 100)
            assert run.value("events_shipped_total") == shipped
            assert run.value("events_retried_total") == 0  # the pool retried on another node
    # Every event once: each was in exactly one processed request, and each is stored.
    assert sent_items(cluster) == shipped
    assert sorted(doc["seq"] for _, doc in cluster.documents.values()) == list(range(shipped))
    assert "marked alive" in caplog.text


def test_every_node_down_then_one_back(tmp_path: Path) -> None:
    with FakeCluster.start(3) as cluster:
        for index in range(3):
            cluster.kill(index)
        spool = MemorySpool([document(n) for n in range(40)])
        settings = es_settings(cluster.urls, batch_events=10)
        with running_shipper(settings, spool, tmp_path) as run:
            wait_for(lambda: run.value("bulk_requests_total", outcome="connection_error") >= 2,
                     what="failed bulk requests")
            cluster.revive(2)
            wait_for(lambda: run.spool.acknowledged_records() == 40, timeout=60,
                     what="40 records acknowledged")
    assert len(cluster.documents) == 40 and sent_items(cluster) == 40


@pytest.mark.parametrize(("flavor", "checked"), [
    ("es8", True), ("es9", True), ("es7", False), ("opensearch", False),
])
def test_each_server_kind_its_way(flavor: str, checked: bool) -> None:
    """8 and 9 go through the client's request method: its product check refuses an answer
    without `X-Elastic-Product`; 7.x and OpenSearch through its transport, which has none."""
    with FakeElasticsearch.start(flavor) as fake:
        output = ElasticsearchOutput(es_settings([fake.url], compression="off"))
        try:
            output.probe()  # with the header: the server is what it says
            fake.product_header = False  # then a proxy in front drops it, say
            result = output.send(BODY, 1)
            status, _ = output.request("GET", "/_index_template/x")
        finally:
            output.close()
    bulk = fake.bulk_requests()[0]
    assert bulk.headers["x-elastic-client-meta"].startswith("es=")  # sent by the client
    assert bulk.headers["user-agent"] == "haproxy-receiver"  # ours, not the client's
    assert status == 404  # an error answer is not checked: it is the server's, as it is
    if checked:
        assert (result.request, result.label) == (RequestOutcome.REJECTED, "rejected")
        assert "X-Elastic-Product" in result.message
    else:
        assert result.request is RequestOutcome.OK


def test_the_product_check_error_is_a_setup_error_not_an_outage() -> None:
    from receiver.ship.errors import OutputError

    with FakeElasticsearch.start("es8") as fake:
        output = ElasticsearchOutput(es_settings([fake.url]))
        try:
            output.probe()
            fake.product_header = False
            with pytest.raises(OutputError, match="X-Elastic-Product"):
                output.request("PUT", "/_index_template/x", {"index_patterns": ["x-*"]})
        finally:
            output.close()
