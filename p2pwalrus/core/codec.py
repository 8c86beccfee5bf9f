"""Batched calls into the Leopard Reed-Solomon codec (reed-solomon-simd via reed-solomon-leopard).

The codec works on GF(2^16) elements laid out in 64-byte chunks: bytes e and 32+e of a
chunk form element e, and a shorter tail of t bytes pairs byte e with byte t/2+e. Every
element position is coded independently, so many codewords of the same (k, m) are coded
by one call if we lay their elements end to end in that layout. This module converts
between a symbol's bytes and its elements (uint16, low byte first) on whole numpy arrays
and runs one codec call per pass instead of one per row or column.
"""

from __future__ import annotations

import numpy as np
import reed_solomon_leopard as _rsl

from ..errors import EncodingError


def bytes_to_elements(buf: np.ndarray) -> np.ndarray:
    """(..., 2m) uint8 in the codec's shard layout -> (..., m) uint16 elements."""
    nbytes = buf.shape[-1]
    lead = buf.shape[:-1]
    full = nbytes // 64 * 64
    out = np.empty(lead + (nbytes // 2,), np.uint16)
    view = out.view(np.uint8).reshape(lead + (nbytes // 2, 2))
    if full:
        chunks = buf[..., :full].reshape(lead + (full // 64, 2, 32))
        view[..., : full // 2, :] = np.swapaxes(chunks, -1, -2).reshape(lead + (full // 2, 2))
    tail = nbytes - full
    if tail:
        half = tail // 2
        view[..., full // 2:, 0] = buf[..., full:full + half]
        view[..., full // 2:, 1] = buf[..., full + half:]
    return out


def elements_to_bytes(el: np.ndarray) -> np.ndarray:
    """(..., m) uint16 elements -> (..., 2m) uint8 in the codec's shard layout."""
    m = el.shape[-1]
    lead = el.shape[:-1]
    pairs = np.ascontiguousarray(el).view(np.uint8).reshape(lead + (m, 2))
    out = np.empty(lead + (2 * m,), np.uint8)
    full_el = m // 32 * 32
    if full_el:
        chunks = pairs[..., :full_el, :].reshape(lead + (full_el // 32, 32, 2))
        out[..., : 2 * full_el] = np.swapaxes(chunks, -1, -2).reshape(lead + (2 * full_el,))
    tail = m - full_el
    if tail:
        out[..., 2 * full_el: 2 * full_el + tail] = pairs[..., full_el:, 0]
        out[..., 2 * full_el + tail:] = pairs[..., full_el:, 1]
    return out


def check_supported(k: int, m: int) -> None:
    if k < 1 or m < 1 or not _rsl.supports(k, m):
        raise EncodingError(f"the Reed-Solomon codec does not support {k} original and {m} recovery shards")


def encode_elements(shards: np.ndarray, recovery_count: int) -> np.ndarray:
    """Recovery shards for k original shards, all in element form: (k, E) -> (m, E)."""
    k, width = shards.shape
    raw = elements_to_bytes(shards)
    rec = _rsl.encode([row.tobytes() for row in raw], recovery_count)
    out = np.frombuffer(b"".join(rec), np.uint8).reshape(recovery_count, 2 * width)
    return bytes_to_elements(out)


def decode_elements(
    original_count: int, recovery_count: int, available: dict[int, np.ndarray]
) -> np.ndarray:
    """All k original shards (k, E) in element form from any k of the n shards.

    `available` maps codeword position (0..k+m-1; originals first) to an element array.
    """
    originals = {i: v for i, v in available.items() if i < original_count}
    if len(originals) == original_count:
        return np.stack([originals[i] for i in range(original_count)])
    width = next(iter(available.values())).shape[-1]
    orig_bytes = {i: elements_to_bytes(v).tobytes() for i, v in originals.items()}
    rec_bytes = {
        i - original_count: elements_to_bytes(v).tobytes()
        for i, v in available.items()
        if i >= original_count
    }
    restored = _rsl.decode(original_count, recovery_count, orig_bytes, rec_bytes)
    out = np.empty((original_count, width), np.uint16)
    for i in range(original_count):
        if i in originals:
            out[i] = originals[i]
        else:
            out[i] = bytes_to_elements(np.frombuffer(restored[i], np.uint8))
    return out
