"""The spool record (receiver/event.py): the receive path's fast encoder builds exactly what the
general encoder does, for every kind of sender, frame length and flag; both versions decode."""

from __future__ import annotations

import msgpack
import pytest

from receiver.event import (
    FLAG_CUT,
    Document,
    EventDecodeError,
    FrameEncoder,
    Peer,
    Received,
    decode,
    encode_document,
    encode_frame,
)

PEERS: list[Peer] = [("192.0.2.7", 514), ("2001:db8::1", 65535), (None, None)]
# msgpack's bin header changes at 256 and 65,536 bytes: frames on each side of both.
FRAMES = [b"", b"<134>x", b"y" * 255, b"z" * 256, b"w" * 65535, b"v" * 65536, b"\x00\xff" * 40000]


@pytest.mark.parametrize("peer", PEERS)
def test_the_fast_encoder_writes_what_the_general_one_does(peer: Peer) -> None:
    encoder = FrameEncoder("udp://127.0.0.1:5140")
    cut = frozenset({1, 4})
    fast = encoder.encode(FRAMES, 1795631000.25, peer, cut)
    each = encoder.encode_each(FRAMES, 1795631000.25, [peer] * len(FRAMES), cut)
    general = [encode_frame(Received(1795631000.25, "udp://127.0.0.1:5140", *peer,
                                     FLAG_CUT if i in cut else 0, frame))
               for i, frame in enumerate(FRAMES)]
    assert fast == general and each == general
    for payload, frame in zip(fast, FRAMES, strict=True):
        record = decode(payload)
        assert isinstance(record, Received) and record.frame == frame
        assert (record.source, record.port) == peer and record.transport == "udp"


def test_documents_of_earlier_versions_still_decode() -> None:
    record = decode(encode_document({"@timestamp": "2026-11-25T18:21:08.761Z", "n": 1}))
    assert isinstance(record, Document) and record.document() == {
        "@timestamp": "2026-11-25T18:21:08.761Z", "n": 1}


@pytest.mark.parametrize("payload", [
    b"\xc1", msgpack.packb([3, 1.0]), msgpack.packb({"a": 1}), msgpack.packb([2, 1.0, "l"]),
    msgpack.packb([2, "not a time", "l", None, None, 0, b""]), msgpack.packb([1, 2, 3]),
])
def test_anything_else_is_refused(payload: bytes) -> None:
    with pytest.raises(EventDecodeError):
        decode(payload)
