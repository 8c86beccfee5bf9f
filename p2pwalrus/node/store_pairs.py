"""A store request's sliver pairs, verified then persisted (node/handlers.py's ``store``
runs these in worker threads): batched verification against the blob's metadata, then one
group commit whose checksums reuse the verifier's leaf hashes (node/sliver_store.py).
"""

from __future__ import annotations

import time

from ..core import rs2
from .sliver_store import PRIMARY, SECONDARY, SliverStore, SymbolLeaves



def verify_pairs(meta: rs2.BlobMetadata, owned) -> tuple[list[tuple], dict[int, str]]:
    """Verify sliver pairs: ``owned`` is (pair, shard, primary, secondary) for pairs this node
    holds. All primary slivers are verified in one batch, then all secondary ones
    (rs2.verify_slivers). Returns the good pairs as (pair, shard, primary, secondary,
    primary leaves, secondary leaves) and {pair: why refused}. Synchronous: run it in a
    worker thread."""
    prim = rs2.verify_slivers(meta, rs2.PRIMARY, {pair: p for pair, _, p, _ in owned})
    sec = rs2.verify_slivers(meta, rs2.SECONDARY, {pair: q for pair, _, _, q in owned})
    good, refused = [], {}
    for pair, shard, p, q in owned:
        why = prim.bad.get(pair) or sec.bad.get(pair)
        if why is not None:
            refused[pair] = why
        else:
            good.append((pair, shard, p, q, prim.good[pair], sec.good[pair]))
    return good, refused


def persist_pairs(store: SliverStore, meta: rs2.BlobMetadata, blob_id: bytes, verified, update_state) -> list[int]:
    """Write verified pairs (from `verify_pairs`), the metadata (if new) and the state update
    in one group commit whose checksums reuse the verifier's leaf hashes. Returns the shards
    now durably stored (none if the blob was deleted meanwhile); a caller may confirm them
    once this returns. Synchronous: run it in a worker thread."""
    s = meta.symbol_size
    slivers, shards = [], []
    for _pair, shard, p, q, p_leaves, q_leaves in verified:
        slivers.append((shard, PRIMARY, p, SymbolLeaves(s, p_leaves.tobytes())))
        slivers.append((shard, SECONDARY, q, SymbolLeaves(s, q_leaves.tobytes())))
        shards.append(shard)
    if not slivers:
        return []
    # Reads ask for the systematic primary slivers (rows 0..R-1) first: only those are kept in
    # memory (SliverStore's recent_bytes).
    systematic = [shard for pair, shard, *_ in verified if pair < meta.config.n_primary]
    if not store.put_slivers(blob_id, slivers, metadata=meta.to_bytes(), update_state=update_state,
                             remember=systematic):
        return []  # the blob was deleted meanwhile: nothing of this request is stored
    return shards


def verify_and_persist(store: SliverStore, meta: rs2.BlobMetadata, blob_id: bytes, owned, update_state,
                       timing: dict[str, float] | None = None):
    """A store request's work after receiving, in one go: `verify_pairs`, then `persist_pairs`.

    Returns (shards now durably stored, {pair: why refused}). ``timing``, if given, gets the
    seconds spent verifying ("verify") and writing ("write"). (handle_store does the same
    with each pair verified as it arrives.) Synchronous: run it in a worker thread.
    """
    timing = {} if timing is None else timing
    t0 = time.perf_counter()
    good, refused = verify_pairs(meta, owned)
    t1 = time.perf_counter()
    timing["verify"] = timing.get("verify", 0.0) + t1 - t0
    try:
        return persist_pairs(store, meta, blob_id, good, update_state), refused
    finally:
        timing["write"] = timing.get("write", 0.0) + time.perf_counter() - t1
