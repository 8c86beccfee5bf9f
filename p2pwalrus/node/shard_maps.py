"""Which shards a storage node holds (node/service.py's StorageNode): the shard map from the
decided epoch state (or, without epochs, from the live set), recomputed on every membership
change and decided epoch, and what follows a change (hand-over source, repair, status).
"""

from __future__ import annotations

import logging
import time

import trio

from ..core.placement import ShardMap, compute_shard_map

logger = logging.getLogger("p2pwalrus.node")


class _ShardMaps:
    """StorageNode's shard map (uses its ``epochs``, ``members``, ``ledger``, ``certcheck``,
    ``certificates``, ``liveness``, ``repair``, ``net`` and ``write_status``)."""


    def use_epochs(self, runner) -> None:
        """Shards, certificates and the ledger follow ``runner``'s decided states
        (epoch_service.attach_epochs calls it)."""
        self.epochs = runner
        self.certcheck.epoch_views = self._certificate_views
        runner.on_adopt.append(self._epoch_adopted)

    def _certificate_views(self, cert_epoch: int) -> list[ShardMap]:
        from ..core.wal.epoch_map import certificate_views

        return certificate_views(self.epochs.state_for, self.epochs.current, cert_epoch)

    def _epoch_adopted(self, state) -> None:
        """A decided (or learnt) epoch state: the ledger's committee and the shard map follow it."""
        if self.ledger is not None:
            self.ledger.epoch_adopted(state)
        if self.members is not None:
            self._recompute_map()
        logger.info("epoch %d: %d committee members, %d shards here", state.epoch, len(state.committee),
                    len(state.shards_by_node.get(self.peer_id, ())))

    def _decided_maps(self) -> tuple[ShardMap, ShardMap | None]:
        """The current decided state's map and the one before it (shard hand-over source)."""
        from ..core.wal.epoch_map import shard_map_of

        cur = self.epochs.current
        prev = self.epochs.state_for(cur.epoch - 1)
        return shard_map_of(cur), shard_map_of(prev) if prev is not None else None

    def _recompute_map(self) -> None:
        old = self.shard_map
        if self.epochs is not None:
            # Shards follow the decided state, never the live set: they move only at an epoch
            # change; a dead holder's shards are covered by redundancy and repair meanwhile.
            new, decided_prev = self._decided_maps()
            if old is None:
                old = decided_prev  # a restart: the previous holders are where to pull from
        else:
            live = set(self.members.live.peer_ids()) | {self.peer_id}  # we are live before our first publish
            new = compute_shard_map(live, self.net.n_shards)
        self.certcheck.set_map(new)
        if self.shard_map is not None and new.digest() == self.shard_map.digest():
            self.write_status()  # the live set changed all the same (a member that holds no shard)
            return
        self.shard_map = new
        self.prev_shard_map = old
        self.map_changed_at = time.monotonic()
        before = set(old.shards_of(self.peer_id)) if old else set()
        after = set(new.shards_of(self.peer_id))
        if after - before:
            logger.info("shards gained: %s", sorted(after - before))
        if before - after:
            logger.info("shards lost: %s", sorted(before - after))
        done, self.map_changed = self.map_changed, trio.Event()
        done.set()
        # A new view may accept certificates the old one refused: ask for them again.
        self.certificates.backoff = type(self.certificates.backoff)()
        if self.liveness is not None:
            self.liveness.pull_again("certs")
        self.repair.trigger()
        self.write_status()
