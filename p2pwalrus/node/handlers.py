"""The request/response protocols a storage node serves (core/protocols.py): each handler
parses its request message (core/messages.py), checks it against this node's state, answers
with its reply message, and leaves the rest to the node's services. Every handler runs
under rpc.serve: a deadline, per-peer caps, and no exception past it.

Stores verify each sliver pair in a worker thread as soon as it has arrived (one verifying
thread per request), then persist the verified pairs with one group commit (both in
node/store_pairs.py).
"""

from __future__ import annotations

import itertools
import logging
import time

import trio

from ..core import messages as wire
from ..core import protocols, rs2
from ..core.blob_id import blob_id_to_str as rs2_id
from ..core.certificates import (
    MAX_CERT_BYTES,
    AvailabilityCertificate,
    InvalidCertificateError,
    relabel_reason,
    sign_confirmation,
)
from ..core.storage_period import period_problem
from ..errors import CapacityExceededError, ProtocolError, StorageError
from ..p2p import rpc
from .sliver_store import PRIMARY, SECONDARY
from .store_pairs import persist_pairs, verify_and_persist, verify_pairs  # noqa: F401  (verify_and_persist: re-exported)

logger = logging.getLogger("p2pwalrus.node")

MAX_PAID_HEADER = 256 << 10  # a store or extension header with its payment certificate (votes of up to 1000 nodes)
MAX_PROOF_MESSAGE = rs2.MAX_PROOF_MESSAGE


class StreamHandlers:
    """The blob and certificate exchanges of one node (``table()``: protocol -> handler)."""

    def __init__(self, node):
        self.node = node  # the StorageNode: its store, certificates, proofs, shard map and ledger

    def table(self) -> dict:
        return {
            protocols.STORE: self.store,
            protocols.CONFIRM: self.confirm,
            protocols.GET_METADATA: self.get_metadata,
            protocols.GET_SLIVER: self.get_sliver,
            protocols.GET_RECOVERY: self.recovery,
            protocols.BLOB_STATUS: self.status,
            protocols.GET_CERT: self.get_cert,
            protocols.PUT_CERT: self.put_cert,
            protocols.LIST_CERTS: self.list_certs,
            protocols.NODE_INFO: self.info,
            protocols.LIST_BLOBS: self.list_blobs,
            protocols.PUT_PROOF: self.put_proof,
            protocols.GET_PROOF: self.get_proof,
            protocols.DELETE: self.delete,
        }

    async def put_proof(self, stream, peer: str) -> None:
        node = self.node
        message = await rpc.recv_blob(stream, MAX_PROOF_MESSAGE)
        blob_id = await trio.to_thread.run_sync(node.check_proof_message, message)
        new = await node.invalid.apply(blob_id, message)
        await rpc.send_json(stream, wire.NewReply(True, None, new).to_json())

    async def delete(self, stream, peer: str) -> None:
        """Delete a deletable blob on the word of the key that stored it (the owner its holders
        signed for), once per nonce and only in the epoch the delete was issued or the next."""
        node = self.node
        from ..core.certificates import delete_message
        from ..core.keys import verify_signature

        req = wire.DeleteRequest.from_json(await rpc.recv_json(stream), n_shards=node.net.n_shards)
        blob_id, issued, signature, nonce = req.blob_id, req.epoch, req.signature, req.nonce
        if not 0 <= node.epoch - issued <= 1:
            raise ProtocolError(f"delete issued in epoch {issued}, now {node.epoch}: sign a new one")
        cert = node.certs.get(blob_id)
        if cert is None:
            await rpc.send_json(stream, wire.Reply.failed("not found").to_json())
            return
        if not cert.deletable:
            raise ProtocolError("blob was not stored as deletable")
        if not cert.owner or not verify_signature(cert.owner, delete_message(node.net.name, blob_id, issued, nonce),
                                                  signature):
            raise ProtocolError("delete request not signed by the blob's owner")
        if why := node.delete_nonces.use(nonce.hex(), issued, node.epoch):
            raise ProtocolError(why)
        await trio.to_thread.run_sync(node.store.delete_blob, blob_id)
        node.certs.pop(blob_id, None)
        node.store.set_state(blob_id, {"deleted": True, "end_epoch": cert.end_epoch})
        logger.info("blob %s deleted by its owner", rs2_id(blob_id))
        await rpc.send_json(stream, wire.Reply().to_json())

    def _check_epochs(self, epoch: int, end_epoch: int) -> None:
        node = self.node
        if why := period_problem(epoch, end_epoch, node.epoch, node.max_epochs_ahead()):
            raise ProtocolError(why)

    async def _read_metadata(self, stream, blob_id: bytes) -> rs2.BlobMetadata:
        node = self.node
        raw = await rpc.recv_blob(stream, rs2.metadata_size(node.net.n_shards))
        meta = rs2.BlobMetadata.from_bytes(raw, max_shards=node.net.n_shards)
        if meta.n_shards != node.net.n_shards:
            raise ProtocolError(f"metadata for {meta.n_shards} shards; the network has {node.net.n_shards}")
        if meta.blob_id() != blob_id:
            raise ProtocolError("metadata does not match the blob ID")
        return meta

    async def store(self, stream, peer: str) -> None:
        node = self.node
        node.counters["store_requests"] += 1
        n = node.net.n_shards
        req = wire.StoreRequest.from_json(await rpc.recv_json(stream, MAX_PAID_HEADER), n_shards=n)
        blob_id, epoch, end_epoch, pairs = req.blob_id, req.epoch, req.end_epoch, req.pairs
        deletable, owner = req.deletable, req.owner
        self._check_epochs(epoch, end_epoch)
        # Refused from the header, before a byte of metadata or slivers is read: a node
        # buffers only slivers of shards it holds.
        mine = set(node.my_shards())
        foreign = sorted(s for s in (rs2.shard_for_pair(p, blob_id, n) for p in pairs) if s not in mine)
        if foreign:
            raise ProtocolError(f"shards {foreign} are not held by this node")
        meta = await self._read_metadata(stream, blob_id)
        if node.is_invalid(blob_id):
            raise ProtocolError("blob is marked invalid")
        if node.ledger is not None:  # paid for, before a sliver is read (issue 16); nothing asked at price 0
            await node.ledger.check_store_payment(req.payment, blob_id=blob_id, n_shards=n, epoch=epoch,
                                                  end_epoch=end_epoch, unencoded_length=meta.unencoded_length)
        held = node.certs.get(blob_id)
        if held is not None and (why := relabel_reason(held, _labels(deletable, owner))):
            # What we sign binds the labels: no stranger gets signatures that relabel a blob.
            raise ProtocolError(f"this blob is certified here already; storing it again like this is refused: {why}")
        cfg, s = meta.config, meta.symbol_size
        p_len, s_len = cfg.n_secondary * s, cfg.n_primary * s
        mine = set(node.my_shards())
        refused: dict[int, str] = {}
        verified: list[tuple] = []
        timing: dict[str, float] = {"verify": 0.0, "write": 0.0}
        one_at_a_time = trio.CapacityLimiter(1)  # one verifying thread per request, in arrival order

        async def verify(pair: int, shard: int, prim: bytes, sec: bytes) -> None:
            async with one_at_a_time:
                t0 = time.perf_counter()
                good, bad = await trio.to_thread.run_sync(verify_pairs, meta, [(pair, shard, prim, sec)])
                timing["verify"] += time.perf_counter() - t0
            verified.extend(good)
            for bad_pair, why in bad.items():
                refused[bad_pair] = why
                node.counters["slivers_refused"] += 1
                logger.warning("sliver pair %d of %s from %s refused: %s", bad_pair, rs2_id(blob_id), peer, why)

        # Each pair is verified in a worker thread as soon as it has arrived, while the next
        # ones are received (the stream keeps draining: Yamux resets a stalled one).
        async with trio.open_nursery() as nursery:
            for pair in pairs:
                prim = await rpc.recv_blob(stream, p_len)
                sec = await rpc.recv_blob(stream, s_len)
                if len(prim) != p_len or len(sec) != s_len:
                    raise ProtocolError(f"sliver sizes for pair {pair} do not match the metadata")
                shard = rs2.shard_for_pair(pair, blob_id, n)
                if shard not in mine:
                    refused[pair] = f"shard {shard} is not held by this node"
                else:
                    nursery.start_soon(verify, pair, shard, prim, sec)

        def update_state(state: dict) -> dict:
            return {
                "end_epoch": max(end_epoch, state.get("end_epoch", 0)),
                "deletable": deletable,
                "owner": owner or state.get("owner", ""),
                "stored_at": state.get("stored_at", time.time()),
                "deleted": False,  # a new upload after its owner deleted it: certifiable again
            }

        verified.sort()
        t0 = time.perf_counter()
        try:
            stored = await trio.to_thread.run_sync(persist_pairs, node.store, meta, blob_id, verified, update_state)
        except StorageError as exc:
            # The reason in our log; the peer gets words without local paths or library text.
            logger.warning("store of %s from %s failed: %s", rs2_id(blob_id), peer, exc)
            full = isinstance(exc, CapacityExceededError)
            await rpc.send_json(stream, wire.StoreReply.failed("storage: capacity exceeded on this node" if full
                                                              else "storage: this node could not write the slivers"
                                                              ).to_json())
            return
        finally:
            timing["write"] += time.perf_counter() - t0
        if not stored:
            # No signature for zero shards: an empty confirmation still counts as a signer
            # towards a certificate for a blob this node never stored (issue 13).
            await rpc.send_json(stream, wire.StoreReply.failed("no sliver of this blob was stored here",
                                                              refused=refused).to_json())
            return
        conf = sign_confirmation(node.keypair, node.peer_id, node.net.name, blob_id, epoch, end_epoch, stored,
                                 deletable=deletable, owner=owner)
        await rpc.send_json(stream, wire.StoreReply(
            True, None, conf, refused,
            {k: round(v, 4) for k, v in timing.items()},  # what `p2pwalrus store` reports
        ).to_json())

    async def confirm(self, stream, peer: str) -> None:
        """Sign a confirmation for the shards of a certified blob held now (extensions), with
        the labels of the certificate we hold: the caller chooses only the epochs, so a
        stranger's extension can never relabel the blob's owner or deletable flag. Our end
        epoch moves only when the extension's certificate arrives."""
        node = self.node
        req = wire.ConfirmRequest.from_json(await rpc.recv_json(stream, MAX_PAID_HEADER), n_shards=node.net.n_shards)
        blob_id, epoch, end_epoch = req.blob_id, req.epoch, req.end_epoch
        self._check_epochs(epoch, end_epoch)
        if node.is_invalid(blob_id):
            raise ProtocolError("blob is marked invalid")
        cert = node.certs.get(blob_id)
        if cert is None:
            raise ProtocolError("this node holds no certificate for this blob: only certified blobs are extended")
        if node.ledger is not None and end_epoch > cert.end_epoch:
            # An extension pays for the added epochs; a renewal of the same end epoch pays nothing.
            raw = node.store.get_metadata(blob_id)
            if raw is None:
                raise ProtocolError("this node holds no metadata for this blob: nothing to confirm")
            meta = rs2.BlobMetadata.from_bytes(raw, max_shards=node.net.n_shards)
            await node.ledger.check_store_payment(req.payment, blob_id=blob_id, n_shards=node.net.n_shards,
                                                  epoch=epoch, end_epoch=end_epoch,
                                                  unencoded_length=meta.unencoded_length,
                                                  extends_from=cert.end_epoch)
        mine = set(node.my_shards())
        held = [s for s in await trio.to_thread.run_sync(node.held_pairs, blob_id) if s in mine]
        if not held:
            # Never a signature over zero shards: it would still count as a signer for a
            # certificate of a blob this node does not hold (issue 13).
            raise ProtocolError("this node holds no shard of this blob: nothing to confirm")
        conf = sign_confirmation(node.keypair, node.peer_id, node.net.name, blob_id, epoch, end_epoch, held,
                                 deletable=cert.deletable, owner=cert.owner)
        await rpc.send_json(stream, wire.ConfirmReply(True, None, conf).to_json())

    async def get_metadata(self, stream, peer: str) -> None:
        node = self.node
        blob_id = wire.GetMetadataRequest.from_json(await rpc.recv_json(stream), n_shards=node.net.n_shards).blob_id
        if node.is_invalid(blob_id):
            await rpc.send_json(stream, wire.INVALID_REPLY.to_json())
            return
        data = node.store.get_metadata(blob_id)
        await _send_blob(stream, data)

    async def get_sliver(self, stream, peer: str) -> None:
        node = self.node
        req = wire.GetSliverRequest.from_json(await rpc.recv_json(stream), n_shards=node.net.n_shards)
        blob_id, pair, kind = req.blob_id, req.pair, req.kind
        if node.is_invalid(blob_id):
            await rpc.send_json(stream, wire.INVALID_REPLY.to_json())
            return
        shard = rs2.shard_for_pair(pair, blob_id, node.net.n_shards)
        data = await trio.to_thread.run_sync(node.store.get_sliver, blob_id, shard, kind)
        if data is not None and "corrupt_slivers" in node.faults:
            data = bytes(b ^ 0x5A for b in data[:64]) + data[64:]
        await _send_blob(stream, data)

    async def recovery(self, stream, peer: str) -> None:
        node = self.node
        n = node.net.n_shards
        req = wire.RecoveryRequest.from_json(await rpc.recv_json(stream), n_shards=n)
        blob_id, pair, axis, targets = req.blob_id, req.pair, req.axis, list(req.targets)
        if node.is_invalid(blob_id):
            await rpc.send_json(stream, wire.INVALID_REPLY.to_json())
            return
        raw_meta = node.store.get_metadata(blob_id)
        shard = rs2.shard_for_pair(pair, blob_id, n)
        kind = PRIMARY if axis == rs2.PRIMARY else SECONDARY
        sliver = await trio.to_thread.run_sync(node.store.get_sliver, blob_id, shard, kind)
        if raw_meta is None or sliver is None:
            await rpc.send_json(stream, wire.RecoveryReply.failed("not found").to_json())
            return
        meta = rs2.BlobMetadata.from_bytes(raw_meta)
        source = pair if axis == rs2.PRIMARY else n - 1 - pair
        symbols = await trio.to_thread.run_sync(
            rs2.recovery_symbols, axis, source, sliver, targets, meta.config, meta.symbol_size
        )
        await rpc.send_json(stream, wire.RecoveryReply(True, None, len(symbols)).to_json())
        await rpc.write_frame(stream, b"".join(sym.to_bytes() for sym in symbols))

    async def status(self, stream, peer: str) -> None:
        node = self.node
        blob_id = wire.BlobStatusRequest.from_json(await rpc.recv_json(stream), n_shards=node.net.n_shards).blob_id
        state = node.store.get_state(blob_id)

        def verified_pairs() -> list[int]:
            # Read both slivers: the store's checksums catch anything that rotted on disk.
            out = []
            for shard in node.held_pairs(blob_id):
                if all(node.store.get_sliver(blob_id, shard, k) is not None for k in (PRIMARY, SECONDARY)):
                    out.append(shard)
            return out

        shards = await trio.to_thread.run_sync(verified_pairs)
        await rpc.send_json(stream, wire.BlobStatusReply(
            True, None, tuple(shards), certified=blob_id in node.certs, invalid=bool(state.get("invalid")),
            end_epoch=state.get("end_epoch"),
        ).to_json())

    async def get_cert(self, stream, peer: str) -> None:
        node = self.node
        blob_id = wire.GetCertRequest.from_json(await rpc.recv_json(stream), n_shards=node.net.n_shards).blob_id
        cert = node.certs.get(blob_id)
        if cert is None:
            await rpc.send_json(stream, wire.BlobReply.not_found(invalid=node.is_invalid(blob_id)).to_json())
            return
        await rpc.send_json(stream, wire.BlobReply(True, None, node.is_invalid(blob_id)).to_json())
        await rpc.write_frame(stream, cert.to_bytes())

    async def put_cert(self, stream, peer: str) -> None:
        node = self.node
        raw = await rpc.recv_blob(stream, MAX_CERT_BYTES)
        try:
            cert = AvailabilityCertificate.from_bytes(raw)
            new = await node.accept_certificate(cert, source=peer)
        except InvalidCertificateError as exc:
            node.counters["certs_rejected"] += 1
            raise ProtocolError(exc.reason) from None
        await rpc.send_json(stream, wire.NewReply(True, None, new).to_json())
        if new:
            await node.certificates.gossip_pushed(cert, raw)

    async def list_certs(self, stream, peer: str) -> None:
        node = self.node
        wire.ListCertsRequest.from_json(await rpc.recv_json(stream))
        items = [wire.CertListing(b, c.end_epoch, c.epoch)  # (epoch: renewals)
                 for b, c in itertools.islice(node.certs.items(), wire.MAX_CERTS_LISTED)]
        invalid = list(itertools.islice(node.proofs, wire.MAX_PROOFS_LISTED))
        await rpc.send_json(stream, wire.ListCertsReply(True, None, tuple(items), tuple(invalid)).to_json())

    async def get_proof(self, stream, peer: str) -> None:
        node = self.node
        blob_id = wire.GetProofRequest.from_json(await rpc.recv_json(stream), n_shards=node.net.n_shards).blob_id
        data = node.proofs.get(blob_id)
        await _send_blob(stream, data)

    async def list_blobs(self, stream, peer: str) -> None:
        node = self.node
        wire.ListBlobsRequest.from_json(await rpc.recv_json(stream))

        def listing() -> tuple[wire.BlobListing, ...]:
            out = []
            for blob_id in node.store.list_blobs()[:wire.MAX_BLOBS_LISTED]:
                state = node.store.get_state(blob_id)
                out.append(wire.BlobListing(blob_id, tuple(node.held_pairs(blob_id)), state.get("end_epoch"),
                                           blob_id in node.certs, bool(state.get("invalid"))))
            return tuple(out)

        await rpc.send_json(stream, wire.ListBlobsReply(True, None, await trio.to_thread.run_sync(listing)).to_json())

    async def info(self, stream, peer: str) -> None:
        node = self.node
        wire.NodeInfoRequest.from_json(await rpc.recv_json(stream))
        await rpc.send_json(stream, wire.NodeInfoReply(True, None, node.status()).to_json())


def _labels(deletable: bool, owner: str):
    """A store request's labels, shaped as a certificate for `relabel_reason`."""
    from types import SimpleNamespace

    return SimpleNamespace(deletable=deletable, owner=owner)


async def _send_blob(stream, data: bytes | None) -> None:
    """A BlobReply (found or not) then, if found, the bytes in one frame."""
    await rpc.send_json(stream, (wire.BlobReply() if data is not None else wire.BlobReply.not_found()).to_json())
    if data is not None:
        await rpc.write_frame(stream, data)
