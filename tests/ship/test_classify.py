"""Table-driven tests of the one function that decides what a bulk response means."""

from __future__ import annotations

import json
from typing import Any

import pytest

from receiver.ship.classify import (
    Classification,
    ItemOutcome,
    RequestOutcome,
    classify,
    delivered_all_raw,
)


def item(status: int, error_type: str = "", action: str = "create") -> dict[str, Any]:
    result: dict[str, Any] = {"_index": "haproxy-2026.11.25", "_id": "x", "status": status}
    if error_type:
        result["error"] = {"type": error_type, "reason": f"{error_type} happened",
                           "caused_by": {"type": "illegal_argument_exception",
                                         "reason": "'nope' is not an IP string literal."}}
    return {action: result}


def ok_body(*items: dict[str, Any]) -> dict[str, Any]:
    errors = any(next(iter(i.values()))["status"] >= 300 for i in items)
    return {"took": 1, "errors": errors, "items": list(items)}


WHOLE = [
    # status, body, expected request outcome, metric label
    (401, {"error": {"type": "security_exception", "reason": "unable to authenticate"}},
     RequestOutcome.AUTH, "auth_error"),
    (403, {"error": {"type": "security_exception", "reason": "unauthorized"}},
     RequestOutcome.AUTH, "auth_error"),
    (413, b"too large", RequestOutcome.TOO_LARGE, "too_large"),
    (429, {"error": {"type": "es_rejected_execution_exception", "reason": "rejected"}},
     RequestOutcome.RETRY, "throttled"),
    (500, None, RequestOutcome.RETRY, "server_error"),
    (502, b"<html>bad gateway</html>", RequestOutcome.RETRY, "server_error"),
    (503, {"error": "no master"}, RequestOutcome.RETRY, "server_error"),
    (408, None, RequestOutcome.RETRY, "server_error"),
    (400, {"error": {"type": "parse_exception", "reason": "bad body"}},
     RequestOutcome.REJECTED, "rejected"),
    (406, {"error": "Content-Type header is not supported"}, RequestOutcome.REJECTED, "rejected"),
    (404, None, RequestOutcome.REJECTED, "rejected"),
    (200, {"took": 1}, RequestOutcome.RETRY, "bad_response"),
    (200, b"not json", RequestOutcome.RETRY, "bad_response"),
    (200, {"errors": False, "items": [item(201)]}, RequestOutcome.RETRY, "bad_response"),
]


@pytest.mark.parametrize(("status", "body", "outcome", "label"), WHOLE)
def test_whole_request_outcomes(status: int, body: Any, outcome: RequestOutcome,
                                label: str) -> None:
    expected_items = 2
    result = classify(status, body, expected_items)
    assert (result.request, result.label, result.status) == (outcome, label, status)
    assert result.failures == ()


ITEMS = [
    # item statuses sent back, expected outcome per undelivered item (position, outcome)
    ([201, 201], []),
    ([200, 201], []),
    ([201, 409], []),  # 409 on create: already there from an earlier attempt
    ([429, 201], [(0, ItemOutcome.RETRY)]),
    ([500, 503], [(0, ItemOutcome.RETRY), (1, ItemOutcome.RETRY)]),
    ([400, 201], [(0, ItemOutcome.DEAD_LETTER)]),
    ([201, 404], [(1, ItemOutcome.DEAD_LETTER)]),
    ([403, 401], [(0, ItemOutcome.RETRY), (1, ItemOutcome.RETRY)]),
    ([201, 409, 400, 429], [(2, ItemOutcome.DEAD_LETTER), (3, ItemOutcome.RETRY)]),
]


@pytest.mark.parametrize(("statuses", "expected"), ITEMS)
def test_item_outcomes(statuses: list[int], expected: list[tuple[int, ItemOutcome]]) -> None:
    errors = {400: "mapper_parsing_exception", 404: "index_not_found_exception",
              409: "version_conflict_engine_exception", 429: "es_rejected_execution_exception",
              500: "x", 503: "y", 401: "security_exception", 403: "security_exception"}
    body = ok_body(*(item(s, errors.get(s, "")) for s in statuses))
    result = classify(200, body, len(statuses))
    assert result.request is RequestOutcome.OK
    assert [(f.index, f.outcome) for f in result.failures] == expected
    assert result.label == ("partial" if expected else "ok")
    assert result.delivered_all == (not expected)


def test_dead_letter_carries_type_and_reason() -> None:
    result = classify(200, ok_body(item(400, "mapper_parsing_exception")), 1)
    (failure,) = result.failures
    assert failure.status == 400
    assert failure.error_type == "mapper_parsing_exception"
    assert "mapper_parsing_exception happened" in failure.reason
    assert "not an IP string literal" in failure.reason


def test_409_on_index_action_is_not_delivered() -> None:
    result = classify(200, ok_body(item(409, "version_conflict_engine_exception", "index")), 1)
    assert [f.outcome for f in result.failures] == [ItemOutcome.DEAD_LETTER]


def test_unreadable_items_are_retried() -> None:
    body = {"errors": True, "items": [{"create": {"_id": "a"}}, "junk", {"create": {"status": 201}}]}
    result = classify(200, body, 3)
    assert [(f.index, f.outcome) for f in result.failures] == [
        (0, ItemOutcome.RETRY), (1, ItemOutcome.RETRY)]


def test_errors_false_trusts_the_items() -> None:
    body = {"errors": False, "items": [item(201)] * 3}
    assert classify(200, body, 3).delivered_all


RAW_NOT_RECOGNISED = [
    # Each must go the careful way (parse + classify), never count as all delivered.
    (200, b'{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":400}}]}', 2),
    (200, b'{"errors":false,"items":[{"create":{"status":201}}]}', 2),  # one item missing
    (200, b'{"errors":false,"items":[{"create":{"status":201}},{"create":{"status":201}}', 2),
    (200, b'{"errors": false, "items": [{"create": {"status": 201}}, {"create": {"status": 201}}]}',
     2),  # other spacing: fine, just not the fast path
    (200, b'{"items":[{"create":{"status":201}},{"create":{"status":201}}]}', 2),  # no errors key
    (500, b'{"errors":false,"items":[{"create":{"status":201}},{"create":{"status":201}}]}', 2),
    (200, b"", 2),
]


@pytest.mark.parametrize(("status", "raw", "expected_items"), RAW_NOT_RECOGNISED)
def test_raw_fast_path_declines_anything_unusual(status: int, raw: bytes, expected_items: int) -> None:
    assert not delivered_all_raw(status, raw, expected_items)


def test_raw_fast_path_agrees_with_classify() -> None:
    raw = b'{"took":3,"errors":false,"items":[' + b",".join(
        b'{"create":{"_index":"h","_id":"%d","result":"created","_shards":{"total":1},"status":201}}'
        % i for i in range(3)) + b"]}"
    assert delivered_all_raw(201, raw, 3)
    assert classify(201, json.loads(raw), 3) == Classification(RequestOutcome.OK, "ok", 201)


# --- the client's error types (classify_error) ----------------------------------------------

def client_error(kind: str, status: int = 0, body: bytes = b"") -> Exception:
    from elastic_transport import ApiResponseMeta, ConnectionTimeout, HttpHeaders, NodeConfig
    from elastic_transport import ConnectionError as ClientConnectionError
    from elasticsearch import ApiError, UnsupportedProductError

    meta = ApiResponseMeta(status, "1.1", HttpHeaders(), 0.0, NodeConfig("http", "h", 9200))
    if kind == "api":
        return ApiError("refused", meta, body)
    if kind == "product":
        return UnsupportedProductError("not Elasticsearch", meta, body)
    if kind == "timeout":
        return ConnectionTimeout("no answer within 5s from http://h:9200")
    earlier = ClientConnectionError("http://a:9200: Connection refused")
    return ClientConnectionError("http://h:9200: Connection refused", errors=(earlier,))


@pytest.mark.parametrize(("kind", "status", "body", "outcome", "label", "text"), [
    ("api", 429, b'{"error":{"type":"es_rejected_execution_exception","reason":"busy"}}',
     RequestOutcome.RETRY, "throttled", "busy"),
    ("api", 503, b"", RequestOutcome.RETRY, "server_error", ""),
    ("api", 401, b'{"error":"no"}', RequestOutcome.AUTH, "auth_error", "no"),
    ("api", 413, b"", RequestOutcome.TOO_LARGE, "too_large", ""),
    ("api", 404, b"not json", RequestOutcome.REJECTED, "rejected", "not json"),
    ("product", 200, b"{}", RequestOutcome.REJECTED, "rejected", "X-Elastic-Product"),
    ("timeout", 0, b"", RequestOutcome.RETRY, "timeout", "within 5s"),
    ("connection", 0, b"", RequestOutcome.RETRY, "connection_error",
     "http://a:9200: Connection refused; http://h:9200"),
])
def test_the_client_errors_mean_what_the_answers_mean(
        kind: str, status: int, body: bytes, outcome: RequestOutcome, label: str,
        text: str) -> None:
    from receiver.ship.classify import classify_error

    result = classify_error(client_error(kind, status, body), 1)
    assert (result.request, result.label) == (outcome, label)
    assert text in result.message


def test_an_error_that_is_not_the_clients_is_not_hidden() -> None:
    from receiver.ship.classify import classify_error

    with pytest.raises(KeyError):
        classify_error(KeyError("a bug"), 1)
