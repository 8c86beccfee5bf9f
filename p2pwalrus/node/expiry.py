"""Expiry: what a node deletes on its own.

Blobs past their end epoch are deleted, and so are the slivers of uploads that got no
certificate within ``uncertified_grace`` (a store interrupted before its certificate leaves
nothing behind for longer), unless a few peers show a certificate we missed. Proofs are
kept to their blob's end epoch. Repeated every minute, or more often for a short grace.
"""

from __future__ import annotations

import logging
import time

import trio

from ..core.blob_id import blob_id_to_str as rs2_id

logger = logging.getLogger("p2pwalrus.node")


class Expiry:
    def __init__(self, node):
        self.node = node  # the StorageNode: its store, certificates, proofs and epoch

    def uncertified_expired(self, now: float | None = None) -> list[bytes]:
        """Blobs whose slivers came more than `uncertified_grace` seconds ago and that have no
        certificate: uploads that were interrupted or failed before they were certified."""
        node, store = self.node, self.node.store
        now = time.time() if now is None else now
        grace = node.net.timings.uncertified_grace
        out = []
        for blob_id in store.list_blobs():
            if blob_id in node.certs:
                continue
            state = store.get_state(blob_id)
            if state.get("certified") or state.get("invalid") or state.get("deleted"):
                continue
            stored_at = state.get("stored_at")
            if not isinstance(stored_at, (int, float)):  # data from before stored_at: a grace from now
                store.set_state(blob_id, {"stored_at": now})
                continue
            if now - stored_at > grace:
                out.append(blob_id)
        return out

    async def run(self) -> None:
        node, store = self.node, self.node.store
        grace = node.net.timings.uncertified_grace
        while True:
            current = node.epoch
            node.proofs.prune(current)  # proofs kept to their blob's end epoch
            for blob_id in store.list_blobs():
                end = store.get_state(blob_id).get("end_epoch")
                if end is not None and end <= current:
                    await trio.to_thread.run_sync(store.delete_blob, blob_id)
                    node.certs.pop(blob_id, None)
                    logger.info("blob %s expired at epoch %d: deleted", rs2_id(blob_id), end)
            for blob_id in await trio.to_thread.run_sync(self.uncertified_expired):
                if await node.certificates.certified_elsewhere(blob_id):
                    continue
                if blob_id in node.certs:  # certified while we asked
                    continue
                await trio.to_thread.run_sync(store.delete_blob, blob_id)
                node.counters["uncertified_deleted"] += 1
                logger.info("blob %s got no certificate within %.0f s of its upload: deleted", rs2_id(blob_id), grace)
            await trio.sleep(min(60.0, node.net.epoch_length / 4, max(0.5, grace / 4)))
