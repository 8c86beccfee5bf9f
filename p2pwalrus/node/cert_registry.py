"""The availability certificates a node holds: accepted, stored, gossiped, pulled.

A certificate is accepted only once checked against this node's own shard maps
(certcheck.py); the cheap refusals come first (one held already, a relabel, a blob its
owner deleted, an older one). Certificates are written in a worker thread, one at a time,
so that the one on disk is always the one in ``certs``. Anti-entropy: when liveness beats
show a peer's certificate digest differs from ours, we pull its list and fetch what we lack,
bounded per pull, backing off blobs whose certificate a peer failed to give.

A certificate pushed to us by the client that stored the blob is gossiped only after a
random pause, and not at all if a copy arrived by gossip meanwhile: the client pushes to
every live node, so gossip is for the nodes it missed, and one node's message reaches them.
Gossiped at once by every node it reached, each store set off as many messages as nodes, each
relayed to every node and checked there, on the CPU the store's other pushes waited for
(10 nodes, 16 MiB: the client's certificate push took 0.14-0.25 s, 0.04-0.10 s without them).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import random
import time

import trio

from ..core import messages as wire
from ..core import protocols
from ..core.blob_id import blob_id_to_str as rs2_id
from ..core.certificates import (
    MAX_CERT_BYTES,
    AvailabilityCertificate,
    InvalidCertificateError,
    covered_in_view,
    relabel_reason,
)
from ..errors import ProtocolError, StorageError
from ..p2p import rpc
from ..p2p.log_once import LogOnce
from .bounded import Backoff

logger = logging.getLogger("p2pwalrus.node")
_log_once = LogOnce(logger)

LEARN_PAUSE = 2.0  # pulls of the live set for certificates with unknown signers, at most this often
LEARN_TIMEOUT = 10.0
# Anti-entropy from one peer, per pull: the rest waits for the next pull.
PULL_DEADLINE = 60.0
PULL_CERTS = 256
# A pushed certificate is gossiped after a pause drawn from this range (seconds), unless a copy
# arrives by gossip first; at most PENDING_GOSSIP_MAX wait at once (beyond: gossiped at once).
PUSHED_GOSSIP_DELAY = (1.0, 3.0)
PENDING_GOSSIP_MAX = 1024


class CertificateRegistry:
    """The certificates of one node (``certs``: blob ID -> certificate)."""

    def __init__(self, node):
        self.node = node  # the StorageNode: its store, shard map, members and peer calls
        self.certs: dict[bytes, AvailabilityCertificate] = {}
        self.backoff = Backoff()  # blobs whose certificate (or proof) a peer listed but failed to give
        self.added = trio.Event()  # set (and replaced) whenever a certificate is accepted
        self._write_lock = trio.Lock()
        self._digest: tuple[bytes, float] | None = None
        self._learnt_at = -LEARN_PAUSE
        self._learning: trio.Event | None = None  # set when the pull for unknown signers ends
        # Pushed certificates waiting for their gossip: blob ID -> (raw, due, heard by gossip)
        self._pending_gossip: dict[bytes, list] = {}
        self._gossip_due = trio.Event()

    def load(self) -> None:
        store = self.node.store
        for blob_id in store.list_blobs():
            raw = store.get_certificate(blob_id)
            if raw:
                try:
                    self.certs[blob_id] = AvailabilityCertificate.from_bytes(raw)
                except ProtocolError:
                    logger.warning("stored certificate of %s unreadable; will pull it again", rs2_id(blob_id))

    def digest(self) -> bytes:
        """16 bytes naming our certificate set (blob IDs, end epochs) and invalid blobs, for the
        beats of liveness.py. Recomputed at most once a second: beats are seconds apart."""
        now = time.monotonic()
        cached = self._digest
        if cached is not None and now - cached[1] < 1.0:
            return cached[0]
        h = hashlib.blake2b(digest_size=16)
        for blob_id in sorted(self.certs):
            cert = self.certs[blob_id]
            h.update(blob_id + cert.end_epoch.to_bytes(8, "little") + cert.epoch.to_bytes(8, "little"))
        h.update(b"invalid")
        for blob_id in sorted(self.node.proofs):
            h.update(blob_id)
        self._digest = (h.digest(), now)
        return self._digest[0]

    async def accept(self, cert: AvailabilityCertificate, *, source: str) -> bool:
        """Validate and keep a certificate; True if it is new or extends one we had."""
        node = self.node
        old = self.certs.get(cert.blob_id)
        if old is not None and old == cert:
            return False  # a copy of the one we hold: nothing to check
        if old is not None and (why := relabel_reason(old, cert)):
            raise InvalidCertificateError(f"refused: {why}")
        if node.store.get_state(cert.blob_id).get("deleted"):
            # Deleted by its owner: a late certificate must not bring it back (a new upload
            # of its slivers clears the mark, see handle_store).
            raise InvalidCertificateError("the blob was deleted here by its owner")
        if old is not None and freshness(old) > freshness(cert):
            return False  # older than the one we hold: nothing to check
        await self.learn_signers(cert)
        await node.certcheck.check(cert)
        async with self._write_lock:
            old = self.certs.get(cert.blob_id)  # another copy may have been accepted meanwhile
            if old is not None and freshness(old) > freshness(cert):
                return False
            if old is not None and freshness(old) == freshness(cert) and not self._counts_more(cert, old):
                return False  # as recent, and our map counts no more of it: keep ours
            if old is not None and (why := relabel_reason(old, cert)):
                raise InvalidCertificateError(f"refused: {why}")
            self.certs[cert.blob_id] = cert

            def certified(state: dict) -> dict:
                return {"certified": True, "certified_epoch": cert.epoch,
                        "end_epoch": max(cert.end_epoch, state.get("end_epoch", 0))}

            # Certificate and state in one group commit, in a worker thread: a store's client
            # waits for the holders of n - f shards to have it.
            await trio.to_thread.run_sync(
                functools.partial(node.store.put_certificate, cert.blob_id, cert.to_bytes(), update_state=certified))
        node.counters["certs_seen"] += 1
        logger.debug("certificate for %s from %s", rs2_id(cert.blob_id), source)
        done, self.added = self.added, trio.Event()
        done.set()
        node.repair.trigger()
        return True

    def _counts_more(self, new: AvailabilityCertificate, old: AvailabilityCertificate) -> bool:
        """Whether our map counts more shards of `new` than of `old` (a renewal in the same
        epoch by today's holders, see recertify.py, replaces the certificate churn moved away)."""
        view = self.node.shard_map
        return view is not None and len(covered_in_view(new, view)) > len(covered_in_view(old, view))

    async def learn_signers(self, cert: AvailabilityCertificate) -> None:
        """A certificate signed by peers outside our view (nodes that joined, or that we have
        not heard of yet): pull the live set from our bootstrap peers once before judging it,
        at most every LEARN_PAUSE seconds. Only peers the network vouches for enter our view
        (and so our shard map): the certificate's own word is not taken."""
        node = self.node
        if node.members is None or not node.certcheck.signers_unknown(cert):
            return
        if self._learning is not None:  # a pull is under way: judge by what it brings
            await self._learning.wait()
            return
        now = time.monotonic()
        if now - self._learnt_at < LEARN_PAUSE:
            return
        self._learnt_at = now
        self._learning = trio.Event()
        try:
            with trio.move_on_after(LEARN_TIMEOUT):
                try:
                    await node.members.pull_from_bootstrap()
                except Exception as exc:
                    logger.info("membership pull for a certificate failed: %r", exc)
            node._recompute_map()
        finally:
            self._learning.set()
            self._learning = None

    async def gossip(self, raw: bytes) -> None:
        try:
            await self.node.node.pubsub.publish(protocols.certs_topic(self.node.net.name), raw)
            self.node.counters["certs_gossiped"] += 1
        except Exception as exc:
            logger.info("gossiping a certificate failed: %s", exc)

    async def gossip_pushed(self, cert: AvailabilityCertificate, raw: bytes) -> None:
        """Gossip a certificate a client pushed to us, after PUSHED_GOSSIP_DELAY unless a copy
        comes by gossip first (run_pushed_gossip sends it)."""
        if len(self._pending_gossip) >= PENDING_GOSSIP_MAX:
            await self.gossip(raw)
            return
        due = trio.current_time() + random.uniform(*PUSHED_GOSSIP_DELAY)
        self._pending_gossip.setdefault(cert.blob_id, [raw, due, False])
        self._gossip_due.set()

    def gossip_pending(self) -> int:
        """Pushed certificates whose gossip is still due."""
        return len(self._pending_gossip)

    async def run_pushed_gossip(self) -> None:
        """The node's task that sends the gossip of pushed certificates when it falls due."""
        while True:
            if not self._pending_gossip:
                await self._gossip_due.wait()
                self._gossip_due = trio.Event()
                continue
            blob_id, (raw, due, heard) = min(self._pending_gossip.items(), key=lambda kv: kv[1][1])
            if trio.current_time() < due:
                with trio.move_on_at(due):
                    await self._gossip_due.wait()  # an earlier one may have been added
                    self._gossip_due = trio.Event()
                continue
            del self._pending_gossip[blob_id]
            if heard:
                self.node.counters["certs_gossip_suppressed"] += 1
            else:
                await self.gossip(raw)

    async def validator(self, forwarder, msg) -> bool:
        """GossipSub validator of the certificates topic: relayed only once accepted here."""
        node = self.node
        if node.fault_injection.denied_message(forwarder, msg):
            return False
        try:
            cert = AvailabilityCertificate.from_bytes(msg.data)
            await self.accept(cert, source=str(forwarder))
            pending = self._pending_gossip.get(cert.blob_id)
            if pending is not None and pending[0] == msg.data:
                pending[2] = True  # another node gossiped it: ours would only repeat it
            return True
        except InvalidCertificateError as exc:
            node.counters["certs_rejected"] += 1
            _log_once(f"cert:{forwarder}", logging.WARNING, "gossiped certificate from %s rejected: %s",
                      forwarder, exc.reason)
            return False
        except StorageError as exc:
            logger.error("cannot store a certificate: %s", exc)
            return True

    async def pull_from(self, peer_id: str) -> int:
        """Anti-entropy: fetch the proofs and certificates a peer lists that we lack.

        Bounded per pull (PULL_DEADLINE overall, at most PULL_CERTS certificates and the
        proofs' own bounds: the rest come with the next pull, which the beats' digests still
        ask for), and a blob whose certificate or proof failed (refused, or not given) is
        backed off, so that a peer listing 20,000 forged ones costs little each time."""
        node = self.node
        got = 0
        with trio.move_on_after(PULL_DEADLINE):
            stream, reply = await node.call(peer_id, protocols.LIST_CERTS, wire.ListCertsRequest())
            await rpc.close_quietly(stream)
            if not reply.ok:
                raise ProtocolError(f"certificate list refused: {reply.error}")
            await node.invalid.pull_from(peer_id, reply.invalid, self.backoff)
            got = await self._pull_certs(peer_id, reply.certs)
        return got

    async def _pull_certs(self, peer_id: str, listed: tuple[wire.CertListing, ...]) -> int:
        from .recertify import renew, shows_an_honest_signer

        node = self.node
        got = fetched = renewed = 0
        current = node.epoch
        now = time.monotonic()
        for item in listed:  # (checked at parsing: blob IDs, epochs, at most MAX_CERTS_LISTED)
            if fetched >= PULL_CERTS:
                break
            blob_id, end_epoch, epoch = item.blob_id, item.end_epoch, item.epoch
            have = self.certs.get(blob_id)
            if (end_epoch <= current or (have and freshness(have) >= (end_epoch, epoch))
                    or not self.backoff.ready(blob_id, now)):
                continue
            fetched += 1
            try:
                raw = await node.fetch_blob(peer_id, protocols.GET_CERT, wire.GetCertRequest(blob_id), MAX_CERT_BYTES)
                if raw is None:
                    raise InvalidCertificateError("listed, then not given")
                cert = AvailabilityCertificate.from_bytes(raw)
                if cert.blob_id != blob_id:
                    raise InvalidCertificateError("a certificate of another blob")
                try:
                    if await self.accept(cert, source=peer_id):
                        got += 1
                except InvalidCertificateError as exc:
                    # Churn moved its shards away from its signers: today's holders may sign it
                    # again, if honest holders signed it (recertify.py). A few per pull.
                    if ("in this node's view" not in exc.reason or renewed >= 2
                            or not await shows_an_honest_signer(node, cert)):
                        raise
                    renewed += 1
                    if not await renew(node, cert, source=peer_id):
                        raise
                    got += 1
                self.backoff.succeeded(blob_id)
            except (InvalidCertificateError, ProtocolError, trio.TooSlowError) as exc:
                wait = self.backoff.failed(blob_id, time.monotonic())
                logger.info("certificate of %s pulled from %s rejected: %s (not asked again for %.0f s)",
                            rs2_id(blob_id), peer_id, getattr(exc, "reason", exc), wait)
        return got

    async def certified_elsewhere(self, blob_id: bytes) -> bool:
        """Whether a few live peers hold a certificate for the blob that we accept (one we
        missed: gossip and anti-entropy normally bring it first)."""
        node = self.node
        peers = [p for p in node.members.live.peer_ids() if p != node.peer_id] if node.members else []
        for peer in random.sample(peers, min(3, len(peers))):
            try:
                raw = await node.fetch_blob(peer, protocols.GET_CERT, wire.GetCertRequest(blob_id), MAX_CERT_BYTES)
                if raw is not None:
                    await self.accept(AvailabilityCertificate.from_bytes(raw), source=peer)
            except Exception as exc:
                logger.debug("certificate of %s from %s: %r", rs2_id(blob_id), peer, exc)
            if blob_id in self.certs:
                return True
        return False


def freshness(cert: AvailabilityCertificate) -> tuple[int, int]:
    """Which of two certificates of a blob a node keeps: the later end epoch, then the later
    certified epoch (a renewal by today's holders, see recertify.py)."""
    return cert.end_epoch, cert.epoch
