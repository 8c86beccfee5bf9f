"""Shards follow stake: which committee member holds which shard in an epoch (pure; no I/O).

Every node computes the same assignment from the same decided ``EpochState``
inputs (stakes, the previous epoch's assignment, a seed from the previous
decided state), so the assignment needs no coordination beyond the agreement.

Two steps, each chosen for one property the issue asks for
==========================================================

1. **How many shards** each node holds: the highest-averages method of
   D'Hondt (Jefferson) over stakes, with a per-node cap.  Seats are handed out
   one at a time to the node with the largest quotient ``stake / (held + 1)``
   among nodes below the cap; ties go to the larger stake, then to a seeded
   hash of the peer ID.  A node with zero stake gets nothing.

   Why not the expected-value split of a weighted rendezvous race?  In that
   race a node's count is a random variable whose draw depends on its peer ID;
   anyone who knows the seed when it picks its keys can grind IDs with lucky
   draws, and a Sybil with ``k`` ground identities collects the lucky tails of
   ``k`` draws.  Here the count is a function of the stakes alone: no key is
   luckier than another.  And D'Hondt is the divisor method that rewards
   coalitions: if two parties merge, their combined seats are at least the sum
   of their separate seats (Balinski and Young, *Fair Representation*, 1982).
   Read the other way round, that is the Sybil bound we need: ``k`` identities
   that split one node's stake get, together, **no more** shards than that
   node would, whatever the seed and whatever keys they ground
   (tests/test_placement_stake.py checks it over many trials, with ground
   keys).

   The cap is a number of shards, a decided parameter of the epoch state
   (``shard_cap``); :func:`default_cap` gives Walrus's rule for a genesis: 10 %
   of the shards with 20 nodes or more, else ``n - 2f - 1`` so that no single
   node decodes a blob alone when that is possible at all.  Placement raises
   it to ``ceil(n / N)`` only when the ``N`` staked nodes could not otherwise
   hold every shard.  The cap is deliberately *not* recomputed from the number
   of nodes at every epoch: a rule that tightens as identities are added (as
   "10 % once there are 20 nodes" does) lets a Sybil tighten it, and the
   shards it strips from the capped nodes flow partly to the Sybil.  Two
   limits of the Sybil bound, both inherent to a per-identity cap: it holds
   when the merged node is below the cap, and when the honest committee can
   hold all shards under the cap (``cap * N >= n``).  Splitting a node that
   sits at the cap lets its parts together exceed the cap: the cap bounds
   concentration per identity, as Walrus's does.

2. **Which shards**: sticky, seeded rendezvous.  A node keeps the shards it
   held in the previous epoch up to its new count (if its count fell, it keeps
   those it scores highest on, under this epoch's seed).  Every other shard --
   released, or held by a node that left or lost its stake -- goes, in a
   seeded order, to the node with room left that scores highest on it.  The
   score is MurmurHash3's ``fmix64`` of two seeded 64-bit keys (as in
   :mod:`p2pwalrus.core.placement`), computed with numpy ``uint64`` arithmetic
   so every machine gets the same bits.

   Movement is therefore exactly the minimum for the counts:
   ``sum over nodes of max(0, old_count - new_count)`` (a node whose count fell
   by ``x`` must hand over at least ``x`` shards, and nothing else moves).

What grinding can and cannot buy
--------------------------------
The seed is derived from the digest of the previous decided state
(``EpochState.placement_seed``), so it is unknown until that state is decided
and every honest node derives the same one.  A key ground against it can win
at most *which* shards it is given (among the free ones), and exact D'Hondt
ties against nodes of equal stake; never how many shards its stake buys.
Which shards a node holds does not matter for availability: a blob's sliver
pairs rotate over the shards by its blob ID.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Mapping, Sequence
from fractions import Fraction

import numpy as np

from p2pwalrus.core.placement import fmix64
from p2pwalrus.core.thresholds import decode_threshold
from ...errors import StakePlacementError  # noqa: F401  (defined in errors.py; importable from here)

__all__ = [
    "StakePlacementError",
    "WALRUS_CAP_MIN_NODES",
    "assign_shards",
    "default_cap",
    "effective_cap",
    "min_moves",
    "moved_shards",
    "shard_counts",
]

#: Walrus caps a node at 10 % of the shards once the committee has this many nodes.
WALRUS_CAP_MIN_NODES = 20
WALRUS_CAP_PERCENT = 10

_TIE_PERSON = b"p2pw-stake-tie"
_NODE_PERSON = b"p2pw-stake-node"
_SHARD_PERSON = b"p2pw-stake-shard"
_ORDER_PERSON = b"p2pw-stake-order"
_MAX_STAKE = 2**64 - 1


def _check_inputs(stakes: Mapping[str, int], n_shards: int, seed: bytes) -> dict[str, int]:
    if type(n_shards) is not int or n_shards < 1:
        raise StakePlacementError(f"n_shards must be a positive integer, got {n_shards!r}")
    if not isinstance(seed, (bytes, bytearray)) or len(seed) != 32:
        raise StakePlacementError("the placement seed must be 32 bytes")
    out: dict[str, int] = {}
    for node, stake in stakes.items():
        if not isinstance(node, str) or not node:
            raise StakePlacementError(f"node IDs must be non-empty strings, got {node!r}")
        if type(stake) is not int or not 0 <= stake <= _MAX_STAKE:
            raise StakePlacementError(f"stake of {node} must be an integer in 0..2^64-1, got {stake!r}")
        if stake:
            out[node] = stake
    if not out:
        raise StakePlacementError(
            "no node has stake: nobody can hold shards; stake WAL to a node first")
    return out


def default_cap(n_staked: int, n_shards: int) -> int:
    """Most shards one node may hold, with ``n_staked`` nodes holding stake.

    ``max(ceil(n/N), n // 10)`` with 20 nodes or more (Walrus's 10 %), else
    ``max(ceil(n/N), n - 2f - 1)``: below the decoding threshold whenever the
    committee is large enough for that.  Exact integers: every node agrees.
    """
    if n_staked < 1 or n_shards < 1:
        raise StakePlacementError("the cap needs at least one staked node and one shard")
    fair = -(-n_shards // n_staked)
    if n_staked >= WALRUS_CAP_MIN_NODES:
        return max(fair, n_shards * WALRUS_CAP_PERCENT // 100)
    return max(fair, decode_threshold(n_shards) - 1)


def effective_cap(n_staked: int, n_shards: int, cap: int | None) -> int:
    """The cap placement uses: ``cap`` (a decided parameter), raised to ``ceil(n / N)``
    when the staked nodes could not hold every shard under it; :func:`default_cap`
    when ``cap`` is None."""
    if cap is None:
        return default_cap(n_staked, n_shards)
    if type(cap) is not int or cap < 1:
        raise StakePlacementError(f"the shard cap must be a positive integer, got {cap!r}")
    return max(cap, -(-n_shards // n_staked))


def _h64(person: bytes, *parts: bytes) -> int:
    h = hashlib.blake2b(digest_size=8, person=person)
    for p in parts:
        h.update(len(p).to_bytes(4, "big"))
        h.update(p)
    return int.from_bytes(h.digest(), "big")


def shard_counts(
    stakes: Mapping[str, int], n_shards: int, seed: bytes, *, cap: int | None = None,
    previous: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Shards per node by capped D'Hondt over stake (zero-stake nodes get 0, and are omitted).

    Deterministic in ``(stakes, n_shards, seed, cap, previous)``.  Exact ties between
    equal quotients of equal stakes go first to a node that held more shards than it
    has been given so far in the ``previous`` epoch's counts (so that, stakes unchanged,
    the counts stay as they were and no shard moves), then by the seed.
    """
    staked = _check_inputs(stakes, n_shards, seed)
    cap = effective_cap(len(staked), n_shards, cap)
    counts = {v: 0 for v in staked}
    before = dict(previous or {})

    def sticky(v: str, have: int) -> int:
        return -1 if before.get(v, 0) > have else 0

    # Heap entries: (-quotient, -stake, sticky, -tie hash, node). Smallest = next seat.
    heap = [
        (-Fraction(s, 1), -s, sticky(v, 0), -_h64(_TIE_PERSON, bytes(seed), v.encode()), v)
        for v, s in staked.items()
    ]
    heapq.heapify(heap)
    for _ in range(n_shards):
        _, neg_s, _, neg_t, v = heapq.heappop(heap)
        counts[v] += 1
        if counts[v] < cap:
            heapq.heappush(heap, (-Fraction(-neg_s, counts[v] + 1), neg_s, sticky(v, counts[v]), neg_t, v))
    return counts


def assign_shards(
    stakes: Mapping[str, int],
    n_shards: int,
    seed: bytes,
    previous: Mapping[str, Sequence[int]] | None = None,
    *,
    cap: int | None = None,
) -> dict[str, tuple[int, ...]]:
    """The shards of every node with stake, ascending (see the module docstring).

    ``previous`` is the last epoch's assignment (node -> shards); shards it
    names twice or out of range are treated as unheld.  Nodes with zero stake
    are omitted from the result: they hold nothing.
    """
    prev_counts = {v: len(ss) for v, ss in previous.items()} if previous else None
    counts = shard_counts(stakes, n_shards, seed, cap=cap, previous=prev_counts)
    nodes = sorted(counts)
    seed = bytes(seed)
    node_keys = np.array([_h64(_NODE_PERSON, seed, v.encode()) for v in nodes], dtype=np.uint64)
    shard_keys = np.array([_h64(_SHARD_PERSON, seed, s.to_bytes(4, "big")) for s in range(n_shards)],
                          dtype=np.uint64)

    def scores(shard: int, idx: np.ndarray) -> np.ndarray:
        return fmix64(shard_keys[shard] ^ node_keys[idx])

    held: dict[str, list[int]] = {v: [] for v in nodes}
    taken = [False] * n_shards
    if previous:
        seen: dict[int, int] = {}
        for v, shards in previous.items():
            for s in shards:
                if type(s) is int and 0 <= s < n_shards:
                    seen[s] = seen.get(s, 0) + 1
        index = {v: i for i, v in enumerate(nodes)}
        for v, shards in previous.items():
            if v not in index:
                continue
            mine = sorted({s for s in shards if type(s) is int and 0 <= s < n_shards and seen[s] == 1})
            if len(mine) > counts[v]:
                k = np.uint64(node_keys[index[v]])
                sc = fmix64(shard_keys[np.array(mine, dtype=np.int64)] ^ k)
                # Keep the highest-scoring; exact ties (2^-64) broken by the smaller shard.
                order = sorted(range(len(mine)), key=lambda i: (-int(sc[i]), mine[i]))
                mine = sorted(mine[i] for i in order[: counts[v]])
            held[v] = mine
            for s in mine:
                taken[s] = True

    room = np.array([counts[v] - len(held[v]) for v in nodes], dtype=np.int64)
    free = [s for s in range(n_shards) if not taken[s]]
    free.sort(key=lambda s: (_h64(_ORDER_PERSON, seed, s.to_bytes(4, "big")), s))
    all_idx = np.arange(len(nodes))
    for s in free:
        open_idx = all_idx[room > 0]
        sc = scores(s, open_idx)
        best = int(open_idx[int(np.argmax(sc))])  # first maximum: smaller peer ID on an exact tie
        held[nodes[best]].append(s)
        room[best] -= 1
    return {v: tuple(sorted(held[v])) for v in nodes}


def moved_shards(old: Mapping[str, Sequence[int]], new: Mapping[str, Sequence[int]]) -> set[int]:
    """Shards whose holder differs between two assignments (a shard held in one only counts)."""
    a = {s: v for v, ss in old.items() for s in ss}
    b = {s: v for v, ss in new.items() for s in ss}
    return {s for s in set(a) | set(b) if a.get(s) != b.get(s)}


def min_moves(old: Mapping[str, Sequence[int]], new_counts: Mapping[str, int]) -> int:
    """The fewest shards any assignment with ``new_counts`` must move away from ``old``."""
    return sum(max(0, len(ss) - new_counts.get(v, 0)) for v, ss in old.items())
