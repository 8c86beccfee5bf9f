"""Test-only constructions: deliberately inconsistent blobs, as a faulty writer would make."""

from __future__ import annotations

import numpy as np

from .rs2 import BlobMetadata, EncodedBlob, encode_blob, primary_root


def make_inconsistent_blob(data: bytes, n_shards: int, row: int | None = None, column: int = 0) -> EncodedBlob:
    """Encode `data`, then corrupt symbol `column` of primary sliver `row` and commit to it.

    Every sliver still verifies against the (new) metadata, but the slivers are not one
    codeword: rebuilding secondary sliver `column` from primary symbols that include
    `row` decodes to a sliver the metadata does not commit to. `row` must be a recovery
    row (>= n - 2f, the default is the first), so that the secondary slivers, which hold
    the systematic rows, stay those of the honest encoding.
    """
    enc = encode_blob(data, n_shards)
    meta = enc.metadata
    cfg, s = meta.config, meta.symbol_size
    row = cfg.n_primary if row is None else row
    if not cfg.n_primary <= row < cfg.n_shards:
        raise ValueError("row must be a recovery row, n - 2f <= row < n")
    if not 0 <= column < cfg.n_secondary:
        raise ValueError("column must be a systematic column of the primary sliver")
    lower = enc.lower_primary.copy()
    target = lower[row - cfg.n_primary]
    target[column, 0] ^= 0xFF
    hashes = list(meta.primary_hashes)
    hashes[row] = primary_root(target.tobytes(), cfg, s)
    bad = BlobMetadata(meta.n_shards, meta.unencoded_length, tuple(hashes), meta.secondary_hashes)
    return EncodedBlob(bad, bad.blob_id(), enc.source, enc.row_recovery, lower)
