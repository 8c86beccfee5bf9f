"""Recovery symbols (one symbol of a held sliver with its Merkle proof), rebuilding a lost
sliver from them, and the inconsistency proofs (and their messages) that show a blob was
encoded inconsistently. Importable from ``rs2`` as before."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from ..errors import (
    DecodingError, EncodingError, InconsistentBlobError, ProtocolError, VerificationError
)
from . import codec
from .merkle import (
    DIGEST_LEN, leaf_hashes, proofs_for_index, verify_proof
)
from .rs2_metadata import (
    MAX_SYMBOL_SIZE, MAX_SHARDS, PRIMARY, SECONDARY, EncodingConfig, metadata_size, BlobMetadata
)
from .rs2_slivers import (
    expand_primary, expand_secondary, primary_root, secondary_root
)


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
