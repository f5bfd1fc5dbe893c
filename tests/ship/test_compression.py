"""`elasticsearch.compression`: `auto` gzips unless every host is this machine; no DNS involved."""

from __future__ import annotations

import dataclasses

import pytest

from receiver.config import ConfigError, ElasticsearchSettings, load_settings
from receiver.ship.elasticsearch import ElasticsearchOutput, compresses, is_loopback_url


def settings(hosts: list[str], compression: str = "auto") -> ElasticsearchSettings:
    return dataclasses.replace(
        ElasticsearchSettings(), hosts=hosts, compression=compression  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(("url", "loopback"), [
    ("http://127.0.0.1:9200", True),
    ("http://127.8.9.10:9200", True),
    ("https://localhost:9200", True),
    ("http://LOCALHOST", True),
    ("http://es.localhost:9200", True),
    ("http://[::1]:9200", True),
    ("http://user:secret@127.0.0.1:9200/prefix", True),
    ("http://10.0.0.7:9200", False),
    ("http://[2001:db8::1]:9200", False),
    ("https://es.example.com:9200", False),
    ("http://localhost.example.com", False),  # a name that only starts like localhost
    ("http://[not-an-address", False),
])
def test_loopback_urls(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


def test_auto_compresses_unless_every_host_is_loopback() -> None:
    assert not compresses(settings(["http://127.0.0.1:9200", "http://localhost:9201"]))
    assert compresses(settings(["https://es.example.com:9200"]))
    assert compresses(settings(["http://127.0.0.1:9200", "http://10.0.0.7:9200"]))


def test_on_and_off_are_obeyed_whatever_the_host() -> None:
    assert compresses(settings(["http://127.0.0.1:9200"], "on"))
    assert not compresses(settings(["https://es.example.com:9200"], "off"))


def test_the_output_decides_at_construction() -> None:
    local = ElasticsearchOutput(settings(["http://127.0.0.1:9"]))
    remote = ElasticsearchOutput(settings(["http://es.example.invalid:9200"]))
    try:
        assert (local.compress, remote.compress) == (False, True)
    finally:
        local.close()
        remote.close()


def test_default_is_auto_and_a_wrong_value_names_the_allowed_ones() -> None:
    assert ElasticsearchSettings().compression == "auto"
    loaded = load_settings(env={"HAPROXY_RECEIVER_ELASTICSEARCH__COMPRESSION": "off"})
    assert loaded.elasticsearch.compression == "off"
    with pytest.raises(ConfigError, match="allowed: auto, on, off"):
        load_settings(env={"HAPROXY_RECEIVER_ELASTICSEARCH__COMPRESSION": "gzip"})
