"""A message's content cannot overwrite the receiver's own fields (issue 27, item 8): JSON keys
named like them (`log_format`, `syslog_format`, `repairs`, the alias `source`, `@timestamp`,
`tags`, `claimed_time.x` beside the keyword) are kept under their own names in `haproxy.body.*`,
every document is indexed (none refused for a mapping conflict or a write to an alias), and the
metric labels take no value from content: 300 distinct `log_format` values make one series."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from tests.support import Receiver, http_get_text, search_all, wait_for

EVENTS = 300


def hostile(n: int) -> bytes:
    body = {"ci": "10.0.0.1", "ST": 200, "r": f"GET /{n} HTTP/1.1", "seq": n,
            "log_format": f"evil-{n}", "syslog_format": f"sys-{n}", "repairs": f"rep-{n}",
            "source": f"src-{n}", "@timestamp": n, "tags": [f"t{n}"], "claimed_time.x": n,
            "haproxy.log_format": f"dotted-{n}"}
    return b"<134>Nov 25 18:21:18 haproxy[7]: " + json.dumps(body).encode() + b"\n"


def series(metrics: str, name: str) -> list[str]:
    return [line for line in metrics.splitlines() if line.startswith(name + "{")]


def test_content_keys_never_overwrite_the_receivers_fields(tmp_path: Path, es_url: str) -> None:
    receiver = Receiver(tmp_path, es_url, udp=False).start()
    try:
        with socket.create_connection(("127.0.0.1", receiver.tcp_port), timeout=30) as sock:
            sock.sendall(b"".join(hostile(n) for n in range(EVENTS)))
        wait_for(lambda: receiver.metric("haproxy_receiver_events_shipped_total") == EVENTS, 60,
                 "every event shipped")
        documents = sorted((hit["_source"] for hit in search_all(es_url)), key=lambda d: d["haproxy.seq"])
        assert len(documents) == EVENTS
        for n, document in enumerate(documents):
            assert document["haproxy.seq"] == n
            assert document["haproxy.log_format"] == "json"
            assert document["haproxy.syslog_format"] == "local"
            assert "haproxy.repairs" not in document
            assert document["haproxy.body.log_format"] == f"evil-{n}"
            assert document["haproxy.body.syslog_format"] == f"sys-{n}"
            assert document["haproxy.body.repairs"] == f"rep-{n}"
            assert document["haproxy.body.source"] == f"src-{n}"
            assert document["haproxy.body.claimed_time.x"] == n
            assert document["haproxy.@timestamp"] == n  # nobody's name: kept where it was
            assert document["haproxy.tags"] == [f"t{n}"]
            assert document["haproxy.haproxy.log_format"] == f"dotted-{n}"
        # A worker's counters reach the receiving process in its snapshots (at most a second
        # behind); the shipped count comes with the acknowledgements, which can be first.
        # One series, whatever the 300 `log_format` values said.
        one_series = [f'haproxy_receiver_events_parsed_total{{format="json"}} {float(EVENTS)}']
        wait_for(lambda: series(http_get_text(receiver.metrics_url),
                                "haproxy_receiver_events_parsed_total") == one_series, 30,
                 "the parse counters reported as one series")
        assert receiver.metric("haproxy_receiver_events_dead_lettered_total") == 0
        inflow, outflow = receiver.flows()
        assert (inflow, outflow) == (EVENTS, EVENTS)
    finally:
        receiver.stop()


def test_index_names_from_multibyte_and_long_values_are_valid(tmp_path: Path, es_url: str) -> None:
    """Issue 27 item 10: frontends named with multi-byte characters, 1 to 400 of them, make
    valid index names that keep the date: every event indexed, none dead-lettered."""
    receiver = Receiver(tmp_path, es_url, udp=False, env={
        "HAPROXY_RECEIVER_ELASTICSEARCH__INDEX": "haproxy-{haproxy.frontend_name}-%Y.%m.%d"})
    receiver.start()
    frontends = [("é€😀Σ" * 100)[:n] for n in range(1, 401, 4)] + ["..", "_x", "A:B"]
    try:
        with socket.create_connection(("127.0.0.1", receiver.tcp_port), timeout=30) as sock:
            for n, frontend in enumerate(frontends):
                body = {"ci": "10.0.0.1", "ft": frontend, "seq": n}
                sock.sendall(b"<134>Nov 25 18:21:18 haproxy[7]: " + json.dumps(body).encode()
                             + b"\n")
        wait_for(lambda: receiver.metric("haproxy_receiver_events_shipped_total")
                 + receiver.metric("haproxy_receiver_events_dead_lettered_total")
                 == len(frontends), 60, "every event shipped or dead-lettered")
        assert receiver.metric("haproxy_receiver_events_dead_lettered_total") == 0
        hits = search_all(es_url)
        assert len(hits) == len(frontends) == 103
        days = {hit["_source"]["@timestamp"][:10].replace("-", ".") for hit in hits}
        assert [hit["_index"] for hit in hits if not hit["_index"].endswith(
            "-" + hit["_source"]["@timestamp"][:10].replace("-", "."))] == []
        indices = {hit["_index"] for hit in hits}
        assert 252 <= max(len(index.encode()) for index in indices) <= 255  # cut by bytes
        assert {f"haproxy-unknown-{day}" for day in days} & indices  # ".."
        assert {f"haproxy-x-{day}" for day in days} & indices  # "_x"
        inflow, outflow = receiver.flows()
        assert (inflow, outflow) == (len(frontends), len(frontends))
    finally:
        receiver.stop()
