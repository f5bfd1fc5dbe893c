"""The one redaction rule (receiver/redaction.py): URLs, Authorization schemes, known secrets."""

from __future__ import annotations

import pytest

from receiver.config import load_settings, redacted
from receiver.redaction import redact


@pytest.mark.parametrize(("text", "expected"), [
    ("https://elastic:pw@es:9200/x", "https://***@es:9200/x"),
    ("proxy http://user:p%40ss@proxy:3128 refused", "proxy http://***@proxy:3128 refused"),
    ("header [Authorization: Basic ZWxhc3RpYzpwdw==] echoed", "header [Authorization: Basic ***] echoed"),
    ("authorization: apikey VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==",
     "authorization: apikey ***"),
    ("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "Bearer ***"),
    ('WWW-Authenticate: Basic realm="security"', 'WWW-Authenticate: Basic realm="security"'),
    ("user [writer] denied, password s3cret-pw", "user [writer] denied, password ***"),
])
def test_redact(text: str, expected: str) -> None:
    assert redact(text, ["s3cret-pw", ""]) == expected


def test_check_config_hides_secrets_and_urls_with_credentials() -> None:
    settings = load_settings(env={
        "HAPROXY_RECEIVER_ELASTICSEARCH__HOSTS": "https://u:host-pw@es:9200",
        "HAPROXY_RECEIVER_ELASTICSEARCH__PROXY": "http://p:proxy-pw@proxy:3128",
        "HAPROXY_RECEIVER_ELASTICSEARCH__USERNAME": "u",
        "HAPROXY_RECEIVER_ELASTICSEARCH__PASSWORD": "pw-1",
    })
    shown = str(redacted(settings))
    assert "host-pw" not in shown and "proxy-pw" not in shown and "pw-1" not in shown
    assert "http://***@proxy:3128" in shown
