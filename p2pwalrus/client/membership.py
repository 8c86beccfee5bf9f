"""The client's view of the network: the live set pulled from bootstrap peers (or the decided
epoch state on a network with a genesis), the shard map computed from it, and the maps of
other views and of the past that certificates are also judged by."""

from __future__ import annotations

import logging
import random
import time

import multiaddr
import trio

from .. import p2p as _p2p  # noqa: F401  (first: loads libp2p lean, see p2p/patches/lean_import.py)
from libp2p.peer.id import ID  # noqa: E402
from libp2p.peer.peerinfo import PeerInfo  # noqa: E402

from ..core import protocols
from ..core.placement import ShardMap, compute_shard_map
from ..core.records import MAX_RECORD_SIZE, InvalidRecordError, SignedNodeRecord
from ..errors import NetworkConfigError, NotEnoughShardsError
from ..p2p import rpc
from ..p2p.framing import read_frame, write_frame
from ..p2p.host import open_stream, parse_peer_addr
from .calls import CALL_TIMEOUT, DIAL_TIMEOUT

logger = logging.getLogger("p2pwalrus.client")


class Membership:
    """The live view of `Client`: ``records``, ``known_peers``, ``shard_map`` and the other views."""

    def _remember(self, signed: SignedNodeRecord, into: dict[str, SignedNodeRecord]) -> None:
        rec = signed.record
        into[rec.peer_id] = signed
        try:
            addrs = [multiaddr.Multiaddr(a).decapsulate(multiaddr.Multiaddr(f"/p2p/{rec.peer_id}")) for a in rec.addrs]
            self.host.get_peerstore().add_addrs(ID.from_base58(rec.peer_id), addrs, 600)
        except Exception as exc:
            logger.debug("ignoring addrs of %s: %s", rec.peer_id, exc)

    async def _pull_members(self, peer_id: ID, into: dict[str, SignedNodeRecord]) -> int:
        with trio.fail_after(CALL_TIMEOUT):
            stream = await open_stream(self.host, peer_id, [protocols.MEMBERS], DIAL_TIMEOUT)
            try:
                await write_frame(stream, protocols.MEMBERS_PULL_REQUEST)
                count = 0
                for _ in range(4097):
                    data = await read_frame(stream, MAX_RECORD_SIZE)
                    if not data:
                        break
                    try:
                        self._remember(SignedNodeRecord.from_bytes(data, network=self.net.name, now=time.time()), into)
                        count += 1
                    except InvalidRecordError as exc:
                        logger.info("record from %s rejected: %s", peer_id, exc.reason)
                return count
            finally:
                await rpc.close_quietly(stream)

    async def refresh_membership(self) -> ShardMap:
        """Take the live set as the first bootstrap peer that answers knows it now."""
        if not self.net.bootstrap:
            raise NetworkConfigError(
                f"network {self.net.name!r} ({self.net.source}) lists no bootstrap peers: "
                "start a testnet with `netlab up` and use its network.toml"
            )
        errors = []
        fresh: dict[str, SignedNodeRecord] = {}
        boots = list(self.net.bootstrap)
        random.shuffle(boots)
        for addr in boots:
            info = parse_peer_addr(addr)
            try:
                with trio.fail_after(DIAL_TIMEOUT):
                    await self.host.connect(info)
                if await self._pull_members(info.peer_id, fresh):
                    break
            except Exception as exc:
                errors.append(f"{addr}: {exc!r}")
        if not fresh:
            raise NotEnoughShardsError("no bootstrap peer answered: " + "; ".join(errors))
        self.records = fresh
        self.known_peers |= set(fresh)
        if self.epochs is not None:
            # Who holds what: the latest decided state, verified from genesis, from the peer that
            # answered first (then others, if it lags the clock).
            first = str(info.peer_id)
            others = [p for p in self.epochs.current.weights if p in fresh and p != first]
            random.shuffle(others)
            await self.epochs.refresh(self.host, [first, *others], self.net.current_epoch())
            old, self.shard_map = self.shard_map, self.epochs.shard_map()
        else:
            old, self.shard_map = self.shard_map, compute_shard_map(self.records.keys(), self.net.n_shards)
        self.remember_view(old)
        return self.shard_map

    async def refresh_epochs(self) -> None:
        """Catch up with the decided epoch states (a network with a genesis), and the map with them."""
        if self.epochs is None:
            return
        if not self.records:
            await self.refresh_membership()
            return
        peers = [p for p in self.epochs.current.weights if p in self.records]
        random.shuffle(peers)
        before = self.epochs.current.epoch
        await self.epochs.refresh(self.host, peers, self.net.current_epoch())
        if self.epochs.current.epoch != before:
            old, self.shard_map = self.shard_map, self.epochs.shard_map()
            self.remember_view(old)

    def remember_view(self, old: ShardMap | None) -> None:
        """Keep a map this client held before among its views (at most 8): a certificate
        made just before churn still verifies for a long-lived client, a gateway say."""
        if old is not None and self.shard_map is not None and old.digest() != self.shard_map.digest():
            self.past_views = [old, *(v for v in self.past_views if v.digest() != old.digest())][:8]

    async def learn_members(self) -> int:
        """Pull the live set from every bootstrap peer into `known_peers` (not into the live
        set): for a certificate whose signers the first bootstrap peer had not learnt of yet."""
        before = len(self.known_peers)

        async def pull(addr):
            info = parse_peer_addr(addr)
            with trio.fail_after(DIAL_TIMEOUT):
                await self.host.connect(info)
            got: dict[str, SignedNodeRecord] = {}
            await self._pull_members(info.peer_id, got)
            self.known_peers.update(got)
            if got and self.epochs is None:  # (with epochs, maps come from decided states only)
                views.append(await trio.to_thread.run_sync(compute_shard_map, list(got), self.net.n_shards))

        views: list[ShardMap] = []
        await self.gather(list(self.net.bootstrap)[:8], pull)
        self.other_views = views
        return len(self.known_peers) - before + len(views)

    def live_peers(self) -> list[str]:
        return sorted(self.records)

    async def dial_all(self) -> None:
        """Connect to every live node now (bounded by DIAL_TIMEOUT each; failures are left to the
        calls that follow, which dial again and report them)."""
        async def dial(peer: str) -> None:
            with trio.move_on_after(DIAL_TIMEOUT):
                await self.host.connect(PeerInfo(ID.from_base58(peer), self.host.get_peerstore().addrs(
                    ID.from_base58(peer))))

        await self.gather(self.live_peers(), dial)
