"""Repair, inconsistency proofs and storage challenges: the node's side of keeping blobs alive.

Every node repairs only its own shards (see core/repair_plan.py), on start, on a timer,
on every shard-map change and on every new certificate. A pair is copied whole from its
previous holder while that one is live; otherwise each sliver is rebuilt from recovery
symbols, each checked against its Merkle proof. Concurrency is bounded so that reads and
writes stay responsive. Storage challenges are in challenges.py.
"""

from __future__ import annotations

import collections
import logging
import random
import time

import trio

from ..core import rs2
from ..core.blob_id import blob_id_to_str
from ..core.repair_plan import BlobView, plan_repairs, recovery_sources
from ..errors import DecodingError, InconsistentBlobError, ProtocolError, VerificationError
from ..p2p import rpc
from .challenges import _StorageChallenges
from .sliver_store import PRIMARY, SECONDARY
from ..core import messages as wire
from ..core import protocols

logger = logging.getLogger("p2pwalrus.repair")

BLOB_CONCURRENCY = 2  # blobs repaired at once
MAX_FETCHES_IN_FLIGHT = 64  # symbol requests in flight per blob being repaired
FETCH_TIMEOUT = 15.0
PEER_FETCHES = 8  # repair requests in flight to any one peer, over all blobs being repaired
SWEEP_DEADLINE = 600.0
HANDOFF_RETRY = 5.0  # s; a sweep again this soon while pairs wait for their new holder
RENEW_RETRY = 10.0  # s; a sweep again this soon while a certificate's renewal is pending  # s; one sweep's repairs are cut here and go on at the next sweep


class RepairService(_StorageChallenges):
    def __init__(self, node):
        self.node = node
        self.wake = trio.Event()
        self.stats = {
            "queue": 0,
            "pairs_restored": 0,
            "slivers_recovered": 0,
            "pairs_synced": 0,
            "bytes_moved": 0,
            "sync_bytes": 0,  # of bytes_moved: pairs copied whole from their previous holder
            "handoffs_dropped": 0,
            "failures": 0,
            "inconsistent_blobs": 0,
            "sweeps": 0,
            "last_sweep_seconds": 0.0,
            "full_redundancy_at": None,
        }
        # (blob id, shard, start, end, bytes, restored pair bytes) of recent repairs, for measurement
        self.events: collections.deque = collections.deque(maxlen=10_000)
        self.challenges: dict[str, dict[str, int]] = {}  # holder -> passed/failed, since start
        # epoch of the network's clock -> holder -> passed/failed in it (challenges.py): what
        # vote_service.ChallengeView judges an epoch by, whenever the proposer asks
        self.challenge_epochs: dict[int, dict[str, dict[str, int]]] = {}
        self.swept = trio.Event()  # set after each sweep, then replaced: tests and netlab wait on it
        from .bounded import Backoff

        # Blobs whose repair failed wait 5 s, then 10, 20, ... up to 10 min before they are
        # tried again (short at first: a repair during churn often fails once, then works).
        self.backoff = Backoff(base=5.0, cap=600.0)
        self._peer_limits: dict[str, trio.CapacityLimiter] = {}
        self.renewals_pending = 0  # certificates whose renewal failed in the last sweep (recertify.py)
        self.handoffs_pending = 0  # pairs kept in the last sweep because their new holder lacked them

    async def fetch(self, peer: str, protocol, header: dict, max_size: int, **kw):
        """node.fetch_blob within the peer's budget of PEER_FETCHES requests in flight."""
        limiter = self._peer_limits.get(peer)
        if limiter is None:
            if len(self._peer_limits) > 4096:  # peers come and go: forget the idle ones
                self._peer_limits = {p: lim for p, lim in self._peer_limits.items() if lim.borrowed_tokens}
            limiter = self._peer_limits[peer] = trio.CapacityLimiter(PEER_FETCHES)
        async with limiter:
            return await self.node.fetch_blob(peer, protocol, header, max_size, **kw)

    def trigger(self) -> None:
        self.wake.set()

    # --- the loop ---------------------------------------------------------------

    async def run(self) -> None:
        interval = self.node.net.timings.repair_interval
        while True:
            await self._settle()
            await self.sweep()
            # A renewal that failed (holders still repairing) is tried again soon, not at the timer.
            # So is a hand-over whose new holder was still pulling its pairs (an epoch change).
            wait = interval
            if self.renewals_pending:
                wait = min(wait, RENEW_RETRY)
            if self.handoffs_pending:
                wait = min(wait, HANDOFF_RETRY)
            with trio.move_on_after(wait):
                await self.wake.wait()
            self.wake = trio.Event()

    async def _settle(self) -> None:
        """Wait until the shard map has been stable for a moment.

        Nodes see a departure at nearly the same instant, but two departures are two map
        changes: repairing between them could set two successive owners on one shard."""
        if getattr(self.node, "epochs", None) is not None:
            return  # the map changes only to a decided state, all at once: nothing to settle
        # Watchers notice a death within a heartbeat or two of each other: wait two.
        settle = min(10.0, 2 * self.node.net.timings.heartbeat_interval)
        while True:
            quiet = time.monotonic() - self.node.map_changed_at
            if quiet >= settle:
                return
            await trio.sleep(settle - quiet)

    def _views(self) -> list[BlobView]:
        store = self.node.store
        views = []
        for blob_id, cert in list(self.node.certs.items()):
            state = store.get_state(blob_id)
            held = {s: frozenset(k) for s, k in store.shards_stored(blob_id).items()}
            views.append(BlobView(blob_id, max(cert.end_epoch, state.get("end_epoch", 0)), bool(state.get("invalid")), held))
        return views

    async def sweep(self) -> None:
        node = self.node
        if node.shard_map is None:
            return
        t0 = time.monotonic()
        views = await trio.to_thread.run_sync(self._views)
        live = set(node.members.live.peer_ids()) | {node.peer_id}
        tasks, handoffs = plan_repairs(node.peer_id, node.shard_map, node.prev_shard_map, live, views, node.epoch)
        self.stats["queue"] = len(tasks)
        by_blob: dict[bytes, list] = collections.defaultdict(list)
        now = time.monotonic()
        for task in tasks:
            if self.backoff.ready(task.blob_id, now):
                by_blob[task.blob_id].append(task)
        limiter = trio.CapacityLimiter(BLOB_CONCURRENCY)

        async def one(blob_id, blob_tasks):
            async with limiter:
                try:
                    await self.repair_blob(blob_id, blob_tasks)
                    self.backoff.succeeded(blob_id)
                except Exception as exc:
                    self.stats["failures"] += 1
                    wait = self.backoff.failed(blob_id, time.monotonic())
                    logger.info("repair of %s failed for now (next try in %.0f s): %r", blob_id_to_str(blob_id),
                                wait, exc)

        with trio.move_on_after(SWEEP_DEADLINE) as sweep_scope:
            async with trio.open_nursery() as nursery:
                for blob_id, blob_tasks in by_blob.items():
                    nursery.start_soon(one, blob_id, blob_tasks)
        if sweep_scope.cancelled_caught:
            logger.info("repair sweep cut after %.0f s; the rest goes on at the next sweep", SWEEP_DEADLINE)
        self.handoffs_pending = await self.hand_off(handoffs) if handoffs else 0
        from .recertify import renew_short_certificates

        with trio.move_on_after(SWEEP_DEADLINE):
            # After repair: today's holders hold their slivers.
            self.renewals_pending = await renew_short_certificates(node)
        self.stats["sweeps"] += 1
        self.stats["last_sweep_seconds"] = time.monotonic() - t0
        self.stats["queue"] = 0
        if tasks and self.stats["failures"] == 0:
            self.stats["full_redundancy_at"] = time.time()
        done, self.swept = self.swept, trio.Event()
        done.set()

    # --- one blob -------------------------------------------------------------------

    async def metadata(self, blob_id: bytes) -> rs2.BlobMetadata:
        node = self.node
        raw = node.store.get_metadata(blob_id)
        if raw is not None:
            return rs2.BlobMetadata.from_bytes(raw)
        n = node.net.n_shards
        owners = list(dict.fromkeys(node.shard_map.owner(s) for s in range(n)))
        random.shuffle(owners)
        for peer in owners:
            if peer == node.peer_id:
                continue
            try:
                raw = await self.fetch(peer, protocols.GET_METADATA, wire.GetMetadataRequest(blob_id),
                                       rs2.metadata_size(n))
                if raw is None:
                    continue
                meta = rs2.BlobMetadata.from_bytes(raw)
                meta.verify_blob_id(blob_id)
            except (ProtocolError, VerificationError, trio.TooSlowError, OSError, Exception) as exc:
                logger.debug("metadata of %s from %s: %r", blob_id_to_str(blob_id), peer, exc)
                continue
            node.store.put_metadata(blob_id, raw)
            return meta
        raise DecodingError("no holder returned valid metadata")

    def _count(self, traffic: list[int], nbytes: int) -> None:
        """Bytes received for one repair (traffic is that repair's own counter)."""
        traffic[0] += nbytes
        self.stats["bytes_moved"] += nbytes

    async def repair_blob(self, blob_id: bytes, tasks) -> None:
        meta = await self.metadata(blob_id)
        pair_bytes = meta.config.primary_sliver_len(meta.unencoded_length) + meta.config.secondary_sliver_len(
            meta.unencoded_length)
        todo = []
        for task in tasks:
            if task.shard not in self.node.my_shards():
                continue  # the map moved on since the plan: the shard's new holder repairs it
            start, traffic = time.time(), [0]
            if task.sync_from and await self._sync_pair(meta, task, traffic):
                self.stats["pairs_synced"] += 1
                self.stats["pairs_restored"] += 1
                self.events.append((blob_id.hex(), task.shard, start, time.time(), traffic[0], pair_bytes))
                logger.info("restored shard %d of %s from its previous holder", task.shard, blob_id_to_str(blob_id))
            else:
                todo.append(task)
        if not todo:
            return
        start, traffic = time.time(), [0]
        try:
            # Secondary slivers first: they need n - 2f symbols, primary ones n - f.
            await self._recover(meta, [t for t in todo if t.need_secondary], rs2.SECONDARY, traffic)
            await self._recover(meta, [t for t in todo if t.need_primary], rs2.PRIMARY, traffic)
        except InconsistentBlobError as exc:
            await self.node.mark_invalid(blob_id, meta, exc.proof)
            return
        # Symbols for all of this blob's tasks came in the same requests: share the bytes out.
        moved = traffic[0] / len(todo)
        for task in todo:
            self.events.append((blob_id.hex(), task.shard, start, time.time(), moved, pair_bytes))
            self.stats["pairs_restored"] += 1
            logger.info("restored shard %d of %s", task.shard, blob_id_to_str(blob_id))

    async def _sync_pair(self, meta: rs2.BlobMetadata, task, traffic: list[int]) -> bool:
        """Copy the pair from its previous holder, verifying both slivers."""
        node = self.node
        got = {}
        for kind in task.kinds:
            try:
                cfg, length = meta.config, meta.unencoded_length
                limit = cfg.primary_sliver_len(length) if kind == PRIMARY else cfg.secondary_sliver_len(length)
                data = await self.fetch(task.sync_from, protocols.GET_SLIVER,
                                        wire.GetSliverRequest(task.blob_id, task.pair, kind), limit)
                if data is None:
                    return False
                self._count(traffic, len(data))
                self.stats["sync_bytes"] += len(data)
                verify = rs2.verify_primary_sliver if kind == PRIMARY else rs2.verify_secondary_sliver
                await trio.to_thread.run_sync(verify, meta, task.pair, data)
                got[kind] = data
            except Exception as exc:
                logger.info("shard sync of %d from %s failed: %r", task.shard, task.sync_from, exc)
                return False
        for kind, data in got.items():
            await trio.to_thread.run_sync(node.store.put_sliver, task.blob_id, task.shard, kind, data)
        return True

    async def _recover(self, meta: rs2.BlobMetadata, tasks, target_axis: str, traffic: list[int]) -> None:
        """Rebuild one sliver of each task's pair from recovery symbols, and store them.

        One request per source sliver carries every target this node needs from it.
        """
        if not tasks:
            return
        node = self.node
        n, cfg = meta.n_shards, meta.config
        blob_id = tasks[0].blob_id
        if target_axis == rs2.SECONDARY:
            source_axis, need = rs2.PRIMARY, cfg.n_primary
            targets = {n - 1 - t.pair: t for t in tasks}
        else:
            source_axis, need = rs2.SECONDARY, cfg.n_secondary
            targets = {t.pair: t for t in tasks}
        wanted = sorted(targets)
        symbols: dict[int, dict[int, rs2.RecoverySymbol]] = {t: {} for t in wanted}
        queue = iter(recovery_sources(target_axis, wanted[0], n))
        max_reply = len(wanted) * (meta.symbol_size + 64 + 32 * 20)
        kind = PRIMARY if source_axis == rs2.PRIMARY else SECONDARY

        def enough() -> bool:
            return all(len(s) >= need for s in symbols.values())

        async def fetch(pair: int) -> None:
            shard = rs2.shard_for_pair(pair, blob_id, n)
            holder = node.shard_map.owner(shard)
            if holder == node.peer_id:
                sliver = await trio.to_thread.run_sync(node.store.get_sliver, blob_id, shard, kind)
                if sliver is None:
                    return
                source_index = pair if source_axis == rs2.PRIMARY else n - 1 - pair
                syms = await trio.to_thread.run_sync(
                    rs2.recovery_symbols, source_axis, source_index, sliver, wanted, cfg, meta.symbol_size)
            else:
                try:
                    raw = await self.fetch(holder, protocols.GET_RECOVERY,
                                           wire.RecoveryRequest(blob_id, pair, source_axis, tuple(wanted)),
                                           max_reply, timeout=FETCH_TIMEOUT)
                    if raw is None:
                        return
                except Exception as exc:
                    logger.debug("symbols from %s failed: %r", holder, exc)
                    return
                self._count(traffic, len(raw))
                syms, offset = [], 0
                try:
                    while offset < len(raw) and len(syms) < len(wanted):
                        sym, offset = rs2.RecoverySymbol.from_bytes(raw, offset)
                        syms.append(sym)
                except ProtocolError:
                    logger.warning("malformed recovery symbols from %s", holder)
            for sym in syms:
                if (sym.axis == source_axis and sym.target_index in symbols
                        and rs2.verify_recovery_symbol(meta, sym)):
                    symbols[sym.target_index].setdefault(sym.source_index, sym)
                else:
                    logger.warning("bad recovery symbol from holder of shard %d of %s", shard, blob_id_to_str(blob_id))

        async def worker():
            for pair in queue:
                if enough():
                    return
                await fetch(pair)

        # Exactly `need` requests in flight: a failed one moves on to the next source, so
        # no more symbols are fetched than needed when every holder answers.
        async with trio.open_nursery() as nursery:
            for _ in range(min(MAX_FETCHES_IN_FLIGHT, need)):
                nursery.start_soon(worker)
        for target, task in targets.items():
            got = symbols[target]
            if len(got) < need:
                raise DecodingError(f"only {len(got)} of {need} recovery symbols reachable")
            result = await trio.to_thread.run_sync(rs2.recover_sliver, meta, target_axis, target, list(got.values()))
            out_kind = SECONDARY if target_axis == rs2.SECONDARY else PRIMARY
            await trio.to_thread.run_sync(node.store.put_sliver, blob_id, task.shard, out_kind, result.sliver)
            self.stats["slivers_recovered"] += 1
        if node.store.get_metadata(blob_id) is None:
            node.store.put_metadata(blob_id, meta.to_bytes())

    # --- hand-off -----------------------------------------------------------------------

    async def hand_off(self, handoffs) -> int:
        """Drop pairs of shards we no longer own, once their new holder has them; how many
        are kept for now (the new holder lacks them: this node keeps serving them)."""
        node = self.node
        kept = 0
        by_peer: dict[tuple[str, bytes], list[int]] = collections.defaultdict(list)
        for h in handoffs:
            by_peer[(h.new_holder, h.blob_id)].append(h.shard)
        for (peer, blob_id), shards in by_peer.items():
            try:
                stream, reply = await node.call(peer, protocols.BLOB_STATUS, wire.BlobStatusRequest(blob_id))
                await rpc.close_quietly(stream)
            except Exception:
                kept += len(shards)
                continue
            theirs = set(reply.shards) if reply.ok else set()
            for shard in shards:
                if shard in theirs:
                    await trio.to_thread.run_sync(node.store.delete_sliver, blob_id, shard)
                    self.stats["handoffs_dropped"] += 1
                else:
                    kept += 1
        return kept
