"""One sliver's symbols: extending a row or a column of RS2's matrix to n symbols, a
sliver's Merkle root, and checking one sliver against a blob's metadata. Importable from
``rs2`` as before."""

from __future__ import annotations

import numpy as np

from ..errors import (
    VerificationError
)
from . import codec
from .merkle import (
    leaf_hashes, merkle_roots
)
from .rs2_metadata import (
    EncodingConfig, BlobMetadata
)


def _row_extend(rows: np.ndarray, cfg: EncodingConfig) -> np.ndarray:
    """(r, C, s) source rows -> (r, n, s): each row extended to n symbols."""
    r, c, s = rows.shape
    out = np.empty((r, cfg.n_shards, s), np.uint8)
    out[:, :c] = rows
    rec = codec.encode_symbols(rows.transpose(1, 0, 2), cfg.f)  # (f, r, s)
    out[:, c:] = rec.transpose(1, 0, 2)
    return out


def _column_extend(cols: np.ndarray, cfg: EncodingConfig) -> np.ndarray:
    """(R, w, s) source part of w columns -> (n, w, s): each column extended to n symbols."""
    r, w, s = cols.shape
    out = np.empty((cfg.n_shards, w, s), np.uint8)
    out[:r] = cols
    out[r:] = codec.encode_symbols(cols, 2 * cfg.f)
    return out


def _sliver_symbols(sliver, count: int, s: int) -> np.ndarray:
    raw = np.frombuffer(memoryview(sliver).cast("B"), np.uint8)
    if raw.size != count * s:
        raise VerificationError(f"sliver has {raw.size} bytes, expected {count * s}")
    return raw.reshape(count, s)


def expand_primary(sliver, cfg: EncodingConfig, s: int) -> np.ndarray:
    """All n symbols (n, s) of the row that a primary sliver begins."""
    return _row_extend(_sliver_symbols(sliver, cfg.n_secondary, s)[None], cfg)[0]


def expand_secondary(sliver, cfg: EncodingConfig, s: int) -> np.ndarray:
    """All n symbols (n, s) of the column that a secondary sliver begins."""
    return _column_extend(_sliver_symbols(sliver, cfg.n_primary, s)[:, None, :], cfg)[:, 0]


def primary_root(sliver, cfg: EncodingConfig, s: int) -> bytes:
    return merkle_roots(leaf_hashes(expand_primary(sliver, cfg, s))[None])[0].tobytes()


def secondary_root(sliver, cfg: EncodingConfig, s: int) -> bytes:
    return merkle_roots(leaf_hashes(expand_secondary(sliver, cfg, s))[None])[0].tobytes()


def _verify_sliver(metadata: BlobMetadata, index: int, sliver, root_of, hashes, kind: str, what: str) -> None:
    """Raise VerificationError unless ``sliver``'s root (``root_of``) is ``hashes[index]``."""
    cfg, s = metadata.config, metadata.symbol_size
    if not 0 <= index < cfg.n_shards:
        raise VerificationError(f"{kind} {index} out of range")
    if root_of(sliver, cfg, s) != hashes[index]:
        raise VerificationError(f"{what} does not match the blob's metadata")


def verify_primary_sliver(metadata: BlobMetadata, index: int, sliver) -> None:
    """Raise VerificationError unless `sliver` is primary sliver `index` of this blob."""
    _verify_sliver(metadata, index, sliver, primary_root, metadata.primary_hashes,
                   "primary sliver index", f"primary sliver {index}")


def verify_secondary_sliver(metadata: BlobMetadata, pair_index: int, sliver) -> None:
    """Raise VerificationError unless `sliver` is the secondary sliver of pair `pair_index`."""
    _verify_sliver(metadata, pair_index, sliver, secondary_root, metadata.secondary_hashes,
                   "secondary sliver index", f"secondary sliver of pair {pair_index}")
