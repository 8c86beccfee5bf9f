"""RS2 ("Red Stuff"): Walrus's two-dimensional Reed-Solomon encoding, byte-compatible.

For n shards: f = (n-1)//3, R = n-2f primary source symbols (rows), C = n-f secondary
source symbols (columns). The padded blob is an R x C matrix of s-byte symbols, row-major.
Rows are extended to n symbols, then columns to n symbols, giving the n x n matrix E.
Primary sliver i = E[i][:C]; secondary sliver j = E[:R][j]; sliver pair i holds primary
sliver i and secondary sliver n-1-i. See shared/DESIGN.md section 2.

Everything here is pure and synchronous: services run it in worker threads.

This module encodes, checks slivers in batches and decodes; ``rs2_metadata`` (parameters,
metadata, blob ID), ``rs2_slivers`` (one sliver's extension and check) and ``rs2_recovery``
(recovery symbols, inconsistency proofs) hold the rest, and every name is importable here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import (  # noqa: F401  (importable from rs2, as before the split)
    BlobTooLargeError, DecodingError, EncodingError, InconsistentBlobError, ProtocolError, VerificationError
)
from . import codec
from .merkle import (  # noqa: F401  (importable from rs2, as before the split)
    DIGEST_LEN, h256, leaf_hash, leaf_hashes, leaf_hashes_of, merkle_root, merkle_roots, proofs_for_index, tree_depth,
    verify_proof
)
from .rs2_metadata import (  # noqa: F401  (importable from rs2, as before the split)
    RS2, MAX_SYMBOL_SIZE, MIN_SHARDS, MAX_SHARDS, PRIMARY, SECONDARY, EncodingConfig, metadata_size,
    BlobMetadata, shard_for_pair, pair_for_shard
)
from .rs2_recovery import (  # noqa: F401  (importable from rs2, as before the split)
    RecoverySymbol, recovery_symbols, verify_recovery_symbol, InconsistencyProof, RecoveryResult,
    recover_sliver, verify_inconsistency_proof, MAX_PROOF_MESSAGE, encode_proof_message, decode_proof_message,
    check_proof_message
)
from .rs2_slivers import (  # noqa: F401  (importable from rs2, as before the split)
    _row_extend, _column_extend, _sliver_symbols, expand_primary, expand_secondary, primary_root,
    secondary_root, verify_primary_sliver, verify_secondary_sliver
)
from .scratch import POOL

_STRIPE_BYTES = 8 << 20  # column pass works in stripes of about this many expanded bytes


# ---------------------------------------------------------------------------------------
# Encoding


@dataclass
class EncodedBlob:
    """A blob's metadata and all its slivers, kept without copying the source symbols.

    The expanded matrix E is held in three parts: the source rows (the padded blob
    itself), the row extension of the source rows (R x f symbols) and the primary
    slivers of the recovery rows (2f x C symbols). The rest of E is only hashed.
    """

    metadata: BlobMetadata
    blob_id: bytes
    source: np.ndarray  # (R, C, s): E[:R, :C]
    row_recovery: np.ndarray  # (R, f, s): E[:R, C:]
    lower_primary: np.ndarray  # (2f, C, s): E[R:, :C]

    def primary_row(self, index: int) -> np.ndarray:
        """Primary sliver `index` as (C, s) symbols."""
        r = self.source.shape[0]
        return self.source[index] if index < r else self.lower_primary[index - r]

    def secondary_column(self, column: int) -> np.ndarray:
        """Secondary sliver of `column` as (R, s) symbols (a strided view)."""
        c = self.source.shape[1]
        return self.source[:, column] if column < c else self.row_recovery[:, column - c]

    def primary_sliver(self, pair_index: int) -> bytes:
        return self.primary_row(pair_index).tobytes()

    def primary_view(self, pair_index: int) -> memoryview:
        """The primary sliver's bytes without a copy (valid while this EncodedBlob is)."""
        return memoryview(np.ascontiguousarray(self.primary_row(pair_index))).cast("B")

    def secondary_sliver(self, pair_index: int) -> bytes:
        """The secondary sliver stored in pair `pair_index`: column n-1-pair_index."""
        return self.secondary_column(self.metadata.n_shards - 1 - pair_index).tobytes()


def _padded_matrix(data, cfg: EncodingConfig, s: int, length: int) -> np.ndarray:
    """The blob as an R x C x s matrix, zero-padded at the end (in place if already padded)."""
    r, c = cfg.n_primary, cfg.n_secondary
    arr = np.frombuffer(memoryview(data).cast("B"), np.uint8)
    if arr.size == r * c * s:
        if length < arr.size and arr[length:].any():
            raise EncodingError("the padding after the blob's length must be zeros (use blob_buffer)")
        return arr.reshape(r, c, s)
    buf = np.zeros(r * c * s, np.uint8)
    buf[:length] = arr[:length]
    return buf.reshape(r, c, s)


def _expand(data, cfg: EncodingConfig, length: int):
    """Row and column Merkle roots of E plus the parts of E that EncodedBlob keeps.

    Columns are extended in stripes of about _STRIPE_BYTES so that the hashed-only part
    of E never exists in full; each stripe's columns are complete, so their roots are
    taken there and only the row trees' leaves are kept for the end.
    """
    n, r, c = cfg.n_shards, cfg.n_primary, cfg.n_secondary
    s = cfg.symbol_size(length)
    source = _padded_matrix(data, cfg, s, length)
    # Both outlive the encoding (EncodedBlob sends from them): kept whole between blobs.
    row_rec = POOL.empty((r, cfg.f, s))
    height = max(1, _STRIPE_BYTES // (n * s))
    for r0 in range(0, r, height):  # rows in stripes too, to bound the codec's temporaries
        part = source[r0:r0 + height].transpose(1, 0, 2)  # a view: the codec's input is its one copy
        row_rec[r0:r0 + height] = codec.encode_symbols(part, cfg.f).transpose(1, 0, 2)
    leaves = np.empty((n, n, DIGEST_LEN), np.uint8)
    col_roots = np.empty((n, DIGEST_LEN), np.uint8)
    lower = POOL.empty((n - r, c, s))
    width = max(1, _STRIPE_BYTES // (n * s))
    for j0 in range(0, n, width):
        j1 = min(n, j0 + width)
        if j1 <= c:
            top = source[:, j0:j1]
        elif j0 >= c:
            top = row_rec[:, j0 - c:j1 - c]
        else:
            top = np.concatenate([source[:, j0:], row_rec[:, : j1 - c]], axis=1)
        # The columns' source part is hashed where it lies and their recovery part as the
        # codec returns it: no extended stripe is assembled (two copies of all of E).
        rec = codec.encode_symbols(top, 2 * cfg.f)  # (2f, w, s): rows R..n-1 of these columns
        leaves[:r, j0:j1] = leaf_hashes(top)
        leaves[r:, j0:j1] = leaf_hashes(rec)
        col_roots[j0:j1] = merkle_roots(np.ascontiguousarray(leaves[:, j0:j1].transpose(1, 0, 2)))
        if j0 < c:
            lower[:, j0:min(j1, c)] = rec[:, : min(j1, c) - j0]
        del rec
    row_roots = merkle_roots(leaves)
    del leaves
    meta = BlobMetadata(
        n,
        length,
        tuple(row_roots[i].tobytes() for i in range(n)),
        tuple(col_roots[n - 1 - i].tobytes() for i in range(n)),
    )
    return meta, source, row_rec, lower


def _blob_length(data, length: int | None) -> int:
    size = len(memoryview(data).cast("B"))
    if length is None:
        return size
    if not 0 <= length <= size:
        raise EncodingError(f"length {length} does not fit the {size}-byte buffer")
    return length


def blob_buffer(length: int, n_shards: int, *, filled_by_caller: bool = False) -> np.ndarray:
    """A zeroed buffer of the padded size for a blob of `length` bytes.

    Read the blob into its first `length` bytes and pass it with `length=`: the encoder
    then uses it in place instead of copying the blob into a padded matrix.
    `filled_by_caller`: only the padding is zeroed, and the buffer may be scratch memory
    used before (scratch.py); the caller writes all of the first `length` bytes, or drops
    the buffer. (In the daemon a fresh zeroed one faulted in 7,000-14,000 pages per 64 MiB
    file: 0.09-0.16 s before the encoding could start.)
    """
    cfg = EncodingConfig(n_shards)
    size = cfg.n_primary * cfg.n_secondary * cfg.symbol_size(length)
    if not filled_by_caller:
        return np.zeros(size, np.uint8)
    buf = POOL.empty((size,))
    buf[length:] = 0
    return buf


def compute_metadata(data, n_shards: int, *, length: int | None = None) -> BlobMetadata:
    """Metadata (and so the blob ID) without keeping any sliver."""
    cfg = EncodingConfig(n_shards)
    return _expand(data, cfg, _blob_length(data, length))[0]


def compute_blob_id(data, n_shards: int, *, length: int | None = None) -> bytes:
    return compute_metadata(data, n_shards, length=length).blob_id()


def encode_blob(data, n_shards: int, *, length: int | None = None) -> EncodedBlob:
    """Metadata, blob ID and all n sliver pairs of a blob.

    `length`: the blob's length when `data` is a padded buffer from `blob_buffer`.
    """
    cfg = EncodingConfig(n_shards)
    meta, source, row_rec, lower = _expand(data, cfg, _blob_length(data, length))
    return EncodedBlob(meta, meta.blob_id(), source, row_rec, lower)


# ---------------------------------------------------------------------------------------
# Slivers: batch verification


@dataclass(frozen=True)
class SliverBatchCheck:
    """The outcome of `verify_slivers`.

    good: index -> leaf hashes (count, 32) of the sliver's own symbols, in order, i.e.
    H(0x00 || symbol) for each of its C (primary) or R (secondary) symbols: computed for
    the Merkle root anyway, and reusable as a checksum of exactly these bytes.
    bad: index -> why it was refused (the message the per-sliver verify_* raises).
    """

    good: dict[int, np.ndarray]
    bad: dict[int, str]


def verify_slivers(metadata: BlobMetadata, axis: str, slivers) -> SliverBatchCheck:
    """Verify many slivers of one axis at once; accepts exactly what the per-sliver
    verify_primary_sliver / verify_secondary_sliver accept.

    `slivers` maps a primary sliver index (axis PRIMARY) or a pair index (axis SECONDARY,
    like verify_secondary_sliver) to the sliver's bytes. Primary slivers are rows to
    extend from C to n symbols, secondary slivers columns to extend from R to n: both are
    k source symbols to extend by m, so the slivers are laid side by side as (k, B, s)
    and extended by one codec call per stripe of about _STRIPE_BYTES (the encoder's
    layout), then leaf-hashed and Merkle-rooted together.
    """
    cfg, s = metadata.config, metadata.symbol_size
    n = cfg.n_shards
    if axis == PRIMARY:
        k, m, hashes, what = cfg.n_secondary, cfg.f, metadata.primary_hashes, "primary sliver {}"
    elif axis == SECONDARY:
        k, m, hashes, what = cfg.n_primary, 2 * cfg.f, metadata.secondary_hashes, "secondary sliver of pair {}"
    else:
        raise EncodingError(f"unknown axis {axis!r}")
    good: dict[int, np.ndarray] = {}
    bad: dict[int, str] = {}
    sized: list[tuple[int, np.ndarray]] = []
    for index, sliver in slivers.items():
        if not (isinstance(index, int) and 0 <= index < n):
            kind = "primary sliver index" if axis == PRIMARY else "secondary sliver index"
            bad[index] = f"{kind} {index} out of range"
            continue
        try:
            sized.append((index, _sliver_symbols(sliver, k, s)))
        except VerificationError as exc:
            bad[index] = str(exc)
    width = max(1, _STRIPE_BYTES // (n * s))
    for b0 in range(0, len(sized), width):
        group = sized[b0:b0 + width]
        source = [sym for _, sym in group]  # B arrays (k, s), as received: no copy made
        recovery = codec.encode_codewords(source, m)  # (m, B, s)
        leaves = np.empty((len(group), n, DIGEST_LEN), np.uint8)
        # In this thread: verifiers run in threads of their own, next to other work.
        leaves[:, :k] = leaf_hashes_of(source, threaded=False)
        leaves[:, k:] = leaf_hashes(recovery, threaded=False).transpose(1, 0, 2)
        roots = merkle_roots(leaves)
        for b, (index, _) in enumerate(group):
            if roots[b].tobytes() == hashes[index]:
                good[index] = leaves[b, :k].copy()
            else:
                bad[index] = f"{what.format(index)} does not match the blob's metadata"
    return SliverBatchCheck(good, bad)


# ---------------------------------------------------------------------------------------
# Decoding


def join_systematic(metadata: BlobMetadata, slivers: dict[int, bytes]) -> bytes:
    """The blob from its R systematic primary slivers (rows 0..R-1), no decoding.

    The source rows are the blob itself, padded: the blob is their concatenation cut to
    its length (one copy). `slivers` must hold every row 0..R-1 (others are ignored),
    already verified; rows wholly past the blob's length are only checked for size.
    """
    return b"".join(systematic_parts(metadata, slivers))


def systematic_parts(metadata: BlobMetadata, slivers: dict[int, bytes]) -> list[memoryview]:
    """`join_systematic` without the join: the blob as views of its systematic slivers, in
    order (a 64 MiB join took 70-160 ms on these machines, fresh pages mostly; a writer
    can write the parts as they are)."""
    cfg, s = metadata.config, metadata.symbol_size
    r, c = cfg.n_primary, cfg.n_secondary
    missing = [i for i in range(r) if i not in slivers]
    if missing:
        raise DecodingError(f"systematic primary slivers {missing} are missing")
    row_len, left = c * s, metadata.unencoded_length
    parts = []
    for i in range(r):
        row = memoryview(slivers[i]).cast("B")
        if len(row) != row_len:
            raise VerificationError(f"sliver has {len(row)} bytes, expected {row_len}")
        if left > 0:
            parts.append(row[: min(row_len, left)])
            left -= row_len
    return parts


def decode_primary(metadata: BlobMetadata, slivers: dict[int, bytes], *, strict: bool = False) -> bytes:
    """The blob from any R primary slivers {row index: sliver}, already verified.

    With all R systematic slivers (rows 0..R-1) it is their concatenation
    (join_systematic); otherwise only the missing systematic rows are decoded, from the
    lowest-indexed slivers given. Then checks consistency: by default the recomputed
    hashes of the decoded systematic slivers; `strict` re-encodes the whole blob and
    recomputes the blob ID.
    """
    cfg, s = metadata.config, metadata.symbol_size
    r, c = cfg.n_primary, cfg.n_secondary
    if len(slivers) < r:
        raise DecodingError(f"need {r} primary slivers to decode, got {len(slivers)}")
    if all(i in slivers for i in range(r)):
        blob = join_systematic(metadata, slivers)
    else:
        chosen = dict(sorted(slivers.items())[:r])  # lowest indices: systematic rows need no decoding
        available = {i: _sliver_symbols(v, c, s) for i, v in chosen.items()}
        rows = codec.decode_symbols(r, 2 * cfg.f, available)  # (R, C, s)
        decoded = [i for i in range(r) if i not in chosen]
        if not strict:
            roots = merkle_roots(leaf_hashes(_row_extend(rows[decoded], cfg)))
            for k, i in enumerate(decoded):
                if roots[k].tobytes() != metadata.primary_hashes[i]:
                    raise InconsistentBlobError(
                        f"decoded primary sliver {i} does not match the metadata: the blob is inconsistent")
        blob = rows.reshape(-1)[: metadata.unencoded_length].tobytes()
    if strict and compute_blob_id(blob, cfg.n_shards) != metadata.blob_id():
        raise InconsistentBlobError("re-encoding the decoded blob gives another blob ID: the blob is inconsistent")
    return blob


def decode_secondary(metadata: BlobMetadata, slivers: dict[int, bytes], *, strict: bool = False) -> bytes:
    """The blob from any C secondary slivers {column index: sliver}, already verified."""
    cfg, s = metadata.config, metadata.symbol_size
    r, c = cfg.n_primary, cfg.n_secondary
    if len(slivers) < c:
        raise DecodingError(f"need {c} secondary slivers to decode, got {len(slivers)}")
    chosen = dict(sorted(slivers.items())[:c])
    available = {j: _sliver_symbols(v, r, s) for j, v in chosen.items()}
    cols = codec.decode_symbols(c, cfg.f, available)  # (C, R, s)
    decoded = [j for j in range(c) if j not in chosen]
    if decoded and not strict:
        ext = _column_extend(cols[decoded].transpose(1, 0, 2), cfg)  # (n, w, s)
        roots = merkle_roots(leaf_hashes(np.ascontiguousarray(ext.transpose(1, 0, 2))))
        for k, j in enumerate(decoded):
            if roots[k].tobytes() != metadata.secondary_hash_of_column(j):
                raise InconsistentBlobError(f"decoded secondary sliver {j} does not match the metadata: the blob is inconsistent")
    blob = np.ascontiguousarray(cols.transpose(1, 0, 2)).reshape(-1)[: metadata.unencoded_length].tobytes()
    if strict and compute_blob_id(blob, cfg.n_shards) != metadata.blob_id():
        raise InconsistentBlobError("re-encoding the decoded blob gives another blob ID: the blob is inconsistent")
    return blob


__all__ = [
    "RS2",
    "PRIMARY",
    "SECONDARY",
    "EncodingConfig",
    "BlobMetadata",
    "EncodedBlob",
    "RecoverySymbol",
    "InconsistencyProof",
    "RecoveryResult",
    "compute_metadata",
    "compute_blob_id",
    "encode_blob",
    "verify_primary_sliver",
    "verify_secondary_sliver",
    "verify_slivers",
    "SliverBatchCheck",
    "decode_primary",
    "decode_secondary",
    "recovery_symbols",
    "verify_recovery_symbol",
    "recover_sliver",
    "verify_inconsistency_proof",
    "encode_proof_message",
    "decode_proof_message",
    "check_proof_message",
    "shard_for_pair",
    "pair_for_shard",
    "tree_depth",
]
