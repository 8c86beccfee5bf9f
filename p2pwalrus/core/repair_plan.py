"""The repair planner (pure): what this node lacks, where to get it, in what order.

Only the current holder of a shard repairs it, so with agreed shard maps no two nodes
repair the same shard of the same blob. A pair whose previous holder is still live is
fetched whole from it (shard sync); otherwise it is rebuilt from recovery symbols:
the secondary sliver first (from n - 2f primary holders), then the primary sliver (from
n - f secondary holders).
"""

from __future__ import annotations

from dataclasses import dataclass

from .placement import ShardMap
from .rs2 import pair_for_shard


@dataclass(frozen=True)
class BlobView:
    """What the node knows of one certified blob."""

    blob_id: bytes
    end_epoch: int
    invalid: bool
    held: dict[int, frozenset[str]]  # shard -> kinds stored here ("primary", "secondary")


@dataclass(frozen=True)
class RepairTask:
    blob_id: bytes
    shard: int
    pair: int
    need_primary: bool
    need_secondary: bool
    sync_from: str | None  # previous holder to copy the pair from, if still live

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k for k, need in (("secondary", self.need_secondary), ("primary", self.need_primary)) if need)


@dataclass(frozen=True)
class HandOff:
    """A pair held here for a shard now owned by another node: drop it once that node has it."""

    blob_id: bytes
    shard: int
    new_holder: str


def plan_repairs(
    me: str,
    shard_map: ShardMap,
    previous_map: ShardMap | None,
    live: set[str],
    blobs: list[BlobView],
    current_epoch: int,
) -> tuple[list[RepairTask], list[HandOff]]:
    """Tasks for this node's own missing pairs, and hand-offs of pairs it no longer owns.

    Tasks come soonest-expiring blob first, then by shard, so that the network regains
    redundancy of the most urgent blobs first and every node walks in the same order.
    """
    mine = set(shard_map.shards_of(me))
    tasks: list[RepairTask] = []
    handoffs: list[HandOff] = []
    for view in sorted(blobs, key=lambda b: (b.end_epoch, b.blob_id)):
        if view.invalid or view.end_epoch <= current_epoch:
            continue
        n = shard_map.n_shards
        for shard in sorted(mine):
            kinds = view.held.get(shard, frozenset())
            need_p, need_s = "primary" not in kinds, "secondary" not in kinds
            if not (need_p or need_s):
                continue
            sync = None
            if previous_map is not None:
                prev = previous_map.owner(shard)
                if prev != me and prev in live:
                    sync = prev
            tasks.append(RepairTask(view.blob_id, shard, pair_for_shard(shard, view.blob_id, n), need_p, need_s, sync))
        for shard, kinds in sorted(view.held.items()):
            if shard not in mine and kinds:
                handoffs.append(HandOff(view.blob_id, shard, shard_map.owner(shard)))
    return tasks, handoffs


def recovery_sources(target_axis: str, target_index: int, n_shards: int) -> list[int]:
    """Pairs whose slivers hold symbols for rebuilding a sliver, in the order to ask them.

    To rebuild secondary sliver (column) j: the primary slivers of pairs i, symbol j.
    To rebuild primary sliver (row) i: the secondary slivers of columns j, stored in
    pairs n-1-j, symbol i. Systematic sources come first; they are as good as any.
    """
    if target_axis == "secondary":
        return list(range(n_shards))
    return [n_shards - 1 - j for j in range(n_shards)]
