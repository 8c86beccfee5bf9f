"""A stored blob's life after the store: extend it, delete it (deletable blobs, by their
owner), ask its holders how it stands; and each node's status."""

from __future__ import annotations

import os

import trio

from ..core import messages as wire
from ..core.blob_id import blob_id_to_str
from ..core.certificates import AvailabilityCertificate, StorageConfirmation, quorum, verify_confirmation
from ..errors import NotEnoughShardsError, P2PWalrusError, ProtocolError
from .common import Progress


class Lifecycle:
    """Extend, delete, status (part of `Client`)."""

    async def extend(self, blob_id: bytes, epochs: int, progress: Progress | None = None) -> AvailabilityCertificate:
        """Lengthen a certified blob's life: its holders sign the new end epoch, once the added
        epochs are paid for (on a network with prices)."""
        cert = await self.certified(blob_id)
        epoch = self.net.current_epoch()
        end_epoch = epoch + epochs
        if end_epoch <= cert.end_epoch:
            raise P2PWalrusError(f"the blob is already stored until epoch {cert.end_epoch}; "
                                 f"{epochs} epochs from now ends at {end_epoch}")
        smap = self.shard_map
        members = tuple(smap.nodes)
        payment = None
        probe = await self.quote(0, end_epoch - cert.end_epoch, write=False)  # the price, before the size
        if probe is not None and probe.cost.storage_price:
            length = (await self.metadata(blob_id)).unencoded_length
            payment, _ = await self._pay(length, blob_id, cert.end_epoch, end_epoch,
                                         f"extending {blob_id_to_str(blob_id)} by {end_epoch - cert.end_epoch} "
                                         "epoch(s)", progress or Progress(), write=False)
        header = wire.ConfirmRequest(blob_id, epoch, end_epoch, payment)

        async def confirm(peer):
            reply = await self.request(peer, header)
            if not reply.ok:
                raise ProtocolError(reply.error)
            conf = reply.confirmation
            if conf.peer_id != peer or not verify_confirmation(conf, self.net.name, blob_id, epoch, end_epoch,
                                                               deletable=cert.deletable, owner=cert.owner):
                raise ProtocolError("confirmation does not verify")
            return conf

        results = await self.gather([p for p in members if smap.shards_of(p)], confirm)
        confs = [r for r in results.values() if isinstance(r, StorageConfirmation) and r.shards]
        covered = {s for c in confs for s in c.shards}
        if len(covered) < quorum(self.net.n_shards):
            raise NotEnoughShardsError(f"only {len(covered)} shards' holders signed the extension; "
                                       f"{quorum(self.net.n_shards)} needed")
        new = AvailabilityCertificate(
            network=self.net.name, blob_id=blob_id, n_shards=self.net.n_shards, epoch=epoch, end_epoch=end_epoch,
            members=members, confirmations=tuple(sorted(confs, key=lambda c: c.peer_id)),
            deletable=cert.deletable, owner=cert.owner,
        )
        await trio.to_thread.run_sync(self._validate, new)
        await self.publish_certificate(new)
        return new

    async def delete(self, blob_id: bytes) -> int:
        """Delete a deletable blob stored with this client's key; returns how many nodes deleted it."""
        from ..core.certificates import delete_message
        from ..core.keys import sign

        cert = await self.certified(blob_id)
        if not cert.deletable:
            raise P2PWalrusError("this blob was not stored as deletable (store it with --deletable)")
        if cert.owner != self.peer_id:
            raise P2PWalrusError(f"only the key that stored this blob ({cert.owner}) can delete it, and this "
                                 f"client's key is {self.peer_id} (P2PWALRUS_CLIENT_DIR chooses the key)")
        epoch, nonce = self.net.current_epoch(), os.urandom(16)  # each node takes a delete once
        request = wire.DeleteRequest(blob_id, epoch, sign(self.keypair, delete_message(self.net.name, blob_id, epoch,
                                                                                  nonce)), nonce)
        results = await self.gather(self.live_peers(), lambda p: self.request(p, request))
        deleted = sum(1 for r in results.values() if isinstance(r, wire.Reply) and r.ok)
        if not deleted:
            why = next((r.error for r in results.values() if isinstance(r, wire.Reply)), "no node answered")
            raise P2PWalrusError(f"no node deleted the blob: {why}")
        return deleted

    async def blob_status(self, blob_id: bytes) -> dict:
        if self.shard_map is None:
            await self.refresh_membership()
        n = self.net.n_shards
        out = {"blob_id": blob_id_to_str(blob_id), "status": "nonexistent", "n_shards": n, "shards_stored": 0,
               "certified_epoch": None, "end_epoch": None}
        cert, invalid = await self.find_certificate(blob_id)
        if invalid:
            out["status"] = "invalid"
        elif cert is not None:
            out["status"] = "expired" if cert.end_epoch <= self.net.current_epoch() else "certified"
            out["certified_epoch"], out["end_epoch"] = cert.epoch, cert.end_epoch
        holders = {}
        for shard in range(n):
            holders.setdefault(self.shard_map.owner(shard), set()).add(shard)

        async def ask(peer):
            return await self.request(peer, wire.BlobStatusRequest(blob_id))

        results = await self.gather(list(holders), ask)
        stored = 0
        for peer, res in results.items():
            if isinstance(res, wire.BlobStatusReply) and res.ok:
                if res.invalid and await self.proven_invalid(blob_id, peer):
                    out["status"] = "invalid"
                stored += len(holders[peer] & set(res.shards))
        out["shards_stored"] = stored
        return out

    async def node_infos(self) -> dict[str, dict]:
        """Each live node's status (NODE_INFO, as JSON), or {"error": why} for one that did not answer."""
        results = await self.gather(self.live_peers(), lambda p: self.request(p, wire.NodeInfoRequest()))
        return {p: (r.to_json() if isinstance(r, wire.NodeInfoReply) else {"error": repr(r)}) for p, r in results.items()}
