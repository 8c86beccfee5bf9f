"""Shard placement: which live storage node holds which shard (pure; no I/O).

Every node computes the same :class:`ShardMap` from the same membership, so no
coordination is needed beyond agreeing on the live set (compare
:meth:`ShardMap.digest` to check that cheaply).

Algorithm: bounded-load rendezvous hashing
==========================================

Inputs are the *set* of live node IDs (libp2p peer-ID strings; order and
duplicates are ignored) and the shard count ``n``.

1. Keys.  Each node gets a 64-bit key ``K(node) = blake2b-64(node_id, person=
   "p2pw-place-node")`` and each shard a 64-bit key ``K(shard) = blake2b-64(
   shard as 4 big-endian bytes, person="p2pw-place-shard")`` (one hashlib call
   per node and per shard, not per pair).
2. Scores.  The weight of node ``v`` for shard ``s`` is
   ``w(s, v) = fmix64(K(s) XOR K(v))``, where ``fmix64`` is MurmurHash3's 64-bit
   finaliser (xor-shift / multiply, a bijection with full avalanche), evaluated
   on numpy ``uint64`` arrays, whose arithmetic wraps modulo 2**64 on every
   machine, so the result is bit-for-bit identical everywhere.  The nodes are
   ranked per shard by ``w`` descending; exact ties (probability about
   2**-(64-b) per pair, see below) are broken by the node ID, smaller ID first.  To make that total order
   cheap to compute, the low ``b = bit_length(N - 1)`` bits of ``w`` are
   replaced by ``N - 1 - rank_of_node_id_in_sorted_order``, making every key in
   a row distinct.
3. Capacity.  ``f = (n - 1) // 3`` and ``t = n - 2f`` (the number of shards
   that suffice to decode a blob).  With ``N`` live nodes the per-node cap is::

       cap = max(ceil(n / N), min(ceil(n * (1 + EPS) / N), t - 1))   EPS = 1/4

   computed in exact integer arithmetic.  So a node holds at most 25 % more
   than its fair share, and fewer than ``t`` shards -- it can never decode a
   blob alone -- whenever ``N * (t - 1) >= n`` makes that possible.  When the
   live set is smaller than that, ``cap = ceil(n / N)`` (the best balance there
   is), the map is still returned, and :attr:`ShardMap.decodable_alone` is True;
   :func:`check_no_single_node_can_decode` raises :class:`PlacementError`.
4. Assignment.  Shards are processed in index order ``0, 1, ..., n - 1``; each
   goes to the highest-ranked node whose load is still below ``cap``.  Since
   ``N * cap >= n``, every shard finds a node.

Why rendezvous, not a ring with virtual nodes
---------------------------------------------
Rendezvous gives each shard an independent uniformly random preference order
over the live nodes, so before the load cap the expected share of every node is
exactly ``n / N`` with no virtual-node tuning (a ring needs O(log N) virtual
nodes per node to reach comparable balance, and its arc lengths still vary).
Movement is minimal in the unbounded case: a join takes only the shards the
newcomer now ranks first for (expected ``n / (N + 1)``) and a leave moves only
the leaver's shards, each to its next choice.  The cap adds a small cascade (a
shard displaced by a now-full node may displace another), which is the price of
a hard bound on the maximum load.  Measured (bench/shardmap.py): a join or a
leave moves on average 0.9x to 1.7x the ideal ``n / N`` (1.7x at N = 10,
n = 31, where a leave raises the cap).  A change that keeps the cap moved at
most ``2 * cap + 4`` shards in over 50 000 random trials (N in 4..60, n in
4..300); a change that also moves the cap (``ceil(1.25 n / N)`` crosses an
integer, or the ``n - 2f - 1`` bound starts or stops binding) re-balances the
nodes sitting at the old cap and can move several times more.  The cost is
O(n * N) score evaluations, vectorised here: N = 1000, n = 1000 takes about
15 ms.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from p2pwalrus.errors import PlacementError

from . import thresholds

__all__ = [
    "LOAD_EPS_NUM",
    "LOAD_EPS_DEN",
    "PlacementError",
    "ShardMap",
    "compute_shard_map",
    "default_cap",
    "decode_threshold",
    "min_nodes_for_privacy",
    "check_no_single_node_can_decode",
    "shards_moved",
]

#: The bounded-load slack EPS = LOAD_EPS_NUM / LOAD_EPS_DEN (kept as an exact
#: fraction: every node must compute the same cap).
LOAD_EPS_NUM = 1
LOAD_EPS_DEN = 4

#: How many top-ranked nodes per shard are computed up front; a shard that
#: finds all of them full falls back to a full ranking of its row.
_TOP_K = 16
#: Rows of the score matrix processed at once (bounds memory at large N).
_ROW_CHUNK = 256

_NODE_PERSON = b"p2pw-place-node"
_SHARD_PERSON = b"p2pw-place-shard"
_DIGEST_PERSON = b"p2pw-shardmap-v1"

_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)


# ---------------------------------------------------------------- thresholds


def _check_n_shards(n_shards: int) -> int:
    if isinstance(n_shards, bool) or not isinstance(n_shards, (int, np.integer)):
        raise PlacementError(f"n_shards must be an integer, got {n_shards!r}")
    n = int(n_shards)
    if n < 1:
        raise PlacementError(f"n_shards must be at least 1, got {n}")
    return n


def decode_threshold(n_shards: int) -> int:
    """``n - 2f`` with ``f = (n - 1) // 3``: that many shards decode a blob."""
    return thresholds.decode_threshold(_check_n_shards(n_shards))


def min_nodes_for_privacy(n_shards: int) -> int:
    """The smallest live-set size at which no node need hold ``n - 2f`` shards.

    That is ``ceil(n / (n - 2f - 1))``.  Raises :class:`PlacementError` for
    ``n_shards == 1``, where a single shard already decodes the blob.
    """
    n = _check_n_shards(n_shards)
    room = decode_threshold(n) - 1
    if room < 1:
        raise PlacementError(
            f"with {n} shard(s) a single shard decodes a blob: no number of nodes "
            "keeps every node below the decoding threshold; use more shards"
        )
    return -(-n // room)


def default_cap(n_nodes: int, n_shards: int) -> int:
    """The per-node shard cap used by :func:`compute_shard_map` by default.

    ``max(ceil(n/N), min(ceil(n*(1+EPS)/N), n - 2f - 1))``, in exact integers.
    """
    n = _check_n_shards(n_shards)
    if n_nodes < 1:
        raise PlacementError("the live set is empty: no node to place shards on")
    fair = -(-n // n_nodes)
    slack = -(-(n * (LOAD_EPS_DEN + LOAD_EPS_NUM)) // (n_nodes * LOAD_EPS_DEN))
    return max(fair, min(slack, decode_threshold(n) - 1))


# ---------------------------------------------------------------- the map


@dataclass(frozen=True)
class ShardMap:
    """The owner of every shard, as computed from one membership.

    ``nodes`` is the sorted live set the map was computed from (nodes that got
    no shard included); ``owners[s]`` is the node holding shard ``s``; ``cap``
    is the per-node bound the map was computed with.
    """

    n_shards: int
    owners: tuple[str, ...]
    nodes: tuple[str, ...]
    cap: int

    def __post_init__(self) -> None:
        if len(self.owners) != self.n_shards:
            raise PlacementError(
                f"a map of {self.n_shards} shards needs {self.n_shards} owners, "
                f"got {len(self.owners)}"
            )
        if list(self.nodes) != sorted(set(self.nodes)):
            raise PlacementError("ShardMap.nodes must be sorted and free of duplicates")
        stray = set(self.owners) - set(self.nodes)
        if stray:
            raise PlacementError(f"owners not in the live set: {sorted(stray)[:3]}")

    # -- look-ups

    def owner(self, shard: int) -> str:
        """The node that holds ``shard``."""
        if not 0 <= shard < self.n_shards:
            raise PlacementError(f"shard {shard} out of range 0..{self.n_shards - 1}")
        return self.owners[shard]

    @cached_property
    def _by_node(self) -> dict[str, tuple[int, ...]]:
        acc: dict[str, list[int]] = {v: [] for v in self.nodes}
        for shard, v in enumerate(self.owners):
            acc[v].append(shard)
        return {v: tuple(s) for v, s in acc.items()}

    def shards_of(self, node_id: str) -> tuple[int, ...]:
        """The shards ``node_id`` holds, ascending (empty if it holds none or is
        not in the live set)."""
        return self._by_node.get(node_id, ())

    def load(self) -> dict[str, int]:
        """Shards per node, for every live node (zeros included)."""
        return {v: len(s) for v, s in self._by_node.items()}

    @property
    def max_load(self) -> int:
        """The largest number of shards any one node holds."""
        return max(len(s) for s in self._by_node.values())

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @property
    def decode_threshold(self) -> int:
        """``n - 2f``: the number of shards that suffice to decode a blob."""
        return decode_threshold(self.n_shards)

    @property
    def decodable_alone(self) -> bool:
        """True if some node holds ``n - 2f`` or more shards, enough to decode a
        blob by itself (the live set is too small, or the cap was overridden)."""
        return self.max_load >= self.decode_threshold

    def digest(self) -> bytes:
        """A 32-byte hash of (n_shards, live set, owners), for comparing maps.

        Equal digests mean the same membership and the same placement. (Kept: a node
        compares its map's digest at every membership change.)
        """
        return self._digest

    @cached_property
    def _digest(self) -> bytes:
        h = hashlib.blake2b(digest_size=32, person=_DIGEST_PERSON)
        h.update(self.n_shards.to_bytes(4, "big"))
        h.update(len(self.nodes).to_bytes(4, "big"))
        raws = [v.encode("utf-8") for v in self.nodes]
        h.update(b"".join(len(raw).to_bytes(4, "big") + raw for raw in raws))  # (one update: the same hash)
        index = {v: i.to_bytes(4, "big") for i, v in enumerate(self.nodes)}
        h.update(b"".join(index[v] for v in self.owners))
        return h.digest()


# ---------------------------------------------------------------- hashing


def _key64(data: bytes, person: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, person=person).digest(), "big")


# Every node recomputes its map at each membership change; the keys stay the same (at 100
# nodes joining in one process, hashing them again was a third of the map's cost).
@lru_cache(maxsize=1 << 16)
def _node_key(node_id: str) -> int:
    return _key64(node_id.encode("utf-8"), _NODE_PERSON)


@lru_cache(maxsize=64)
def _shard_keys(n_shards: int) -> np.ndarray:
    keys = np.array([_key64(s.to_bytes(4, "big"), _SHARD_PERSON) for s in range(n_shards)], dtype=np.uint64)
    keys.setflags(write=False)  # shared by every call
    return keys


def fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3 fmix64 on a uint64 array (in place; wraps mod 2**64): the score of both
    placements (this one and ``wal/placement_stake.py``)."""
    x ^= x >> _S33
    x *= _M1
    x ^= x >> _S33
    x *= _M2
    x ^= x >> _S33
    return x


def _normalise_nodes(node_ids: Iterable[str]) -> tuple[str, ...]:
    if isinstance(node_ids, (str, bytes)):
        raise PlacementError("node_ids must be a collection of peer-ID strings, not one string")
    nodes = set()
    for v in node_ids:
        if not isinstance(v, str) or not v:
            raise PlacementError(f"node IDs must be non-empty strings, got {v!r}")
        nodes.add(v)
    if not nodes:
        raise PlacementError(
            "the live set is empty: no storage node to place shards on; "
            "wait for node records or check the bootstrap peers"
        )
    return tuple(sorted(nodes))


# ---------------------------------------------------------------- placement


def compute_shard_map(
    node_ids: Iterable[str],
    n_shards: int,
    *,
    max_shards_per_node: int | None = None,
) -> ShardMap:
    """Place ``n_shards`` shards on the live set by bounded-load rendezvous hashing.

    A pure, deterministic function of ``(set(node_ids), n_shards,
    max_shards_per_node)``; see the module docstring for the exact algorithm.
    ``max_shards_per_node`` replaces the default cap (:func:`default_cap`); it
    must be at least ``ceil(n_shards / N)``.  Never raises for a live set that
    is merely too small for privacy: check :attr:`ShardMap.decodable_alone` or
    call :func:`check_no_single_node_can_decode`.
    """
    n = _check_n_shards(n_shards)
    nodes = _normalise_nodes(node_ids)
    N = len(nodes)
    if max_shards_per_node is None:
        cap = default_cap(N, n)
    else:
        cap = int(max_shards_per_node)
        if cap * N < n:
            raise PlacementError(
                f"max_shards_per_node={cap} cannot place {n} shards on {N} nodes; "
                f"it must be at least {-(-n // N)}"
            )

    node_keys = np.array([_node_key(v) for v in nodes], dtype=np.uint64)
    shard_keys = _shard_keys(n)
    # Low bits carry the tie-break (smaller node ID ranks higher on a tie), so
    # every key in a row is distinct and any sort yields the same order.
    bits = max(1, (N - 1).bit_length())
    tiebreak = (N - 1) - np.arange(N, dtype=np.uint64)
    low_mask = np.uint64((1 << bits) - 1)
    high_mask = ~low_mask

    def row_scores(lo: int, hi: int) -> np.ndarray:
        x = fmix64(shard_keys[lo:hi, None] ^ node_keys[None, :])
        x &= high_mask
        x |= tiebreak[None, :]
        return x

    k = min(N, _TOP_K)
    load = [0] * N
    owners_idx = [0] * n
    for lo in range(0, n, _ROW_CHUNK):
        hi = min(n, lo + _ROW_CHUNK)
        scores = row_scores(lo, hi)
        if k < N:
            top = np.argpartition(scores, N - k, axis=1)[:, N - k :]
            top_scores = np.take_along_axis(scores, top, axis=1)
            order = np.argsort(top_scores, axis=1)[:, ::-1]
            prefs = np.take_along_axis(top, order, axis=1)
        else:
            prefs = np.argsort(scores, axis=1)[:, ::-1]
        for r, row in enumerate(prefs.tolist()):
            for v in row:
                if load[v] < cap:
                    break
            else:  # every top-k choice is full: rank the whole row
                full = np.argsort(scores[r])[::-1].tolist()
                v = next(v for v in full if load[v] < cap)
            load[v] += 1
            owners_idx[lo + r] = v

    return ShardMap(
        n_shards=n, owners=tuple(nodes[i] for i in owners_idx), nodes=nodes, cap=cap
    )


# ---------------------------------------------------------------- checks


def check_no_single_node_can_decode(shard_map: ShardMap) -> None:
    """Raise :class:`PlacementError` if some node holds ``n - 2f`` or more shards.

    Such a node could decode every blob by itself, defeating the point of
    spreading it.  The message says how many nodes are needed.
    """
    if not shard_map.decodable_alone:
        return
    n, N, t = shard_map.n_shards, shard_map.n_nodes, shard_map.decode_threshold
    worst = shard_map.max_load
    try:
        need = min_nodes_for_privacy(n)
    except PlacementError as exc:
        raise PlacementError(f"the live set has {N} node(s); {exc}") from None
    if N < need:
        raise PlacementError(
            f"the live set has {N} node{'s' if N != 1 else ''}; with {n} shards some node "
            f"would hold {worst} or more shards (>= n-2f = {t}), enough to decode a blob "
            f"alone; at least {need} nodes are needed"
        )
    holder = next(v for v, c in shard_map.load().items() if c == worst)
    raise PlacementError(
        f"node {holder} holds {worst} of {n} shards (>= n-2f = {t}), enough to decode a "
        f"blob alone, because the map was computed with max_shards_per_node="
        f"{shard_map.cap}; use the default cap or one below {t}"
    )


def shards_moved(old: ShardMap, new: ShardMap) -> tuple[int, ...]:
    """The shards whose owner differs between two maps of the same shard count."""
    if old.n_shards != new.n_shards:
        raise PlacementError(
            f"cannot compare maps of {old.n_shards} and {new.n_shards} shards"
        )
    return tuple(s for s, (a, b) in enumerate(zip(old.owners, new.owners)) if a != b)
