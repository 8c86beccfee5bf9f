"""One LEB128 codec (p2pwalrus/core/varint.py) for frame lengths and quilt indexes."""

from __future__ import annotations

import pytest

from p2pwalrus.core import varint


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32 - 1, 2**63 - 1, 2**64 - 1])
def test_round_trip(value):
    raw = varint.encode_uvarint(value)
    assert varint.decode_uvarint(raw) == (value, len(raw))
    assert varint.decode_uvarint(b"xx" + raw + b"tail", 2) == (value, 2 + len(raw))


@pytest.mark.parametrize("raw", [b"", b"\x80", b"\x80\x00", b"\xff\x00", b"\xff" * 10 + b"\x01"])
def test_refused(raw):
    with pytest.raises(ValueError):
        varint.decode_uvarint(raw)


def test_bounded_length_and_negative():
    assert varint.decode_uvarint(b"\xff\xff\xff\xff\x0f", max_bytes=5) == (2**32 - 1, 5)
    with pytest.raises(ValueError):
        varint.decode_uvarint(b"\xff\xff\xff\xff\xff\x01", max_bytes=5)
    with pytest.raises(ValueError):
        varint.encode_uvarint(-1)


def test_framing_and_quilt_share_it():
    from p2pwalrus.core import quilt
    from p2pwalrus.p2p import framing

    assert framing.encode_uvarint is varint.encode_uvarint
    assert quilt.encode_uvarint is varint.encode_uvarint
