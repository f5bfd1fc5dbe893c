"""What a bulk response means: one pure function from (HTTP status, parsed body) to outcomes,
and the one place where the `elasticsearch` client's error types get their meaning
(`classify_error`).

Whole request: OK (look at the items), RETRY (429, 5xx, 408, connection trouble, an answer we
cannot read), AUTH (401/403: retried slowly, events stay spooled), TOO_LARGE (413: send halves),
REJECTED (any other 4xx: a configuration problem; retried slowly, never dropped).
Per item: created/200 and 409 on `create` are DELIVERED (409 means an earlier attempt already
wrote it); 429 and 5xx are RETRY; 401/403 are RETRY (privileges may be fixed); any other 4xx
(mapping, parsing, illegal argument...) is DEAD_LETTER: it will never be accepted as it is.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class RequestOutcome(enum.Enum):
    OK = "ok"
    RETRY = "retry"
    AUTH = "auth"
    TOO_LARGE = "too_large"
    REJECTED = "rejected"


class ItemOutcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True, slots=True)
class ItemFailure:
    """An item that was not delivered: its position in the request and why."""

    index: int
    outcome: ItemOutcome
    status: int
    error_type: str
    reason: str


@dataclass(frozen=True, slots=True)
class Classification:
    """The meaning of one bulk response (or of a request that got no response)."""

    request: RequestOutcome
    # Metric label of `bulk_requests{outcome}`: ok, partial, throttled, server_error,
    # connection_error, timeout, auth_error, too_large, rejected, bad_response.
    label: str
    status: int = 0
    message: str = ""
    # Only the items that were not delivered; every other item was delivered.
    failures: tuple[ItemFailure, ...] = field(default=())
    # Of the delivered items, how many Elasticsearch already had (409 on `create`): an import
    # reports them as "already there".
    existing: int = 0

    @property
    def delivered_all(self) -> bool:
        return self.request is RequestOutcome.OK and not self.failures


def transport_failure(label: str, message: str) -> Classification:
    """No usable response at all (refused, reset, cut, timed out): retry the whole request."""
    return Classification(RequestOutcome.RETRY, label, 0, message)


def classify_error(error: Exception, expected_items: int) -> Classification:
    """What an error the `elasticsearch` client raised for a bulk request means:

    - ApiError (an answer outside 2xx): its status and body, as `classify` reads any answer;
    - UnsupportedProductError (a 2xx answer without `X-Elastic-Product`): REJECTED, a
      configuration problem (this host is not Elasticsearch) that waits for someone to fix it;
    - ConnectionTimeout: sent, no answer in time: RETRY (`timeout`);
    - SerializationError (an answer of a media type the client cannot read, say a proxy's
      image): RETRY (`bad_response`);
    - ConnectionError (no connection, TLS refused, a cut answer, on every host tried) and any
      other TransportError: RETRY (`connection_error`).

    Messages are the node's (receiver.ship.http), already redacted; the caller redacts again
    what came from the server."""
    # Imported here: the receiving process imports this module, never the client.
    from elastic_transport import ConnectionTimeout, SerializationError, TransportError
    from elasticsearch import ApiError, UnsupportedProductError

    if isinstance(error, UnsupportedProductError):
        return Classification(
            RequestOutcome.REJECTED, "rejected", error.meta.status,
            "the server answered without `X-Elastic-Product: Elasticsearch`: it is not "
            "Elasticsearch (the client's product check)")
    if isinstance(error, ApiError):
        return classify(error.meta.status, _parsed(error.body), expected_items)
    if isinstance(error, ConnectionTimeout):
        return transport_failure("timeout", failure_text(error))
    if isinstance(error, SerializationError):
        return Classification(RequestOutcome.RETRY, "bad_response", 0,
                              f"an answer the client cannot read: {failure_text(error)}")
    if isinstance(error, TransportError):
        return transport_failure("connection_error", failure_text(error))
    raise error


def failure_text(error: Exception) -> str:
    """A transport error's message with those of the hosts tried before it (oldest first).
    The node's own message (`message`): the client's `str()` of its errors names only a class."""
    earlier = getattr(error, "errors", ()) or ()
    return "; ".join(str(getattr(each, "message", each)) for each in (*earlier, error))


def _parsed(body: Any) -> Any:
    if isinstance(body, bytes | bytearray):
        if not body:
            return None
        import orjson

        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            return bytes(body)
    return body


def classify(status: int, body: Any, expected_items: int) -> Classification:
    """Classify a bulk response. `body` is the parsed JSON (None if it was not JSON)."""
    if status in (401, 403):
        return Classification(RequestOutcome.AUTH, "auth_error", status, _error_text(body))
    if status == 413:
        return Classification(RequestOutcome.TOO_LARGE, "too_large", status, _error_text(body))
    if status == 429:
        return Classification(RequestOutcome.RETRY, "throttled", status, _error_text(body))
    if status >= 500 or status == 408:
        return Classification(RequestOutcome.RETRY, "server_error", status, _error_text(body))
    if not 200 <= status < 300:
        return Classification(RequestOutcome.REJECTED, "rejected", status, _error_text(body))
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return Classification(
            RequestOutcome.RETRY, "bad_response", status,
            "the bulk response has no `items` list (is this really Elasticsearch?)",
        )
    if len(items) != expected_items:
        return Classification(
            RequestOutcome.RETRY, "bad_response", status,
            f"the bulk response has {len(items)} items for {expected_items} documents sent",
        )
    if body.get("errors") is False:
        return Classification(RequestOutcome.OK, "ok", status)
    failures = tuple(
        failure for position, item in enumerate(items)
        if (failure := classify_item(position, item)) is not None
    )
    existing = sum(1 for item in items if _already_there(item))
    return Classification(RequestOutcome.OK, "partial" if failures else "ok", status, "", failures,
                          existing)


def _already_there(item: Any) -> bool:
    """A `create` answered 409: the document with this `_id` was indexed before."""
    result = item.get("create") if isinstance(item, dict) else None
    return isinstance(result, dict) and result.get("status") == 409


def delivered_all_raw(status: int, body: bytes, expected_items: int) -> bool:
    """The common answer recognised without parsing it: 2xx, top-level `"errors":false`, and
    one `"status"` per document sent. What `classify` would call OK with no failures; anything
    else (other spacing, key order, counts) returns False and goes the careful way.

    Parsing the answer costs 0.1-0.8 µs per event (by its size); these scans a few ns."""
    if not 200 <= status < 300:
        return False
    # Only short scalar keys (took, errors, ingest_took) come before `items` at the top level.
    items = body.find(b'"items":[', 0, 256)
    if items < 0 or body.find(b'"errors":false', 0, items) < 0:
        return False
    return body.count(b'"status":', items) == expected_items and body.endswith((b"]}", b"]}\n"))


def classify_item(position: int, item: Any) -> ItemFailure | None:
    """None when the item is delivered, else why not and what to do about it."""
    if not isinstance(item, dict) or len(item) != 1:
        return ItemFailure(position, ItemOutcome.RETRY, 0, "bad_item", "unreadable bulk item")
    ((action, result),) = item.items()
    if not isinstance(result, dict):
        return ItemFailure(position, ItemOutcome.RETRY, 0, "bad_item", "unreadable bulk item")
    status = result.get("status")
    if not isinstance(status, int):
        return ItemFailure(position, ItemOutcome.RETRY, 0, "bad_item", "bulk item without status")
    if 200 <= status < 300 or (status == 409 and action == "create"):
        return None
    error = result.get("error")
    error_type, reason = _error_parts(error)
    if status == 429 or status >= 500 or status in (401, 403, 408):
        return ItemFailure(position, ItemOutcome.RETRY, status, error_type, reason)
    return ItemFailure(position, ItemOutcome.DEAD_LETTER, status, error_type, reason)


def _error_parts(error: Any) -> tuple[str, str]:
    if isinstance(error, dict):
        error_type = str(error.get("type") or "unknown")
        reason = str(error.get("reason") or "")
        caused_by = error.get("caused_by")
        if isinstance(caused_by, dict) and caused_by.get("reason"):
            reason = f"{reason} (caused by {caused_by.get('type')}: {caused_by['reason']})"
        return error_type, reason
    if isinstance(error, str):
        return "unknown", error
    return "unknown", ""


def _error_text(body: Any) -> str:
    if isinstance(body, dict):
        error = body.get("error", body.get("message"))
        if error is not None:
            error_type, reason = _error_parts(error)
            return f"{error_type}: {reason}" if reason else error_type
    if isinstance(body, str | bytes):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        return text[:300]
    return ""
