"""Unsigned LEB128 varints, strict: the one codec of the frame lengths on the wire
(p2p/framing.py, libp2p's convention) and the lengths inside a quilt's BCS index
(core/quilt.py). Pure: bytes in, integers out; callers turn ValueError into their own
error (ProtocolError, QuiltError) and add their own bounds.
"""

from __future__ import annotations

MAX_BYTES = 10  # a 64-bit value


def encode_uvarint(value: int) -> bytes:
    """Unsigned LEB128 encoding of a non-negative integer (minimal)."""
    if value < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def fold(value: int, byte: int, index: int, max_bytes: int = MAX_BYTES) -> tuple[int, bool]:
    """Add the `index`-th byte (from 0) of a varint to `value`: (the value so far, whether
    that byte was the last). For a reader that gets one byte at a time and checks its own
    bound after each, and stops after `max_bytes` bytes. ValueError: a non-minimal encoding."""
    if index >= max_bytes:
        raise ValueError(f"varint longer than {max_bytes} bytes")
    value |= (byte & 0x7F) << (7 * index)
    if byte & 0x80:
        return value, False  # a byte more is due (the caller stops after max_bytes)
    if byte == 0 and index > 0:
        raise ValueError("non-minimal varint")
    return value, True


def decode_uvarint(data, pos: int = 0, max_bytes: int = MAX_BYTES) -> tuple[int, int]:
    """The varint at ``data[pos:]``: (value, position after it). ValueError if it is
    truncated, non-minimal or longer than `max_bytes`."""
    value = 0
    for i in range(max_bytes):
        if pos + i >= len(data):
            raise ValueError("truncated varint")
        value, last = fold(value, data[pos + i], i, max_bytes)
        if last:
            return value, pos + i + 1
    raise ValueError(f"varint longer than {max_bytes} bytes")
