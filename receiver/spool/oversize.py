"""What happens to an event larger than `spool.max_record_bytes`: it is cut, never refused.

The longest text values of the document are shortened (marked with "…[cut]") until it fits,
the tag `spool_record_cut` and `error.message` say what happened and how big it was. A
payload that is not an event record (receiver/event.py) is replaced by a small document
describing it. Either way the spool never stalls on one event and the event stays visible in
Elasticsearch.
"""

from __future__ import annotations

import time
from typing import Any

from receiver.event import EventDecodeError, decode_event, encode_event

CUT_TAG = "spool_record_cut"
_MARK = "…[cut]"


def cut_to_fit(payload: bytes, limit: int) -> bytes:
    """An event payload of at most `limit` bytes standing for `payload`."""
    note = f"event of {len(payload)} bytes exceeded spool.max_record_bytes ({limit}) and was cut"
    try:
        document: dict[str, Any] | None = decode_event(payload).document()
    except (EventDecodeError, ValueError):  # any undecodable payload is described instead of kept
        document = None
    if document is not None:
        _annotate(document, note)
        packed = encode_event(document)
        while len(packed) > limit and _shorten_longest(document):
            packed = encode_event(document)
        if len(packed) <= limit:
            return packed
    return describe(len(payload), limit, note)


def describe(size: int, limit: int, note: str) -> bytes:
    """A small stand-in event (about 250 bytes; config keeps the limit at 1 KiB or more)."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    return encode_event({
        "@timestamp": stamp,
        "message": note,
        "tags": [CUT_TAG],
        "error.type": "spool_record_too_large",
        "error.message": note,
    })


def _annotate(document: dict[str, Any], note: str) -> None:
    tags = document.get("tags")
    document["tags"] = [*tags, CUT_TAG] if isinstance(tags, list) else [CUT_TAG]
    document.setdefault("error.message", note)


def _shorten_longest(document: dict[str, Any]) -> bool:
    """Halve the longest string value (searching nested maps and lists); False when none is
    long enough to matter."""
    best: tuple[int, Any, Any] | None = None
    stack: list[Any] = [document]
    while stack:
        container = stack.pop()
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, value in items:
            if isinstance(value, str) and len(value) > 64:
                if best is None or len(value) > best[0]:
                    best = (len(value), container, key)
            elif isinstance(value, dict | list):
                stack.append(value)
    if best is None:
        return False
    length, container, key = best
    container[key] = container[key][: length // 2] + _MARK
    return True
