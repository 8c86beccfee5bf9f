"""The ledger's authorities for one epoch, weighted by shards (pure).

FastPay's quorums are by weight: a certificate needs signatures of shard weight w with
``3 * w >= 2 * n_shards + 1`` (Walrus's ``is_quorum_for_n_shards``), so two quorums
share more than ``f`` shards' weight and an honest node is in both.

Weights are fixed for an epoch, never taken from who is live now: two sides of a
partition that each count only the nodes they see would each find a quorum.

On a network with a genesis, the committee of epoch ``e`` is the decided ``EpochState(e)``
(:func:`committee_from_state`: each member weighs the shards it holds in that state, so
weights follow stake; node/ledger_service.py). :func:`committee_from_genesis` (the shard
map of the whole genesis committee, near-equal weights) remains for a ledger without epochs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ..placement import compute_shard_map
from ..thresholds import one_honest, quorum
from .genesis import Genesis


@dataclass(frozen=True)
class Committee:
    epoch: int
    n_shards: int
    weights: tuple[tuple[str, int], ...]  # (peer ID, shards), sorted by peer ID

    def __post_init__(self) -> None:
        ids = [p for p, _ in self.weights]
        if ids != sorted(set(ids)) or any(type(w) is not int or w < 0 for _, w in self.weights):
            raise ValueError("committee weights must be distinct peer IDs, sorted, with non-negative weights")
        if sum(w for _, w in self.weights) > self.n_shards:
            raise ValueError("committee weights add up to more than the shard count")

    @cached_property
    def _by_peer(self) -> dict[str, int]:
        return dict(self.weights)

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(p for p, _ in self.weights)

    def weight(self, peer_id: str) -> int:
        return self._by_peer.get(peer_id, 0)

    def weight_of(self, peers) -> int:
        return sum(self.weight(p) for p in set(peers))

    def is_quorum(self, weight: int) -> bool:
        """Weight enough for a certificate: ``3 w >= 2 n + 1`` (``n - f`` shards when n = 3f + 1)."""
        return weight >= quorum(self.n_shards)

    def is_validity(self, weight: int) -> bool:
        """More than ``f`` shards' weight: at least one honest node among them."""
        return weight >= one_honest(self.n_shards)

    @property
    def quorum_weight(self) -> int:
        return quorum(self.n_shards)


def committee_from_genesis(genesis: Genesis, epoch: int = 0) -> Committee:
    """Genesis's committee; each member weighs the shards it holds in the committee's shard map."""
    smap = compute_shard_map(genesis.member_ids(), genesis.n_shards)
    return Committee(epoch, genesis.n_shards,
                     tuple((p, len(smap.shards_of(p))) for p in sorted(genesis.member_ids())))


def committee_from_state(state) -> Committee:
    """The committee of a decided epoch state (``epoch_state.EpochState``, read by attribute:
    ``epoch``, ``n_shards``, ``committee`` of members with ``peer_id`` and ``shards``): each
    member weighs the shards it holds in that epoch, so weights follow stake from then on."""
    return Committee(state.epoch, state.n_shards,
                     tuple(sorted((m.peer_id, len(m.shards)) for m in state.committee)))
