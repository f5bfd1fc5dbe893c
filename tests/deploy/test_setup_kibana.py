"""`haproxy-receiver setup --kibana`: the index template goes to Elasticsearch, the dashboards to
Kibana with their data view on the indices the configuration writes to (the default daily
indices, a custom `index`, a data stream), and the output says what was done in plain words."""

from __future__ import annotations

import subprocess

import pytest

from tests.fakes.kibana_server import running_kibana
from tests.support import receiver_command


def setup(es_url: str, kibana_url: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return receiver_command("setup", "-e", es_url, "--kibana", kibana_url, env=env, timeout=120)


@pytest.mark.parametrize(("env", "pattern"), [
    ({}, "haproxy-*"),
    ({"HAPROXY_RECEIVER_ELASTICSEARCH__INDEX": "weblogs-{haproxy.frontend_name}-%Y.%m"}, "weblogs-*"),
    ({"HAPROXY_RECEIVER_ELASTICSEARCH__DESTINATION": "data_stream",
      "HAPROXY_RECEIVER_ELASTICSEARCH__DATA_STREAM": "logs-haproxy-web"}, "logs-haproxy-web"),
    # `auto` on osmem-server, which has no data streams: where the documents really go
    ({"HAPROXY_RECEIVER_ELASTICSEARCH__DATA_STREAM": "logs-haproxy-web"}, "haproxy-*"),
])
def test_dashboards_look_where_the_configuration_writes(
        es_url: str, env: dict[str, str], pattern: str) -> None:
    with running_kibana() as kibana:
        result = setup(es_url, kibana.url, env)
    assert result.returncode == 0, result.stdout + result.stderr
    (request,) = kibana.imports
    (view,) = [o for o in request.objects if o["type"] == "index-pattern"]
    assert view["attributes"]["title"] == pattern
    assert f"data view on {pattern}" in result.stdout


def test_setup_output_reads_plainly(es_url: str) -> None:
    with running_kibana() as kibana:
        first = setup(es_url, kibana.url, {"HAPROXY_RECEIVER_ELASTICSEARCH__INDEX": "plain-%Y"})
        second = setup(es_url, kibana.url, {"HAPROXY_RECEIVER_ELASTICSEARCH__INDEX": "plain-%Y"})
    lines = first.stdout.splitlines()
    assert lines[0].startswith(f"setup: {es_url}")
    # osmem-server speaks as OpenSearch: no ILM, and the line says so without "unchanged".
    assert lines[1].startswith("  ILM policy: skipped: OpenSearch ") and "has no ILM" in lines[1]
    assert lines[2] == "  index template haproxy-receiver-plain: installed"
    assert "  index template haproxy-receiver-plain: already up to date" in second.stdout.splitlines()
    for text in (first.stdout, second.stdout):
        assert "unchanged" not in text and "not installed" not in text
