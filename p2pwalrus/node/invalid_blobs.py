"""Invalid blobs: inconsistency proofs checked, kept, spread and pulled.

A blob whose slivers do not decode to what its metadata commits to is proved invalid by an
inconsistency proof (core/rs2.py). A node that finds one, or receives one by gossip, a push
or an anti-entropy pull, checks it (re-encoding symbols: a worker thread), marks the blob
invalid, drops its slivers, and keeps the proof message (bounded, until the blob's end
epoch: bounded.ProofStore) so that nodes that missed it can pull it.
"""

from __future__ import annotations

import logging
import time

import trio

from ..core import messages as wire
from ..core import protocols, rs2
from ..core.blob_id import blob_id_to_str as rs2_id
from ..core.rs2 import encode_proof_message
from ..errors import ProtocolError
from ..p2p import rpc
from ..p2p.log_once import LogOnce
from .bounded import ProofStore

logger = logging.getLogger("p2pwalrus.node")
_log_once = LogOnce(logger)

MAX_PROOF_MESSAGE = rs2.MAX_PROOF_MESSAGE
PUSH_TIMEOUT = 10.0
# Per anti-entropy pull from one peer: the rest waits for the next pull.
PULL_PROOFS = 16
PULL_PROOF_BYTES = 64 << 20


class InvalidBlobs:
    """The proofs one node holds and the invalid marks on its store."""

    def __init__(self, node):
        self.node = node  # the StorageNode: its store, certificates, live set and gossip
        self.proofs = ProofStore()  # inconsistency proof messages we checked, bounded, expiring

    def is_invalid(self, blob_id: bytes) -> bool:
        return blob_id in self.proofs or bool(self.node.store.get_state(blob_id).get("invalid"))

    def check_message(self, message: bytes) -> bytes:
        """Verify an inconsistency proof message; return the blob ID it proves invalid."""
        return rs2.check_proof_message(message, self.node.net.n_shards)

    async def apply(self, blob_id: bytes, message: bytes | None = None) -> bool:
        """Mark a blob invalid and drop its slivers; True if it was not marked yet.

        A marker goes to disk only for a blob this node holds something of, with the blob's
        end epoch, so it expires with the blob: proofs for blob IDs nobody stored here cost
        memory that is bounded, never disk."""
        node, store = self.node, self.node.store
        was = self.is_invalid(blob_id)
        cert = node.certs.get(blob_id)
        state = await trio.to_thread.run_sync(store.get_state, blob_id)
        end = cert.end_epoch if cert else state.get("end_epoch")
        expires = end if type(end) is int else node.epoch + 1
        if message is not None:
            self.proofs.add(blob_id, message, expires)
        if was and state.get("invalid"):
            return False
        if cert is not None or await trio.to_thread.run_sync(store.has_blob, blob_id):
            def persist():
                store.set_state(blob_id, {"invalid": True, "end_epoch": expires})
                for shard in list(store.shards_stored(blob_id)):
                    store.delete_sliver(blob_id, shard)

            await trio.to_thread.run_sync(persist)
        if not was:
            logger.warning("blob %s is invalid (inconsistency proof checked): no longer served", rs2_id(blob_id))
        return not was

    async def found(self, blob_id: bytes, meta: rs2.BlobMetadata, proof: rs2.InconsistencyProof) -> None:
        """We found the blob inconsistent: mark it and tell every node, with the proof."""
        node = self.node
        if not await trio.to_thread.run_sync(rs2.verify_inconsistency_proof, meta, proof):
            logger.error("own inconsistency proof for %s does not verify", rs2_id(blob_id))
            return
        node.repair.stats["inconsistent_blobs"] += 1
        message = encode_proof_message(blob_id, meta, proof)
        await self.apply(blob_id, message)
        if len(message) < 900_000:
            try:
                await node.node.pubsub.publish(protocols.proofs_topic(node.net.name), message)
            except Exception as exc:
                logger.info("gossiping an inconsistency proof failed: %s", exc)

        async def push(peer):
            from libp2p.peer.id import ID

            with trio.fail_after(PUSH_TIMEOUT):
                stream = await node.node.open_stream(ID.from_base58(peer), [protocols.PUT_PROOF])
                try:
                    await rpc.write_frame(stream, message)
                    await rpc.recv_json(stream)
                finally:
                    await rpc.close_quietly(stream)

        async with trio.open_nursery() as nursery:
            for peer in node.members.live.peer_ids():
                if peer != node.peer_id:
                    nursery.start_soon(_quietly, push, peer)

    async def validator(self, forwarder, msg) -> bool:
        """GossipSub validator of the proofs topic: a proof is relayed only once checked."""
        if self.node.fault_injection.denied_message(forwarder, msg):
            return False
        try:  # a proof's check re-encodes symbols: a worker thread, not the event loop
            blob_id = await trio.to_thread.run_sync(self.check_message, bytes(msg.data))
        except (ProtocolError, rs2.EncodingError) as exc:
            _log_once(f"proof:{forwarder}", logging.WARNING, "gossiped inconsistency proof from %s rejected: %s",
                      forwarder, exc)
            return False
        await self.apply(blob_id, bytes(msg.data))
        return True

    async def pull_from(self, peer_id: str, listed: tuple[bytes, ...], backoff) -> None:
        """Anti-entropy: fetch and check the proofs ``peer_id`` listed that we lack, at most
        PULL_PROOFS of them and PULL_PROOF_BYTES per pull; a failed one is backed off."""
        fetched = nbytes = 0
        now = time.monotonic()
        for blob_id in listed:  # (checked at parsing: 32-byte IDs, at most MAX_PROOFS_LISTED)
            if fetched >= PULL_PROOFS or nbytes >= PULL_PROOF_BYTES:
                break
            if blob_id in self.proofs or not backoff.ready(blob_id, now):
                continue
            fetched += 1
            try:
                message = await self.node.fetch_blob(peer_id, protocols.GET_PROOF, wire.GetProofRequest(blob_id),
                                                     min(MAX_PROOF_MESSAGE, PULL_PROOF_BYTES - nbytes))
                if message is None:
                    raise ProtocolError("listed, then not given")
                nbytes += len(message)
                checked = await trio.to_thread.run_sync(self.check_message, message)
                if checked != blob_id:
                    raise ProtocolError("a proof for another blob")
            except (ProtocolError, rs2.EncodingError, trio.TooSlowError) as exc:
                backoff.failed(blob_id, time.monotonic())
                logger.info("inconsistency proof of %s pulled from %s rejected: %s", rs2_id(blob_id), peer_id, exc)
                continue
            await self.apply(checked, message)


async def _quietly(fn, *args) -> None:
    try:
        await fn(*args)
    except Exception as exc:
        logger.debug("%s failed: %r", getattr(fn, "__name__", fn), exc)
