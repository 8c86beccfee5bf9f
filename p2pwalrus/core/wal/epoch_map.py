"""The shard map of a decided epoch state, and the maps a certificate is judged by (pure).

On a network with a genesis, who holds which shard is the decided ``EpochState``'s
assignment (stake-weighted, :mod:`.placement_stake`), not hashing over the live set: every
honest node that knows the chain from genesis computes the same map, whoever is live.
"""

from __future__ import annotations

from collections.abc import Callable

from ..placement import ShardMap

__all__ = ["certificate_views", "shard_map_of"]


def shard_map_of(state) -> ShardMap:
    """``EpochState`` -> :class:`ShardMap`: owners from the committee's shards; the map's
    nodes are the committee members (a node without stake is in no map: it holds nothing)."""
    cached = state._cache.get("shard_map")
    if cached is None:
        nodes = tuple(m.peer_id for m in state.committee)  # sorted by peer ID already
        cap = max(len(m.shards) for m in state.committee)
        cached = state._cache["shard_map"] = ShardMap(state.n_shards, state.owners, nodes, cap)
    return cached


def certificate_views(state_for: Callable[[int], object | None], current, cert_epoch: int) -> list[ShardMap]:
    """The maps a certificate of ``cert_epoch`` is judged by, each alone: the committee of its
    epoch and of the one before (a writer stores by the last decided state, which lags the
    clock while an agreement runs), and the current committee (renewals by today's holders).
    Every one is a decided committee, so identities holding at most ``f`` shards in each
    cannot certify anything, whatever they sign."""
    out: list[ShardMap] = []
    seen: set[int] = set()
    for state in (current, state_for(cert_epoch), state_for(cert_epoch - 1)):
        if state is not None and state.epoch not in seen:
            seen.add(state.epoch)
            out.append(shard_map_of(state))
    return out
