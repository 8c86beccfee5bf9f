"""RS2 ("Red Stuff"): Walrus's two-dimensional Reed-Solomon encoding, byte-compatible.

For n shards: f = (n-1)//3, R = n-2f primary source symbols (rows), C = n-f secondary
source symbols (columns). The padded blob is an R x C matrix of s-byte symbols, row-major.
Rows are extended to n symbols, then columns to n symbols, giving the n x n matrix E.
Primary sliver i = E[i][:C]; secondary sliver j = E[:R][j]; sliver pair i holds primary
sliver i and secondary sliver n-1-i. See shared/DESIGN.md section 2.

Everything here is pure and synchronous: services run it in worker threads.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from ..errors import (
    BlobTooLargeError,
    DecodingError,
    EncodingError,
    InconsistentBlobError,
    ProtocolError,
    VerificationError,
)
from . import codec
from .thresholds import max_faulty
from .merkle import (
    DIGEST_LEN,
    h256,
    leaf_hash,
    leaf_hashes,
    merkle_root,
    merkle_roots,
    proofs_for_index,
    tree_depth,
    verify_proof,
)

RS2 = 1  # Walrus's encoding type byte for RS2
MAX_SYMBOL_SIZE = 65534
MIN_SHARDS, MAX_SHARDS = 4, 65535
PRIMARY, SECONDARY = "primary", "secondary"
_STRIPE_BYTES = 8 << 20  # column pass works in stripes of about this many expanded bytes


@dataclass(frozen=True)
class EncodingConfig:
    """The RS2 parameters for a shard count."""

    n_shards: int

    def __post_init__(self) -> None:
        n = self.n_shards
        if not isinstance(n, int) or not MIN_SHARDS <= n <= MAX_SHARDS:
            raise EncodingError(f"shard count must be between {MIN_SHARDS} and {MAX_SHARDS}, got {n!r}")
        codec.check_supported(self.n_secondary, self.f)
        codec.check_supported(self.n_primary, 2 * self.f)

    @property
    def f(self) -> int:
        return max_faulty(self.n_shards)

    @property
    def n_primary(self) -> int:
        """R: source symbols per column, i.e. the number of primary slivers needed to decode."""
        return self.n_shards - 2 * self.f

    @property
    def n_secondary(self) -> int:
        """C: source symbols per row, i.e. the number of secondary slivers needed to decode."""
        return self.n_shards - self.f

    @property
    def max_blob_size(self) -> int:
        return self.n_primary * self.n_secondary * MAX_SYMBOL_SIZE

    def symbol_size(self, length: int) -> int:
        if length < 0:
            raise EncodingError("blob length cannot be negative")
        if length > self.max_blob_size:
            raise BlobTooLargeError(
                f"a blob of {length} bytes is too large for {self.n_shards} shards: "
                f"the largest is {self.max_blob_size} bytes "
                f"({self.n_primary} x {self.n_secondary} symbols of {MAX_SYMBOL_SIZE} bytes)"
            )
        s = -(-max(length, 1) // (self.n_primary * self.n_secondary))
        return s + (s & 1)

    def primary_sliver_len(self, length: int) -> int:
        return self.n_secondary * self.symbol_size(length)

    def secondary_sliver_len(self, length: int) -> int:
        return self.n_primary * self.symbol_size(length)

    def encoded_length(self, length: int) -> int:
        """Bytes stored over all shards for a blob of ``length``: every shard's sliver pair
        plus its copy of the metadata (two 32-byte hashes per shard), as Walrus bills it."""
        return self.n_shards * ((self.n_primary + self.n_secondary) * self.symbol_size(length)
                                + 64 * self.n_shards)


# ---------------------------------------------------------------------------------------
# Metadata and blob ID

_META_HEADER = struct.Struct("<BBIQ")  # format version, encoding type, n_shards, length
_META_VERSION = 1


def metadata_size(n_shards: int) -> int:
    """Bytes of a blob's serialized metadata at ``n_shards``: the bound a reader puts on it."""
    return _META_HEADER.size + 2 * DIGEST_LEN * n_shards


@dataclass(frozen=True)
class BlobMetadata:
    """What a blob commits to: its length and the Merkle roots of every sliver."""

    n_shards: int
    unencoded_length: int
    primary_hashes: tuple[bytes, ...]
    secondary_hashes: tuple[bytes, ...]  # secondary_hashes[i] belongs to pair i (column n-1-i)
    encoding_type: int = RS2

    def __post_init__(self) -> None:
        if self.encoding_type != RS2:
            raise EncodingError(f"unsupported encoding type {self.encoding_type}")
        if len(self.primary_hashes) != self.n_shards or len(self.secondary_hashes) != self.n_shards:
            raise EncodingError("metadata must hold one hash pair per shard")
        if any(len(h) != DIGEST_LEN for h in self.primary_hashes + self.secondary_hashes):
            raise EncodingError("metadata hashes must be 32 bytes")
        self.config.symbol_size(self.unencoded_length)  # validates n and length

    @property
    def config(self) -> EncodingConfig:
        return EncodingConfig(self.n_shards)

    @property
    def symbol_size(self) -> int:
        return self.config.symbol_size(self.unencoded_length)

    def merkle_root(self) -> bytes:
        return merkle_root(
            [leaf_hash(p + s) for p, s in zip(self.primary_hashes, self.secondary_hashes)]
        )

    def blob_id(self) -> bytes:
        return h256(
            bytes([self.encoding_type]) + struct.pack("<Q", self.unencoded_length) + self.merkle_root()
        )

    def to_bytes(self) -> bytes:
        head = _META_HEADER.pack(_META_VERSION, self.encoding_type, self.n_shards, self.unencoded_length)
        body = b"".join(p + s for p, s in zip(self.primary_hashes, self.secondary_hashes))
        return head + body

    @classmethod
    def from_bytes(cls, data: bytes, *, max_shards: int = MAX_SHARDS) -> "BlobMetadata":
        if len(data) < _META_HEADER.size:
            raise ProtocolError("metadata too short")
        version, etype, n, length = _META_HEADER.unpack_from(data)
        if version != _META_VERSION:
            raise ProtocolError(f"unknown metadata format version {version}")
        if not MIN_SHARDS <= n <= max_shards:
            raise ProtocolError(f"metadata names {n} shards")
        if len(data) != metadata_size(n):
            raise ProtocolError("metadata length does not match its shard count")
        body = memoryview(data)[_META_HEADER.size:]
        prim = tuple(bytes(body[i * 64:i * 64 + 32]) for i in range(n))
        sec = tuple(bytes(body[i * 64 + 32:i * 64 + 64]) for i in range(n))
        try:
            return cls(n, length, prim, sec, etype)
        except EncodingError as exc:
            raise ProtocolError(f"invalid metadata: {exc}") from None

    def verify_blob_id(self, blob_id: bytes) -> None:
        if self.blob_id() != blob_id:
            raise VerificationError("metadata does not match the blob ID")

    def secondary_hash_of_column(self, column: int) -> bytes:
        return self.secondary_hashes[self.n_shards - 1 - column]


def shard_for_pair(pair_index: int, blob_id: bytes, n_shards: int) -> int:
    """Pairs are rotated by the blob ID so that systematic slivers land on different shards."""
    return (pair_index + int.from_bytes(blob_id, "big") % n_shards) % n_shards


def pair_for_shard(shard: int, blob_id: bytes, n_shards: int) -> int:
    return (shard - int.from_bytes(blob_id, "big") % n_shards) % n_shards


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


def _row_extend(rows: np.ndarray, cfg: EncodingConfig) -> np.ndarray:
    """(r, C, s) source rows -> (r, n, s): each row extended to n symbols."""
    r, c, s = rows.shape
    out = np.empty((r, cfg.n_shards, s), np.uint8)
    out[:, :c] = rows
    rec = codec.encode_symbols(np.ascontiguousarray(rows.transpose(1, 0, 2)), cfg.f)  # (f, r, s)
    out[:, c:] = rec.transpose(1, 0, 2)
    return out


def _column_extend(cols: np.ndarray, cfg: EncodingConfig) -> np.ndarray:
    """(R, w, s) source part of w columns -> (n, w, s): each column extended to n symbols."""
    r, w, s = cols.shape
    out = np.empty((cfg.n_shards, w, s), np.uint8)
    out[:r] = cols
    out[r:] = codec.encode_symbols(np.ascontiguousarray(cols), 2 * cfg.f)
    return out


def _expand(data, cfg: EncodingConfig, length: int):
    """Row and column Merkle roots of E plus the parts of E that EncodedBlob keeps.

    Columns are extended in stripes of about _STRIPE_BYTES so that the hashed-only part
    of E never exists in full; each stripe's columns are complete, so their roots are
    taken there and only the row trees' leaves are kept for the end.
    """
    n, r, c = cfg.n_shards, cfg.n_primary, cfg.n_secondary
    s = cfg.symbol_size(length)
    source = _padded_matrix(data, cfg, s, length)
    row_rec = np.empty((r, cfg.f, s), np.uint8)
    height = max(1, _STRIPE_BYTES // (n * s))
    for r0 in range(0, r, height):  # rows in stripes too, to bound the codec's temporaries
        part = np.ascontiguousarray(source[r0:r0 + height].transpose(1, 0, 2))
        row_rec[r0:r0 + height] = codec.encode_symbols(part, cfg.f).transpose(1, 0, 2)
    leaves = np.empty((n, n, DIGEST_LEN), np.uint8)
    col_roots = np.empty((n, DIGEST_LEN), np.uint8)
    lower = np.empty((n - r, c, s), np.uint8)
    width = max(1, _STRIPE_BYTES // (n * s))
    for j0 in range(0, n, width):
        j1 = min(n, j0 + width)
        if j1 <= c:
            top = source[:, j0:j1]
        elif j0 >= c:
            top = row_rec[:, j0 - c:j1 - c]
        else:
            top = np.concatenate([source[:, j0:], row_rec[:, : j1 - c]], axis=1)
        stripe = _column_extend(top, cfg)  # (n, w, s)
        stripe_leaves = leaf_hashes(stripe)  # (n, w, 32)
        leaves[:, j0:j1] = stripe_leaves
        col_roots[j0:j1] = merkle_roots(np.ascontiguousarray(stripe_leaves.transpose(1, 0, 2)))
        if j0 < c:
            lower[:, j0:min(j1, c)] = stripe[r:, : min(j1, c) - j0]
        del stripe, stripe_leaves
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


def blob_buffer(length: int, n_shards: int) -> np.ndarray:
    """A zeroed buffer of the padded size for a blob of `length` bytes.

    Read the blob into its first `length` bytes and pass it with `length=`: the encoder
    then uses it in place instead of copying the blob into a padded matrix.
    """
    cfg = EncodingConfig(n_shards)
    return np.zeros(cfg.n_primary * cfg.n_secondary * cfg.symbol_size(length), np.uint8)


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
# Slivers: expansion and verification


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


def verify_primary_sliver(metadata: BlobMetadata, index: int, sliver) -> None:
    """Raise VerificationError unless `sliver` is primary sliver `index` of this blob."""
    cfg, s = metadata.config, metadata.symbol_size
    if not 0 <= index < cfg.n_shards:
        raise VerificationError(f"primary sliver index {index} out of range")
    if primary_root(sliver, cfg, s) != metadata.primary_hashes[index]:
        raise VerificationError(f"primary sliver {index} does not match the blob's metadata")


def verify_secondary_sliver(metadata: BlobMetadata, pair_index: int, sliver) -> None:
    """Raise VerificationError unless `sliver` is the secondary sliver of pair `pair_index`."""
    cfg, s = metadata.config, metadata.symbol_size
    if not 0 <= pair_index < cfg.n_shards:
        raise VerificationError(f"secondary sliver index {pair_index} out of range")
    if secondary_root(sliver, cfg, s) != metadata.secondary_hashes[pair_index]:
        raise VerificationError(f"secondary sliver of pair {pair_index} does not match the blob's metadata")


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
        source = np.stack([sym for _, sym in group], axis=1)  # (k, B, s), contiguous
        recovery = codec.encode_symbols(source, m)  # (m, B, s)
        leaves = np.empty((len(group), n, DIGEST_LEN), np.uint8)
        leaves[:, :k] = leaf_hashes(source).transpose(1, 0, 2)
        leaves[:, k:] = leaf_hashes(recovery).transpose(1, 0, 2)
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


# ---------------------------------------------------------------------------------------
# Recovery symbols

_SYM_HEADER = struct.Struct("<BIIIB")  # axis, source index, target index, data length, path length
_AXES = (PRIMARY, SECONDARY)


@dataclass(frozen=True)
class RecoverySymbol:
    """E[i][j] taken from a sliver, with its Merkle proof against that sliver's hash.

    axis PRIMARY: from primary sliver (row) `source_index`, symbol at column `target_index`;
    it helps rebuild secondary sliver (column) `target_index`.
    axis SECONDARY: from secondary sliver (column) `source_index`, symbol at row
    `target_index`; it helps rebuild primary sliver (row) `target_index`.
    """

    axis: str
    source_index: int
    target_index: int
    data: bytes
    proof: tuple[bytes, ...] = field(repr=False)

    def to_bytes(self) -> bytes:
        return (
            _SYM_HEADER.pack(_AXES.index(self.axis), self.source_index, self.target_index, len(self.data), len(self.proof))
            + self.data
            + b"".join(self.proof)
        )

    @classmethod
    def from_bytes(cls, data: bytes, offset: int = 0) -> tuple["RecoverySymbol", int]:
        """Parse one symbol at `offset`; returns it and the offset after it."""
        if len(data) - offset < _SYM_HEADER.size:
            raise ProtocolError("truncated recovery symbol")
        axis, src, tgt, dlen, plen = _SYM_HEADER.unpack_from(data, offset)
        if axis > 1 or dlen > MAX_SYMBOL_SIZE or plen > 17:
            raise ProtocolError("malformed recovery symbol header")
        start = offset + _SYM_HEADER.size
        end = start + dlen + plen * DIGEST_LEN
        if end > len(data):
            raise ProtocolError("truncated recovery symbol")
        body = bytes(data[start:start + dlen])
        proof = tuple(bytes(data[start + dlen + k * 32:start + dlen + (k + 1) * 32]) for k in range(plen))
        return cls(_AXES[axis], src, tgt, body, proof), end


def recovery_symbols(axis: str, source_index: int, sliver, targets, cfg: EncodingConfig, s: int) -> list[RecoverySymbol]:
    """The symbols of a held sliver at the `targets` positions, each with its proof."""
    full = expand_primary(sliver, cfg, s) if axis == PRIMARY else expand_secondary(sliver, cfg, s)
    leaves = leaf_hashes(full)
    out = []
    for t in targets:
        if not 0 <= t < cfg.n_shards:
            raise EncodingError(f"target index {t} out of range")
        proof = proofs_for_index(leaves[None], t)[0]
        out.append(RecoverySymbol(axis, source_index, t, full[t].tobytes(), tuple(proof)))
    return out


def verify_recovery_symbol(metadata: BlobMetadata, sym: RecoverySymbol) -> bool:
    n = metadata.n_shards
    if not (0 <= sym.source_index < n and 0 <= sym.target_index < n):
        return False
    if len(sym.data) != metadata.symbol_size:
        return False
    if sym.axis == PRIMARY:
        root = metadata.primary_hashes[sym.source_index]
    elif sym.axis == SECONDARY:
        root = metadata.secondary_hash_of_column(sym.source_index)
    else:
        return False
    return verify_proof(root, sym.data, sym.target_index, list(sym.proof), n)


@dataclass(frozen=True)
class InconsistencyProof:
    """Symbols that verify yet decode to a sliver whose hash is not in the metadata."""

    target_axis: str  # the axis of the sliver that could not be rebuilt consistently
    target_index: int  # its row (primary) or column (secondary)
    symbols: tuple[RecoverySymbol, ...]

    def to_bytes(self) -> bytes:
        head = struct.pack("<BII", _AXES.index(self.target_axis), self.target_index, len(self.symbols))
        return head + b"".join(sym.to_bytes() for sym in self.symbols)

    @classmethod
    def from_bytes(cls, data: bytes, *, max_symbols: int = MAX_SHARDS) -> "InconsistencyProof":
        if len(data) < 9:
            raise ProtocolError("truncated inconsistency proof")
        axis, target, count = struct.unpack_from("<BII", data)
        if axis > 1 or count > max_symbols:
            raise ProtocolError("malformed inconsistency proof")
        offset, symbols = 9, []
        for _ in range(count):
            sym, offset = RecoverySymbol.from_bytes(data, offset)
            symbols.append(sym)
        if offset != len(data):
            raise ProtocolError("trailing bytes after inconsistency proof")
        return cls(_AXES[axis], target, tuple(symbols))


@dataclass(frozen=True)
class RecoveryResult:
    sliver: bytes
    rejected: tuple[tuple[int, str], ...]  # (source index, why) of symbols not used


def recover_sliver(metadata: BlobMetadata, target_axis: str, target_index: int, symbols) -> RecoveryResult:
    """Rebuild primary sliver (row) or secondary sliver (column) `target_index` from symbols.

    Each symbol is checked against its proof first; bad ones are named in `rejected` and
    never decoded. Raises DecodingError if too few good symbols remain, and
    InconsistentBlobError (with an InconsistencyProof) if good symbols decode to a sliver
    that the metadata does not commit to.
    """
    cfg, s = metadata.config, metadata.symbol_size
    if target_axis == SECONDARY:
        source_axis, need, k, m = PRIMARY, cfg.n_primary, cfg.n_primary, 2 * cfg.f
    elif target_axis == PRIMARY:
        source_axis, need, k, m = SECONDARY, cfg.n_secondary, cfg.n_secondary, cfg.f
    else:
        raise EncodingError(f"unknown axis {target_axis!r}")
    good: dict[int, RecoverySymbol] = {}
    rejected: list[tuple[int, str]] = []
    for sym in symbols:
        if sym.axis != source_axis or sym.target_index != target_index:
            rejected.append((sym.source_index, "symbol is for another sliver"))
        elif sym.source_index in good:
            rejected.append((sym.source_index, "duplicate source"))
        elif not verify_recovery_symbol(metadata, sym):
            rejected.append((sym.source_index, "Merkle proof does not verify"))
        else:
            good[sym.source_index] = sym
    if len(good) < need:
        raise DecodingError(
            f"need {need} valid recovery symbols to rebuild {target_axis} sliver {target_index}, "
            f"got {len(good)} ({len(rejected)} rejected)"
        )
    used = dict(sorted(good.items())[:need])
    available = {i: np.frombuffer(sym.data, np.uint8)[None] for i, sym in used.items()}
    sliver = codec.decode_symbols(k, m, available).reshape(-1).tobytes()
    if target_axis == SECONDARY:
        ok = secondary_root(sliver, cfg, s) == metadata.secondary_hash_of_column(target_index)
    else:
        ok = primary_root(sliver, cfg, s) == metadata.primary_hashes[target_index]
    if not ok:
        proof = InconsistencyProof(target_axis, target_index, tuple(used.values()))
        raise InconsistentBlobError(
            f"valid recovery symbols decode to a {target_axis} sliver {target_index} that the "
            "metadata does not commit to: the blob was encoded inconsistently",
            proof,
        )
    return RecoveryResult(sliver, tuple(rejected))


def verify_inconsistency_proof(metadata: BlobMetadata, proof: InconsistencyProof) -> bool:
    """True if the proof shows that this blob was encoded inconsistently."""
    try:
        recover_sliver(metadata, proof.target_axis, proof.target_index, proof.symbols)
    except InconsistentBlobError:
        return True
    except (DecodingError, EncodingError, VerificationError):
        return False
    return False



# --- inconsistency proof messages (what nodes gossip, store and serve on GET_PROOF) ---------

MAX_PROOF_MESSAGE = 64 << 20

def encode_proof_message(blob_id: bytes, meta: BlobMetadata, proof: InconsistencyProof) -> bytes:
    raw_meta = meta.to_bytes()
    return blob_id + len(raw_meta).to_bytes(4, "little") + raw_meta + proof.to_bytes()


def decode_proof_message(message: bytes, n_shards: int):
    """(blob ID, metadata, proof) of a proof message; ProtocolError if it is malformed or its
    metadata is not that blob's. The proof itself is not checked here: see check_proof_message."""
    if len(message) < 36:
        raise ProtocolError("truncated inconsistency proof message")
    blob_id = bytes(message[:32])
    meta_len = int.from_bytes(message[32:36], "little")
    if meta_len > metadata_size(n_shards) or 36 + meta_len > len(message):
        raise ProtocolError("bad metadata length in inconsistency proof message")
    meta = BlobMetadata.from_bytes(bytes(message[36:36 + meta_len]), max_shards=n_shards)
    if meta.blob_id() != blob_id:
        raise ProtocolError("metadata in inconsistency proof does not match the blob ID")
    proof = InconsistencyProof.from_bytes(bytes(message[36 + meta_len:]), max_symbols=n_shards)
    return blob_id, meta, proof


def check_proof_message(message: bytes, n_shards: int, blob_id: bytes | None = None) -> bytes:
    """The blob ID that a proof message proves invalid, after verifying the proof (CPU-bound:
    run it in a worker thread). ProtocolError if the message is malformed, is for another blob
    than `blob_id` (when given), or its proof does not show an inconsistency."""
    proved, meta, proof = decode_proof_message(message, n_shards)
    if blob_id is not None and proved != blob_id:
        raise ProtocolError("inconsistency proof is for another blob")
    if meta.n_shards != n_shards:
        raise ProtocolError(f"inconsistency proof for {meta.n_shards} shards; the network has {n_shards}")
    if not verify_inconsistency_proof(meta, proof):
        raise ProtocolError("inconsistency proof does not verify")
    return proved


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
