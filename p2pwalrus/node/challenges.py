"""Storage challenges (node/repair.py's RepairService): now and then, ask a random holder of
a random certified blob for a random recovery symbol with its proof, and count who passed.
"""

from __future__ import annotations

import logging
import random

import trio

from ..core import messages as wire
from ..core import protocols, rs2
from ..core.blob_id import blob_id_to_str

logger = logging.getLogger("p2pwalrus.repair")  # the log name these lines always had

KEEP_EPOCHS = 8  # epochs of per-epoch counts kept: a proposer asks about the last one or two


class _StorageChallenges:
    """RepairService's challenges (uses its ``node``, ``challenges`` and ``metadata``)."""

    async def challenge_loop(self) -> None:
        node = self.node
        while True:
            await trio.sleep(node.net.timings.challenge_interval * random.uniform(0.5, 1.5))
            try:
                await self.challenge_once()
            except Exception as exc:
                logger.debug("challenge round failed: %r", exc)

    async def challenge_once(self) -> bool | None:
        """Ask a random holder of a random certified blob for a random symbol with its proof."""
        node = self.node
        if not node.certs or node.shard_map is None:
            return None
        blob_id = random.choice(list(node.certs))
        if node.is_invalid(blob_id):
            return None
        n = node.net.n_shards
        smap = node.shard_map
        # A holder first, then one of its shards: every holder is asked as often as any other
        # (a random shard asked the holders of two shards out of ten one time in five), so an
        # epoch holds evidence about each of them (vote_service.ChallengeView pays by it).
        holders = sorted(p for p, shards in smap.load().items() if shards and p != node.peer_id)
        if not holders:
            return None
        holder = random.choice(holders)
        shard = random.choice(smap.shards_of(holder))
        meta = await self.metadata(blob_id)
        pair = rs2.pair_for_shard(shard, blob_id, n)
        target = random.randrange(n)
        ok = False
        try:
            raw = await node.fetch_blob(holder, protocols.GET_RECOVERY,
                                        wire.RecoveryRequest(blob_id, pair, rs2.PRIMARY, (target,)),
                                        meta.symbol_size + 64 + 32 * 20)
            if raw is not None:
                sym, _ = rs2.RecoverySymbol.from_bytes(raw)
                ok = sym.source_index == pair and sym.target_index == target and rs2.verify_recovery_symbol(meta, sym)
        except Exception:
            ok = False
        outcome = "passed" if ok else "failed"
        self.challenges.setdefault(holder, {"passed": 0, "failed": 0})[outcome] += 1
        epoch = node.net.current_epoch()  # counted in the epoch the answer came in
        in_epoch = self.challenge_epochs.setdefault(epoch, {})
        in_epoch.setdefault(holder, {"passed": 0, "failed": 0})[outcome] += 1
        for old in sorted(self.challenge_epochs)[:-KEEP_EPOCHS]:
            del self.challenge_epochs[old]
        if not ok:
            logger.info("storage challenge of %s (shard %d of %s) failed", holder, shard, blob_id_to_str(blob_id))
        return ok
