"""Certificates as a client sees them: found on nodes and checked against its own views,
pushed to nodes until every reader finds them, and inconsistency proofs behind any claim
that a blob is invalid."""

from __future__ import annotations

import logging
import random

import trio

from ..core import messages as wire
from ..core import protocols, rs2
from ..core.blob_id import blob_id_to_str
from ..core.certificates import (
    MAX_CERT_BYTES,
    AvailabilityCertificate,
    InvalidCertificateError,
    one_honest,
    quorum,
    validate_certificate,
)
from ..core.placement import compute_shard_map
from ..errors import BlobNotFoundError, NotEnoughShardsError, ProtocolError
from ..p2p import rpc
from ..p2p.framing import write_frame
from .calls import CALL_TIMEOUT
from .common import BlobExpiredError, BlobInvalidError

logger = logging.getLogger("p2pwalrus.client")

QUORUM_GRACE = 2.0  # after the quorum, late uploads get this long before they are cut
CERT_PUSH_PAUSE = 1.0  # nodes that refused a certificate (they do not know a signer yet) get it again
CERT_PUSH_TIMEOUT = 20.0  # ... until this long after the first push


class Certificates:
    """Finding, checking and publishing certificates (part of `Client`)."""

    def _validate(self, cert: AvailabilityCertificate, need: int | None = None) -> None:
        views = (self.epochs.views(cert.epoch) if self.epochs is not None
                 else [self.shard_map, *self.other_views, *self.past_views])
        validate_certificate(cert, network=self.net.name, n_shards=self.net.n_shards,
                             views=views, current_epoch=self.net.current_epoch(),
                             max_epochs_ahead=self.net.max_epochs_ahead, need=need)

    async def proven_invalid(self, blob_id: bytes, peer: str) -> bool:
        """True if `peer`, which says the blob is invalid, serves an inconsistency proof for it
        that verifies (GET_PROOF, checked in a worker thread). A bare claim is not believed:
        any node could make a good blob unreadable with one. Proven blobs are remembered."""
        if blob_id in self._proven_invalid:
            return True
        if (blob_id, peer) in self._unproven:
            return False
        try:
            reply, message = await self.request_with_blob(peer, wire.GetProofRequest(blob_id),
                                                       rs2.MAX_PROOF_MESSAGE)
            if message is None:
                raise ProtocolError(f"no proof: {reply.error}")
            await trio.to_thread.run_sync(rs2.check_proof_message, message, self.net.n_shards, blob_id)
        except Exception as exc:
            logger.warning("%s says blob %s is invalid but gave no valid inconsistency proof (%s): claim ignored",
                           peer, blob_id_to_str(blob_id), exc)
            if len(self._unproven) < 10_000:
                self._unproven.add((blob_id, peer))
            return False
        self._proven_invalid.add(blob_id)
        return True

    async def find_certificate(self, blob_id: bytes, *, fanout: int = 5,
                               need: int | None = None) -> tuple[AvailabilityCertificate | None, bool]:
        """The best valid certificate that nodes have, and whether any says the blob is invalid.

        Asks `fanout` random live nodes at a time until one has a valid certificate. `need`:
        shards its signers must hold in our view (default n - f; see `certified`).
        """
        peers = self.live_peers()
        random.shuffle(peers)
        invalid = False
        best = None

        async def ask(peer):
            return await self.request_with_blob(peer, wire.GetCertRequest(blob_id), MAX_CERT_BYTES)

        unknown_signers: list[AvailabilityCertificate] = []  # refused only for signers not known here
        for start in range(0, len(peers), fanout):
            results = await self.gather(peers[start:start + fanout], ask)
            for peer, res in results.items():
                if isinstance(res, Exception):
                    continue
                reply, raw = res
                if reply.invalid and not invalid:
                    invalid = await self.proven_invalid(blob_id, peer)
                if raw is None:
                    continue
                try:
                    cert = AvailabilityCertificate.from_bytes(raw)
                    await trio.to_thread.run_sync(self._validate, cert, need)  # signatures: off the loop (gateway)
                except InvalidCertificateError as exc:
                    if "in this node's view" in exc.reason and len(unknown_signers) < 3:
                        unknown_signers.append(cert)
                    logger.warning("certificate from %s rejected: %s", peer, exc.reason)
                    continue
                if cert.blob_id == blob_id and (best is None or cert.end_epoch > best.end_epoch):
                    best = cert
            if best is not None or invalid:
                break
        if best is None and not invalid and unknown_signers and await self.learn_members():
            # Our bootstrap peer had not learnt of some confirming peers yet; the others may have.
            for cert in unknown_signers:
                try:
                    await trio.to_thread.run_sync(self._validate, cert, need)
                except InvalidCertificateError:
                    continue
                if cert.blob_id == blob_id and (best is None or cert.end_epoch > best.end_epoch):
                    best = cert
        return best, invalid

    async def _push_certificate(self, raw: bytes, peers, *, enough=None) -> set[str]:
        """PUT_CERT to each peer in parallel; the peers that answered ok (they hold it now).

        With `enough(accepted)`, the pushes still running QUORUM_GRACE seconds after it
        first says True are cut (a dead node in the live set would hold us for CALL_TIMEOUT;
        gossip and anti-entropy reach it later)."""
        accepted: set[str] = set()
        reached = trio.Event()

        # PUT_CERT takes the certificate as its only frame (no JSON header).
        async def put_raw(peer):
            try:
                with trio.fail_after(CALL_TIMEOUT):
                    stream = await self.new_stream(peer, protocols.PUT_CERT)
                    try:
                        await write_frame(stream, raw)
                        reply = wire.NewReply.from_json(await rpc.recv_json(stream), n_shards=self.net.n_shards)
                    finally:
                        await rpc.close_quietly(stream)
            except Exception as exc:
                logger.info("certificate push to %s failed: %r", peer, exc)
                return
            if reply.ok:
                accepted.add(peer)
                if enough is not None and enough(accepted):
                    reached.set()
            else:
                logger.info("%s refused the certificate: %s", peer, reply.error)

        limiter = trio.CapacityLimiter(16)

        async def limited(peer):
            async with limiter:
                await put_raw(peer)

        async with trio.open_nursery() as nursery:
            async def cut_after_grace():
                await reached.wait()
                await trio.sleep(QUORUM_GRACE)
                nursery.cancel_scope.cancel()

            async def pushes():
                async with trio.open_nursery() as inner:
                    for p in peers:
                        inner.start_soon(limited, p)
                nursery.cancel_scope.cancel()

            nursery.start_soon(cut_after_grace)
            nursery.start_soon(pushes)
        return accepted

    async def publish_certificate(self, cert: AvailabilityCertificate) -> set[str]:
        """Push the certificate to every live node; return once it is held where any reader finds it.

        The rule, matched to `find_certificate` (which a reader's `certified()` uses): a reader
        asks every node of its live set, a few at a time, until one serves a valid certificate.
        So the certificate must be held by nodes that a reader still reaches whenever the blob
        can be read at all. We wait until the nodes that accepted it own at least n - f shards
        of the certificate's shard map: with at most f shards' holders faulty or unreachable
        (the fault bound under which the blob is certified and readable), at least
        n - 2f >= 1 of the shards' holders that hold the certificate answer every reader.
        In practice every live node is pushed to and nearly all accept at once.

        A node may refuse a certificate for a while: one that does not know most confirming
        peers yet (a member it has not learnt of) says "only K of M confirming peers are known
        here" (it then pulls the live set from its bootstrap peers, see the node's
        handle_put_cert). Those are pushed to again every CERT_PUSH_PAUSE seconds, up to
        CERT_PUSH_TIMEOUT; short of the rule by then, the store fails (NotEnoughShardsError),
        although the nodes that hold it will gossip it on.
        """
        raw = cert.to_bytes()
        smap = self.shard_map if self.epochs is not None else compute_shard_map(cert.members, cert.n_shards)
        need = quorum(cert.n_shards)

        def shards_held(peers) -> int:
            return sum(len(smap.shards_of(p)) for p in peers if p in smap.nodes)

        held: set[str] = set()
        deadline = trio.current_time() + CERT_PUSH_TIMEOUT
        targets = self.live_peers()
        while True:
            held |= await self._push_certificate(raw, targets, enough=lambda acc: shards_held(held | acc) >= need)
            if shards_held(held) >= need:
                return held
            if trio.current_time() >= deadline:
                raise NotEnoughShardsError(
                    f"the certificate is held by the holders of only {shards_held(held)} of {cert.n_shards} "
                    f"shards ({need} needed for every reader to find it); it may still spread by gossip"
                )
            await trio.sleep(CERT_PUSH_PAUSE)
            # The members that did not take it yet (the live set may have changed meanwhile).
            targets = [p for p in smap.nodes if p not in held]

    async def certified(self, blob_id: bytes) -> AvailabilityCertificate:
        """The certificate a read relies on. A reader asks only that honest holders signed
        (f + 1 shards in its view): the slivers it reads are checked against the blob ID
        whatever the certificate says, and after churn a certificate covers fewer than n - f
        shards of today's map until today's holders renew it (node/recertify.py)."""
        if self.shard_map is None:
            await self.refresh_membership()
        cert, invalid = await self.find_certificate(blob_id, need=one_honest(self.net.n_shards))
        if invalid:
            raise BlobInvalidError(f"blob {blob_id_to_str(blob_id)} is invalid: it was encoded inconsistently")
        if cert is None:
            raise BlobNotFoundError(f"blob {blob_id_to_str(blob_id)} is not certified on network {self.net.name!r} (not found)")
        if cert.end_epoch <= self.net.current_epoch():
            raise BlobExpiredError(f"blob {blob_id_to_str(blob_id)} expired at epoch {cert.end_epoch}")
        return cert
