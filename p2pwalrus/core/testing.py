"""Test-only constructions: deliberately inconsistent blobs, as a faulty writer would make."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .rs2 import BlobMetadata, EncodedBlob, encode_blob, primary_root


@dataclass
class TamperedBlob(EncodedBlob):
    """An EncodedBlob whose primary sliver `row` was replaced after encoding."""

    row: int = 0
    tampered_row: np.ndarray | None = None

    def primary_row(self, index: int) -> np.ndarray:
        return self.tampered_row if index == self.row else super().primary_row(index)


def make_inconsistent_blob(data: bytes, n_shards: int, row: int = 0, column: int = 0) -> TamperedBlob:
    """Encode `data`, then corrupt symbol `column` of primary sliver `row` and commit to it.

    Every sliver still verifies against the (new) metadata: the tampered primary sliver
    against its recomputed hash, the secondary slivers, left honest, against theirs. But
    the slivers are not one codeword: rebuilding secondary sliver `column` from primary
    symbols that include `row` decodes to a sliver the metadata does not commit to.
    """
    enc = encode_blob(data, n_shards)
    meta = enc.metadata
    cfg, s = meta.config, meta.symbol_size
    if not 0 <= row < cfg.n_shards or not 0 <= column < cfg.n_secondary:
        raise ValueError("row must be a sliver index and column a systematic column")
    tampered = enc.primary_row(row).copy()
    tampered[column, 0] ^= 0xFF
    hashes = list(meta.primary_hashes)
    hashes[row] = primary_root(tampered.tobytes(), cfg, s)
    bad = BlobMetadata(meta.n_shards, meta.unencoded_length, tuple(hashes), meta.secondary_hashes)
    return TamperedBlob(bad, bad.blob_id(), enc.source, enc.row_recovery, enc.lower_primary, row, tampered)


def inconsistency_proof_message(enc: TamperedBlob, column: int) -> bytes:
    """The proof message (as nodes serve it on GET_PROOF) that `enc`, tampered at `column`,
    is invalid: secondary sliver `column` rebuilt from primary symbols including the bad row."""
    from ..errors import InconsistentBlobError
    from .rs2 import PRIMARY, SECONDARY, encode_proof_message, recover_sliver, recovery_symbols

    meta = enc.metadata
    cfg, s = meta.config, meta.symbol_size
    rows = [enc.row] + [i for i in range(cfg.n_shards) if i != enc.row][: cfg.n_primary - 1]
    syms = [recovery_symbols(PRIMARY, i, enc.primary_sliver(i), [column], cfg, s)[0] for i in rows]
    try:
        recover_sliver(meta, SECONDARY, column, syms)
    except InconsistentBlobError as exc:
        return encode_proof_message(enc.blob_id, meta, exc.proof)
    raise ValueError("the blob is not inconsistent at that column")
