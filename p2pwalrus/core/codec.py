"""Batched calls into the Leopard Reed-Solomon codec (reed-solomon-simd via reed-solomon-leopard).

The codec works on GF(2^16) elements laid out in 64-byte chunks: bytes e and 32+e of a
chunk form element e, and a shorter tail of t bytes pairs byte e with byte t/2+e. Every
element position is coded independently, so B codewords of the same (k, m) are coded by
one call if their elements are laid end to end in that layout. A symbol's whole 64-byte
chunks are already in that layout and are concatenated as they are; only the tails of
symbols whose size is not a multiple of 64 are regrouped. So a pass over the whole blob
is one codec call and a few numpy copies, not one call per row or column.
"""

from __future__ import annotations

import numpy as np
import reed_solomon_leopard as _rsl

from ..errors import EncodingError


def check_supported(k: int, m: int) -> None:
    if k < 1 or m < 1 or not _rsl.supports(k, m):
        raise EncodingError(f"the Reed-Solomon codec does not support {k} original and {m} recovery shards")


def _pack_tails(tails: np.ndarray) -> np.ndarray:
    """(k, B, t) symbol tails (t < 64 bytes, even) -> (k, B*t), in the codec's layout for a
    shard's last partial chunks: lo halves and hi halves of every tail interleaved by 32."""
    k, b, t = tails.shape
    half = t // 2
    total = b * half  # tail elements per shard
    lo = tails[:, :, :half].reshape(k, total)
    hi = tails[:, :, half:].reshape(k, total)
    region = np.empty((k, 2 * total), np.uint8)
    whole = total // 32 * 32
    chunks = region[:, : 2 * whole].reshape(k, whole // 32, 2, 32)
    chunks[:, :, 0] = lo[:, :whole].reshape(k, whole // 32, 32)
    chunks[:, :, 1] = hi[:, :whole].reshape(k, whole // 32, 32)
    rest = total - whole
    region[:, 2 * whole: 2 * whole + rest] = lo[:, whole:]
    region[:, 2 * whole + rest:] = hi[:, whole:]
    return region


def _unpack_tails(region: np.ndarray, b: int, t: int) -> np.ndarray:
    """Inverse of `_pack_tails`: (k, B*t) -> (k, B, t)."""
    k = region.shape[0]
    half = t // 2
    total = b * half
    out = np.empty((k, b, t), np.uint8)
    whole = total // 32 * 32
    chunks = region[:, : 2 * whole].reshape(k, whole // 32, 2, 32)
    lo = np.empty((k, total), np.uint8)
    hi = np.empty((k, total), np.uint8)
    lo[:, :whole] = chunks[:, :, 0].reshape(k, whole)
    hi[:, :whole] = chunks[:, :, 1].reshape(k, whole)
    rest = total - whole
    lo[:, whole:] = region[:, 2 * whole: 2 * whole + rest]
    hi[:, whole:] = region[:, 2 * whole + rest:]
    out[:, :, :half] = lo.reshape(k, b, half)
    out[:, :, half:] = hi.reshape(k, b, half)
    return out


def pack(symbols: np.ndarray) -> np.ndarray:
    """(k, B, s) symbols -> (k, B*s) codec shards holding B codewords' symbols side by side."""
    k, b, s = symbols.shape
    full = s // 64 * 64
    if full == s:
        return symbols.reshape(k, b * s)
    out = np.empty((k, b * s), np.uint8)
    out[:, : b * full] = symbols[:, :, :full].reshape(k, b * full)
    out[:, b * full:] = _pack_tails(symbols[:, :, full:])
    return out


def unpack(shards: np.ndarray, b: int, s: int) -> np.ndarray:
    """Inverse of `pack`: (k, B*s) codec shards -> (k, B, s) symbols."""
    k = shards.shape[0]
    full = s // 64 * 64
    if full == s:
        return shards.reshape(k, b, s)
    out = np.empty((k, b, s), np.uint8)
    out[:, :, :full] = shards[:, : b * full].reshape(k, b, full)
    out[:, :, full:] = _unpack_tails(shards[:, b * full:], b, s - full)
    return out


def encode_symbols(symbols: np.ndarray, recovery_count: int) -> np.ndarray:
    """Recovery symbols of B codewords at once: (k, B, s) originals -> (m, B, s).
    Any layout whose symbols are each contiguous (a transposed view too): nothing is copied
    before the codec's own input."""
    return encode_codewords([symbols[:, j] for j in range(symbols.shape[1])], recovery_count)


def encode_codewords(codewords: list[np.ndarray], recovery_count: int) -> np.ndarray:
    """Recovery symbols of B codewords, each given as its own (k, s) array -> (m, B, s).

    Each codec shard is made with one copy, a join of the codewords' whole 64-byte chunks
    and their packed tails: the codec takes bytes, and a packed array turned into bytes
    would be two copies of the whole input."""
    b = len(codewords)
    k, s = codewords[0].shape
    codewords = [c if c.strides[-1] == 1 else np.ascontiguousarray(c) for c in codewords]
    full = s // 64 * 64
    tails = _pack_tails(np.stack([c[:, full:] for c in codewords], axis=1)) if full < s else None
    shards = []
    for i in range(k):
        pieces = [c[i, :full] for c in codewords]
        if tails is not None:
            pieces.append(tails[i])
        shards.append(b"".join(pieces))
    rec = _rsl.encode(shards, recovery_count)
    out = np.empty((recovery_count, b, s), np.uint8)
    for r, raw in enumerate(rec):
        out[r, :, :full] = np.frombuffer(raw, np.uint8, b * full).reshape(b, full)
    if tails is not None:
        region = np.stack([np.frombuffer(raw, np.uint8, offset=b * full) for raw in rec])
        out[:, :, full:] = _unpack_tails(region, b, s - full)
    return out


def decode_symbols(original_count: int, recovery_count: int, available: dict[int, np.ndarray]) -> np.ndarray:
    """All k original shards (k, B, s) of B codewords from any k of their n positions.

    `available` maps a codeword position (originals first, then recovery) to (B, s) symbols.
    """
    originals = {i: v for i, v in available.items() if i < original_count}
    b, s = next(iter(available.values())).shape
    out = np.empty((original_count, b, s), np.uint8)
    for i, v in originals.items():
        out[i] = v
    if len(originals) == original_count:
        return out

    def as_shard(v: np.ndarray) -> bytes:
        return pack(np.ascontiguousarray(v)[None])[0].tobytes()

    restored = _rsl.decode(
        original_count,
        recovery_count,
        {i: as_shard(v) for i, v in originals.items()},
        {i - original_count: as_shard(v) for i, v in available.items() if i >= original_count},
    )
    for i, raw in restored.items():
        out[i] = unpack(np.frombuffer(raw, np.uint8)[None], b, s)[0]
    return out
