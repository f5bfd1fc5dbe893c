"""Every frame of the real HAProxy 2.6 corpus parses, and agrees with the traffic generator's
ground truth on method, path, status and client port."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson
import pytest

from receiver.config import ParseSettings
from receiver.parse import TAG_FAILURE, TAG_TRUNCATED, Parser
from receiver.parse.fields import unescape_hash
from tests.parse.corpus import RECEIVED_AT, Frame, corpus_files, frames

PARSER = Parser(ParseSettings(keep_original=True))
STANDARD_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "CONNECT", "OPTIONS"}


def expected_path(driver: dict[str, Any]) -> str | None:
    if driver.get("path_b64"):
        return base64.b64decode(driver["path_b64"]).decode("utf-8", "backslashreplace")
    path: str | None = driver.get("path")
    return path


def check_frame(frame: Frame) -> None:
    doc = PARSER.parse(frame.message, RECEIVED_AT)
    where = f"{frame.file}#{frame.index}: {frame.message[:300]!r}\n{doc}"
    orjson.dumps(doc)  # serialisable, valid UTF-8
    assert doc["@timestamp"].startswith("2026-11-25T"), where
    assert len(doc["@timestamp"]) == 24, where
    tags = doc.get("tags", [])
    assert TAG_FAILURE not in tags, where
    driver = frame.driver
    category = driver.get("category") or ""
    original = doc.get("event.original") or doc["message"]
    truncated = TAG_TRUNCATED in tags
    if category.startswith("event-") or driver.get("client_port") is None:
        assert doc["haproxy.log_format"] in ("text", "httplog"), where
        return
    if "source.port" in doc or not truncated:  # CLF puts %cp after the request line
        assert doc["source.port"] == driver["client_port"], where
    assert doc["source.ip"] == "127.0.0.1", where
    if category.startswith("tcp-") or frame.file.startswith("tcplog"):
        assert doc["haproxy.log_format"] == "tcplog", where
        return  # no HTTP fields in tcplog
    if category == "ssl-handshake-fail" and doc["haproxy.log_format"] == "error":
        return
    status = driver.get("status_received")
    if status is not None and ("http.response.status_code" in doc or not truncated):
        assert doc.get("http.response.status_code") == status, where
    # A rejected request carries no method/path: `<BADREQ>`, or `-` from an empty sample.
    badreq = "<BADREQ>" in original or (
        doc.get("http.response.status_code") in (400, 408) and "url.original" not in doc
    )
    method = driver.get("method")
    if method is not None and not badreq and ("http.request.method" in doc or not truncated):
        if frame.file.startswith("json-converter") and method not in STANDARD_METHODS:
            # HAProxy 2.6 stores `method` in a variable as its enum: PATCH/PURGE come out
            # as OPTIONS. The log says OPTIONS; the parser reports what was logged.
            method = "OPTIONS"
        assert doc.get("http.request.method") == method, where
    path = expected_path(driver)
    if path is not None and not badreq:
        # url.original is the target exactly as logged; HAProxy's `#XX` escapes undone, it is
        # what the client sent.
        got = doc.get("url.original")
        if got is not None:
            got = unescape_hash(got)
        if got is None:
            assert truncated, where
        elif got != path:
            # `%r`/`%HU` are capped at tune.http.logurilen, `len` cuts lines: a prefix is right.
            assert len(got) >= 100 and path.startswith(got), where


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_corpus_file(path: Path) -> None:
    problems: list[str] = []
    count = 0
    for frame in frames(path):
        count += 1
        try:
            check_frame(frame)
        except AssertionError as problem:
            problems.append(str(problem))
    assert count > 0
    assert not problems, f"{len(problems)} of {count} frames wrong; first:\n" + "\n\n".join(
        problems[:3])


def test_corpus_is_present() -> None:
    assert len(corpus_files()) >= 28
