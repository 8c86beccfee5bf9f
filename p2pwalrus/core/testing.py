"""Test-only constructions: deliberately inconsistent blobs, as a faulty writer would make."""

from __future__ import annotations

import numpy as np

from .rs2 import BlobMetadata, EncodedBlob, encode_blob, primary_root


def make_inconsistent_blob(data: bytes, n_shards: int, row: int = 0, column: int = 0) -> EncodedBlob:
    """Encode `data`, then corrupt symbol `column` of primary sliver `row` and commit to it.

    Every sliver still verifies against the (new) metadata, but the slivers are not one
    codeword: rebuilding secondary sliver `column` from primary symbols that include
    `row` decodes to a sliver the metadata does not commit to.
    """
    enc = encode_blob(data, n_shards)
    meta = enc.metadata
    cfg, s = meta.config, meta.symbol_size
    if not 0 <= column < cfg.n_secondary:
        raise ValueError("column must be a systematic column of the primary sliver")
    primary = enc.primary.copy()
    primary[row, column * s] ^= 0xFF
    hashes = list(meta.primary_hashes)
    hashes[row] = primary_root(primary[row].tobytes(), cfg, s)
    bad = BlobMetadata(meta.n_shards, meta.unencoded_length, tuple(hashes), meta.secondary_hashes)
    return EncodedBlob(bad, bad.blob_id(), primary, enc.secondary.copy())
