"""The storage node: identity, host, membership, shard map, sliver store and stream protocols.

`StorageNode.run` is the whole node as one trio task; every background task lives in its
nursery. Handlers validate and bound every message before storing or answering.
"""

from __future__ import annotations

import hashlib
import json
import functools
import itertools
import logging
import os
import random
import signal
import time
from pathlib import Path

import trio

import p2pwalrus
from ..config import NetworkConfig
from ..core import rs2
from ..core.certificates import (
    AvailabilityCertificate,
    InvalidCertificateError,
    relabel_reason,
    sign_confirmation,
)
from ..core.placement import ShardMap, compute_shard_map
from ..core.rs2 import decode_proof_message, encode_proof_message  # noqa: F401  (here before core had them)
from ..core.records import SignedNodeRecord
from ..errors import CapacityExceededError, ProtocolError, StorageError
from ..p2p import rpc
from .certcheck import CertChecker
from ..p2p.log_once import LogOnce
from ..p2p.host import open_host
from .datadir_lock import lock_data_dir
from ..p2p.identity import load_or_create_identity
from .liveness import Liveness, LivenessConfig
from .membership import MembershipConfig, open_membership
from .sliver_store import PRIMARY, SECONDARY, SliverStore, SymbolLeaves
from ..core import messages as wire
from ..core import protocols

logger = logging.getLogger("p2pwalrus.node")
_log_once = LogOnce(logger)  # what peers send wrong: one line each, floods summarised

FAULTS_POLL = 2.0  # s; netlab's faults.json is looked at this often (a wake-up per node and period)
HANDLER_TIMEOUT = 60.0  # one whole exchange, including a node's share of a large blob
LEARN_PAUSE = 2.0  # pulls of the live set for certificates with unknown signers, at most this often
PEER_CALL_TIMEOUT = 10.0
MAX_PAID_HEADER = 256 << 10  # a store or extension header with its payment certificate (votes of up to 1000 nodes)
# Anti-entropy from one peer, per pull: the rest waits for the next pull.
PULL_DEADLINE = 60.0
PULL_CERTS = 256
PULL_PROOFS = 16
PULL_PROOF_BYTES = 64 << 20


def _write_status_file(path: Path, obj) -> None:
    """Replace ``path`` atomically (readers never see half a file). Not fsynced: node.json is
    a view for netlab and operators, rewritten at every change and every start, and an fsync
    per membership change on the event loop held up every node of an in-process testnet."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        json.dump(obj, fh)
    os.replace(tmp, path)


class StorageNode:
    def __init__(
        self,
        net: NetworkConfig,
        data_dir: Path,
        listen: list[str] | None = None,
        capacity: int | None = None,
    ):
        self.net = net
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # One node process per data dir, held until close(): see datadir_lock.py.
        self.data_dir_lock = lock_data_dir(self.data_dir)
        try:
            self._open(listen, capacity)
        except BaseException:
            self.data_dir_lock.release()
            raise

    def _open(self, listen: list[str] | None, capacity: int | None) -> None:
        self.listen = listen or ["/ip4/127.0.0.1/tcp/0"]
        self.capacity = capacity
        self.keypair = load_or_create_identity(self.data_dir)
        from ..p2p.identity import peer_id_of

        self.peer_id = str(peer_id_of(self.keypair))
        self.store = SliverStore(self.data_dir / "store", capacity)
        self.shard_map: ShardMap | None = None
        self.prev_shard_map: ShardMap | None = None  # for shard sync from the previous holder
        self.map_changed_at = 0.0
        self.certcheck = CertChecker(self.net)  # certificates judged by our own shard maps
        from .bounded import DeleteNonces

        self.delete_nonces = DeleteNonces(self.data_dir / "delete-nonces.json")
        self.certs: dict[bytes, AvailabilityCertificate] = {}
        from .bounded import Backoff, ProofStore

        self.proofs = ProofStore()  # inconsistency proof messages we checked, bounded, expiring
        self.cert_backoff = Backoff()  # blobs whose certificate a peer listed but failed to give
        self.renew_backoff = Backoff(base=10.0, cap=600.0)  # certificates renewal failed for (recertify.py)
        self.node = None
        self.members = None
        self.ready = trio.Event()
        self.map_changed = trio.Event()
        self.cert_added = trio.Event()
        # Certificates are written in a worker thread: one at a time, so that the one on disk
        # is always the one in self.certs (accept_certificate).
        self._cert_write_lock = trio.Lock()
        self.counters = {"certs_seen": 0, "certs_rejected": 0, "slivers_refused": 0, "store_requests": 0,
                         "uncertified_deleted": 0}
        # Fault injection for netlab and tests: "corrupt_slivers" makes this node lie;
        # DATA_DIR/faults.json sets a peer deny-list (partitions) and an added delay.
        self.faults: set[str] = set()
        self.deny: set[str] = set()
        self.delay = 0.0
        self.peer_limits = rpc.PeerLimits()  # per-peer caps on open streams and buffered bytes
        self.extra_services = []  # callables(node, nursery) started with the node (metrics, ...)
        self.host_overrides: dict = {}  # HostTimings fields, e.g. fewer connections in-process
        from .repair import RepairService

        self.repair = RepairService(self)
        # A network with a genesis runs one agreement per epoch (epoch_service.py); the decided
        # state says who holds which shard and weighs the ledger's votes. Loaded before the ledger:
        # the ledger's certificates on disk are checked against the committees of their epochs.
        self.epochs = None
        if self.net.genesis is not None:
            from .epoch_service import attach_epochs_from_network

            attach_epochs_from_network(self)  # -> use_epochs
        from .ledger_service import LedgerService

        self.ledger = LedgerService.open(self)  # the WAL ledger; None on a network without a genesis
        self.votes = None  # this node's governance vote and the committee's (issue 16)
        if self.ledger is not None:
            self.extra_services.append(self.ledger.start)
            from .vote_service import VoteService

            self.votes = VoteService(self)
            self.extra_services.append(self.votes.start)
            self.epochs.propose = self.ledger.propose_next
            self.epochs.check_value = self.ledger.check_proposal
        self.liveness = None
        self._certs_digest: tuple[bytes, float] | None = None
        self._learnt_at = -LEARN_PAUSE
        self._learning: trio.Event | None = None  # set when the pull for unknown signers ends
        self._load_certs()

    def close(self) -> None:
        """Close the store and release the data dir (idempotent). Call it once the node's
        task has ended, however it ended (a cancelled in-process node included)."""
        try:
            self.store.close()
        finally:
            self.data_dir_lock.release()

    # --- state ------------------------------------------------------------------

    def _load_certs(self) -> None:
        for blob_id in self.store.list_blobs():
            raw = self.store.get_certificate(blob_id)
            if raw:
                try:
                    self.certs[blob_id] = AvailabilityCertificate.from_bytes(raw)
                except ProtocolError:
                    logger.warning("stored certificate of %s unreadable; will pull it again", rs2_id(blob_id))

    @property
    def epoch(self) -> int:
        return self.net.current_epoch()

    def my_shards(self) -> tuple[int, ...]:
        return self.shard_map.shards_of(self.peer_id) if self.shard_map else ()

    def is_invalid(self, blob_id: bytes) -> bool:
        return blob_id in self.proofs or bool(self.store.get_state(blob_id).get("invalid"))

    def certs_digest(self) -> bytes:
        """16 bytes naming our certificate set (blob IDs, end epochs) and invalid blobs, for the
        beats of liveness.py. Recomputed at most once a second: beats are seconds apart."""
        now = time.monotonic()
        cached = self._certs_digest
        if cached is not None and now - cached[1] < 1.0:
            return cached[0]
        h = hashlib.blake2b(digest_size=16)
        for blob_id in sorted(self.certs):
            cert = self.certs[blob_id]
            h.update(blob_id + cert.end_epoch.to_bytes(8, "little") + cert.epoch.to_bytes(8, "little"))
        h.update(b"invalid")
        for blob_id in sorted(self.proofs):
            h.update(blob_id)
        self._certs_digest = (h.digest(), now)
        return self._certs_digest[0]

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
        self.cert_backoff = type(self.cert_backoff)()
        if self.liveness is not None:
            self.liveness.pull_again("certs")
        self.repair.trigger()
        self.write_status()

    def write_status(self) -> None:
        try:
            _write_status_file(self.data_dir / "node.json", self.status())
        except OSError as exc:
            logger.warning("cannot write node status file: %s", exc)

    def status(self) -> dict:
        live = sorted(self.members.live.peer_ids()) if self.members else []
        return {
            "peer_id": self.peer_id,
            "addrs": self.node.listen_addrs() if self.node else [],
            "pid": os.getpid(),
            "network": self.net.name,
            "epoch": self.epoch,
            "live": live,
            "map_digest": self.shard_map.digest().hex() if self.shard_map else "",
            "shards": list(self.my_shards()),
            "blobs": len(self.store.list_blobs()),
            "certified_blobs": len(self.certs),
            "bytes_used": self.store.bytes_used(),
            "version": p2pwalrus.__version__,
            "updated": time.time(),
            **self.counters,
            "faults": {"deny": len(self.deny), "delay_ms": int(self.delay * 1000)},
            "repair": dict(self.repair.stats),
            "challenges": {p: dict(c) for p, c in self.repair.challenges.items()},
            "ledger": self.ledger.status() if self.ledger is not None else None,
            "epochs": self._epochs_status(),
        }

    def _epochs_status(self) -> dict | None:
        if self.epochs is None:
            return None
        cur = self.epochs.current
        return {"decided_epoch": cur.epoch, "digest": cur.digest.hex(), "members": len(cur.committee),
                "stake": cur.stakes.get(self.peer_id, 0), "changes": self.epochs.changes[-20:]}

    async def accept_certificate(self, cert: AvailabilityCertificate, *, source: str) -> bool:
        """Validate and keep a certificate; True if it is new or extends one we had.

        Cheap refusals first (one we hold already, a relabel, a deleted blob); then the
        check against our own shard maps, in a worker thread (certcheck.py)."""
        old = self.certs.get(cert.blob_id)
        if old is not None and old == cert:
            return False  # a copy of the one we hold: nothing to check
        if old is not None and (why := relabel_reason(old, cert)):
            raise InvalidCertificateError(f"refused: {why}")
        if self.store.get_state(cert.blob_id).get("deleted"):
            # Deleted by its owner: a late certificate must not bring it back (a new upload
            # of its slivers clears the mark, see handle_store).
            raise InvalidCertificateError("the blob was deleted here by its owner")
        if old is not None and _freshness(old) > _freshness(cert):
            return False  # older than the one we hold: nothing to check
        await self.learn_signers(cert)
        await self.certcheck.check(cert)
        async with self._cert_write_lock:
            old = self.certs.get(cert.blob_id)  # another copy may have been accepted meanwhile
            if old is not None and _freshness(old) > _freshness(cert):
                return False
            if old is not None and _freshness(old) == _freshness(cert) and not self._counts_more(cert, old):
                return False  # as recent, and our map counts no more of it: keep ours
            if old is not None and (why := relabel_reason(old, cert)):
                raise InvalidCertificateError(f"refused: {why}")
            self.certs[cert.blob_id] = cert

            def certified(state: dict) -> dict:
                return {"certified": True, "certified_epoch": cert.epoch,
                        "end_epoch": max(cert.end_epoch, state.get("end_epoch", 0))}

            # Certificate and state in one group commit, in a worker thread: they were two
            # commits (four fsyncs) on the event loop, and a store's client waits for the
            # holders of n - f shards to have it.
            await trio.to_thread.run_sync(
                functools.partial(self.store.put_certificate, cert.blob_id, cert.to_bytes(), update_state=certified))
        self.counters["certs_seen"] += 1
        logger.debug("certificate for %s from %s", rs2_id(cert.blob_id), source)
        done, self.cert_added = self.cert_added, trio.Event()
        done.set()
        self.repair.trigger()
        return True

    def _counts_more(self, new: AvailabilityCertificate, old: AvailabilityCertificate) -> bool:
        """Whether our map counts more shards of `new` than of `old` (a renewal in the same
        epoch by today's holders, see recertify.py, replaces the certificate churn moved away)."""
        from ..core.certificates import covered_in_view

        view = self.shard_map
        return view is not None and len(covered_in_view(new, view)) > len(covered_in_view(old, view))

    # --- invalid blobs and deletion ------------------------------------------------------

    async def _apply_invalid(self, blob_id: bytes, message: bytes | None = None) -> bool:
        """Mark a blob invalid and drop its slivers; True if it was not marked yet.

        The checked proof message is kept (bounded, see bounded.ProofStore) until the blob's
        end epoch, so that nodes that missed it can pull it. A marker goes to disk only for a
        blob this node holds something of, with the blob's end epoch, so it expires with the
        blob: proofs for blob IDs nobody stored here cost memory that is bounded, never disk."""
        was = self.is_invalid(blob_id)
        cert = self.certs.get(blob_id)
        state = await trio.to_thread.run_sync(self.store.get_state, blob_id)
        end = cert.end_epoch if cert else state.get("end_epoch")
        expires = end if type(end) is int else self.epoch + 1
        if message is not None:
            self.proofs.add(blob_id, message, expires)
        if was and state.get("invalid"):
            return False
        if cert is not None or await trio.to_thread.run_sync(self.store.has_blob, blob_id):
            def persist():
                self.store.set_state(blob_id, {"invalid": True, "end_epoch": expires})
                for shard in list(self.store.shards_stored(blob_id)):
                    self.store.delete_sliver(blob_id, shard)

            await trio.to_thread.run_sync(persist)
        if not was:
            logger.warning("blob %s is invalid (inconsistency proof checked): no longer served", rs2_id(blob_id))
        return not was

    async def mark_invalid(self, blob_id: bytes, meta: rs2.BlobMetadata, proof: rs2.InconsistencyProof) -> None:
        """We found the blob inconsistent: mark it and tell every node, with the proof."""
        if not await trio.to_thread.run_sync(rs2.verify_inconsistency_proof, meta, proof):
            logger.error("own inconsistency proof for %s does not verify", rs2_id(blob_id))
            return
        self.repair.stats["inconsistent_blobs"] += 1
        message = encode_proof_message(blob_id, meta, proof)
        await self._apply_invalid(blob_id, message)
        if len(message) < 900_000:
            try:

                await self.node.pubsub.publish(protocols.proofs_topic(self.net.name), message)
            except Exception as exc:
                logger.info("gossiping an inconsistency proof failed: %s", exc)

        async def push(peer):
            with trio.fail_after(PEER_CALL_TIMEOUT):
                from libp2p.peer.id import ID

                stream = await self.node.open_stream(ID.from_base58(peer), [protocols.PUT_PROOF])
                try:
                    await rpc.write_frame(stream, message)
                    await rpc.recv_json(stream)
                finally:
                    await rpc.close_quietly(stream)

        async with trio.open_nursery() as nursery:
            for peer in self.members.live.peer_ids():
                if peer != self.peer_id:
                    nursery.start_soon(_quietly, push, peer)

    def check_proof_message(self, message: bytes) -> bytes:
        """Verify an inconsistency proof message; return the blob ID it proves invalid."""
        return rs2.check_proof_message(message, self.net.n_shards)

    async def handle_put_proof(self, stream, peer: str) -> None:
        message = await rpc.recv_blob(stream, MAX_PROOF_MESSAGE)
        blob_id = await trio.to_thread.run_sync(self.check_proof_message, message)
        new = await self._apply_invalid(blob_id, message)
        await rpc.send_json(stream, wire.NewReply(True, None, new).to_json())

    async def _proof_validator(self, forwarder, msg) -> bool:
        if self._denied_message(forwarder, msg):
            return False
        try:  # a proof's check re-encodes symbols: a worker thread, not the event loop
            blob_id = await trio.to_thread.run_sync(self.check_proof_message, bytes(msg.data))
        except (ProtocolError, rs2.EncodingError) as exc:
            _log_once(f"proof:{forwarder}", logging.WARNING, "gossiped inconsistency proof from %s rejected: %s",
                      forwarder, exc)
            return False
        await self._apply_invalid(blob_id, bytes(msg.data))
        return True

    async def handle_delete(self, stream, peer: str) -> None:
        """Delete a deletable blob on the word of the key that stored it (the owner its holders
        signed for), once per nonce and only in the epoch the delete was issued or the next."""
        from ..core.certificates import delete_message
        from ..core.keys import verify_signature

        req = wire.DeleteRequest.from_json(await rpc.recv_json(stream), n_shards=self.net.n_shards)
        blob_id, issued, signature, nonce = req.blob_id, req.epoch, req.signature, req.nonce
        if not 0 <= self.epoch - issued <= 1:
            raise ProtocolError(f"delete issued in epoch {issued}, now {self.epoch}: sign a new one")
        cert = self.certs.get(blob_id)
        if cert is None:
            await rpc.send_json(stream, wire.Reply.failed("not found").to_json())
            return
        if not cert.deletable:
            raise ProtocolError("blob was not stored as deletable")
        if not cert.owner or not verify_signature(cert.owner, delete_message(self.net.name, blob_id, issued, nonce),
                                                  signature):
            raise ProtocolError("delete request not signed by the blob's owner")
        if why := self.delete_nonces.use(nonce.hex(), issued, self.epoch):
            raise ProtocolError(why)
        await trio.to_thread.run_sync(self.store.delete_blob, blob_id)
        self.certs.pop(blob_id, None)
        self.store.set_state(blob_id, {"deleted": True, "end_epoch": cert.end_epoch})
        logger.info("blob %s deleted by its owner", rs2_id(blob_id))
        await rpc.send_json(stream, wire.Reply().to_json())

    # --- handlers ---------------------------------------------------------------

    def max_epochs_ahead(self) -> int:
        """The network file's bound, or the decided epoch state's ``max_epochs_ahead`` parameter
        when epochs run on this node (a parameter change a quorum proposed)."""
        state = getattr(getattr(getattr(self, "epochs", None), "service", None), "current", None)
        if state is not None:
            return state.parameter("max_epochs_ahead", self.net.max_epochs_ahead)
        return self.net.max_epochs_ahead

    def _check_epochs(self, epoch: int, end_epoch: int) -> None:
        now = self.epoch
        if abs(epoch - now) > 1:
            raise ProtocolError(f"epoch {epoch} is not current (now {now})")
        limit = self.max_epochs_ahead()
        if end_epoch <= epoch or end_epoch - now > limit:
            raise ProtocolError(f"end epoch {end_epoch} out of range (at most {limit} epochs ahead of {now})")

    async def _read_metadata(self, stream, blob_id: bytes) -> rs2.BlobMetadata:
        raw = await rpc.recv_blob(stream, rs2.metadata_size(self.net.n_shards))
        meta = rs2.BlobMetadata.from_bytes(raw, max_shards=self.net.n_shards)
        if meta.n_shards != self.net.n_shards:
            raise ProtocolError(f"metadata for {meta.n_shards} shards; the network has {self.net.n_shards}")
        if meta.blob_id() != blob_id:
            raise ProtocolError("metadata does not match the blob ID")
        return meta

    async def handle_store(self, stream, peer: str) -> None:
        self.counters["store_requests"] += 1
        n = self.net.n_shards
        req = wire.StoreRequest.from_json(await rpc.recv_json(stream, MAX_PAID_HEADER), n_shards=n)
        blob_id, epoch, end_epoch, pairs = req.blob_id, req.epoch, req.end_epoch, req.pairs
        deletable, owner = req.deletable, req.owner
        self._check_epochs(epoch, end_epoch)
        # Refused from the header, before a byte of metadata or slivers is read: a node
        # buffers only slivers of shards it holds.
        mine = set(self.my_shards())
        foreign = sorted(s for s in (rs2.shard_for_pair(p, blob_id, n) for p in pairs) if s not in mine)
        if foreign:
            raise ProtocolError(f"shards {foreign} are not held by this node")
        meta = await self._read_metadata(stream, blob_id)
        if self.is_invalid(blob_id):
            raise ProtocolError("blob is marked invalid")
        if self.ledger is not None:  # paid for, before a sliver is read (issue 16); nothing asked at price 0
            await self.ledger.check_store_payment(req.payment, blob_id=blob_id, n_shards=n, epoch=epoch,
                                                  end_epoch=end_epoch, unencoded_length=meta.unencoded_length)
        held = self.certs.get(blob_id)
        if held is not None and (why := relabel_reason(held, _labels(deletable, owner))):
            # What we sign binds the labels: no stranger gets signatures that relabel a blob.
            raise ProtocolError(f"this blob is certified here already; storing it again like this is refused: {why}")
        cfg, s = meta.config, meta.symbol_size
        p_len, s_len = cfg.n_secondary * s, cfg.n_primary * s
        mine = set(self.my_shards())
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
                self.counters["slivers_refused"] += 1
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
            stored = await trio.to_thread.run_sync(persist_pairs, self.store, meta, blob_id, verified, update_state)
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
        conf = sign_confirmation(self.keypair, self.peer_id, self.net.name, blob_id, epoch, end_epoch, stored,
                                 deletable=deletable, owner=owner)
        await rpc.send_json(stream, wire.StoreReply(
            True, None, conf, refused,
            {k: round(v, 4) for k, v in timing.items()},  # what `p2pwalrus store` reports
        ).to_json())

    def held_pairs(self, blob_id: bytes) -> list[int]:
        """Shards of this blob for which both slivers are stored here."""
        return sorted(s for s, kinds in self.store.shards_stored(blob_id).items() if len(kinds) == 2)

    async def handle_confirm(self, stream, peer: str) -> None:
        """Sign a confirmation for the shards of a certified blob held now (extensions), with
        the labels of the certificate we hold: the caller chooses only the epochs, so a
        stranger's extension can never relabel the blob's owner or deletable flag. Our end
        epoch moves only when the extension's certificate arrives."""
        req = wire.ConfirmRequest.from_json(await rpc.recv_json(stream, MAX_PAID_HEADER), n_shards=self.net.n_shards)
        blob_id, epoch, end_epoch = req.blob_id, req.epoch, req.end_epoch
        self._check_epochs(epoch, end_epoch)
        if self.is_invalid(blob_id):
            raise ProtocolError("blob is marked invalid")
        cert = self.certs.get(blob_id)
        if cert is None:
            raise ProtocolError("this node holds no certificate for this blob: only certified blobs are extended")
        if self.ledger is not None and end_epoch > cert.end_epoch:
            # An extension pays for the added epochs; a renewal of the same end epoch pays nothing.
            raw = self.store.get_metadata(blob_id)
            if raw is None:
                raise ProtocolError("this node holds no metadata for this blob: nothing to confirm")
            meta = rs2.BlobMetadata.from_bytes(raw, max_shards=self.net.n_shards)
            await self.ledger.check_store_payment(req.payment, blob_id=blob_id, n_shards=self.net.n_shards,
                                                  epoch=epoch, end_epoch=end_epoch,
                                                  unencoded_length=meta.unencoded_length,
                                                  extends_from=cert.end_epoch)
        mine = set(self.my_shards())
        held = [s for s in await trio.to_thread.run_sync(self.held_pairs, blob_id) if s in mine]
        if not held:
            # Never a signature over zero shards: it would still count as a signer for a
            # certificate of a blob this node does not hold (issue 13).
            raise ProtocolError("this node holds no shard of this blob: nothing to confirm")
        conf = sign_confirmation(self.keypair, self.peer_id, self.net.name, blob_id, epoch, end_epoch, held,
                                 deletable=cert.deletable, owner=cert.owner)
        await rpc.send_json(stream, wire.ConfirmReply(True, None, conf).to_json())

    async def handle_get_metadata(self, stream, peer: str) -> None:
        blob_id = wire.GetMetadataRequest.from_json(await rpc.recv_json(stream), n_shards=self.net.n_shards).blob_id
        if self.is_invalid(blob_id):
            await rpc.send_json(stream, wire.INVALID_REPLY.to_json())
            return
        data = self.store.get_metadata(blob_id)
        await rpc.send_json(stream, (wire.BlobReply() if data is not None else wire.BlobReply.not_found()).to_json())
        if data is not None:
            await rpc.write_frame(stream, data)

    async def handle_get_sliver(self, stream, peer: str) -> None:
        req = wire.GetSliverRequest.from_json(await rpc.recv_json(stream), n_shards=self.net.n_shards)
        blob_id, pair, kind = req.blob_id, req.pair, req.kind
        if self.is_invalid(blob_id):
            await rpc.send_json(stream, wire.INVALID_REPLY.to_json())
            return
        shard = rs2.shard_for_pair(pair, blob_id, self.net.n_shards)
        data = await trio.to_thread.run_sync(self.store.get_sliver, blob_id, shard, kind)
        if data is not None and "corrupt_slivers" in self.faults:
            data = bytes(b ^ 0x5A for b in data[:64]) + data[64:]
        await rpc.send_json(stream, (wire.BlobReply() if data is not None else wire.BlobReply.not_found()).to_json())
        if data is not None:
            await rpc.write_frame(stream, data)

    async def handle_recovery(self, stream, peer: str) -> None:
        n = self.net.n_shards
        req = wire.RecoveryRequest.from_json(await rpc.recv_json(stream), n_shards=n)
        blob_id, pair, axis, targets = req.blob_id, req.pair, req.axis, list(req.targets)
        if self.is_invalid(blob_id):
            await rpc.send_json(stream, wire.INVALID_REPLY.to_json())
            return
        raw_meta = self.store.get_metadata(blob_id)
        shard = rs2.shard_for_pair(pair, blob_id, n)
        kind = PRIMARY if axis == rs2.PRIMARY else SECONDARY
        sliver = await trio.to_thread.run_sync(self.store.get_sliver, blob_id, shard, kind)
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

    async def handle_status(self, stream, peer: str) -> None:
        blob_id = wire.BlobStatusRequest.from_json(await rpc.recv_json(stream), n_shards=self.net.n_shards).blob_id
        state = self.store.get_state(blob_id)

        def verified_pairs() -> list[int]:
            # Read both slivers: the store's checksums catch anything that rotted on disk.
            out = []
            for shard in self.held_pairs(blob_id):
                if all(self.store.get_sliver(blob_id, shard, k) is not None for k in (PRIMARY, SECONDARY)):
                    out.append(shard)
            return out

        shards = await trio.to_thread.run_sync(verified_pairs)
        await rpc.send_json(stream, wire.BlobStatusReply(
            True, None, tuple(shards), certified=blob_id in self.certs, invalid=bool(state.get("invalid")),
            end_epoch=state.get("end_epoch"),
        ).to_json())

    async def handle_get_cert(self, stream, peer: str) -> None:
        blob_id = wire.GetCertRequest.from_json(await rpc.recv_json(stream), n_shards=self.net.n_shards).blob_id
        cert = self.certs.get(blob_id)
        if cert is None:
            await rpc.send_json(stream, wire.BlobReply.not_found(invalid=self.is_invalid(blob_id)).to_json())
            return
        await rpc.send_json(stream, wire.BlobReply(True, None, self.is_invalid(blob_id)).to_json())
        await rpc.write_frame(stream, cert.to_bytes())

    async def learn_signers(self, cert: AvailabilityCertificate) -> None:
        """A certificate with confirming peers missing from our view (a member that joined and
        that we have not heard of yet): pull the live set from our bootstrap peers once before
        judging it, at most every LEARN_PAUSE seconds. Only peers the network vouches for
        enter our view (and so our shard map): the certificate's own word is not taken."""
        if self.members is None or not self.certcheck.signers_unknown(cert):
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
            with trio.move_on_after(PEER_CALL_TIMEOUT):
                try:
                    await self.members.pull_from_bootstrap()
                except Exception as exc:
                    logger.info("membership pull for a certificate failed: %r", exc)
            self._recompute_map()
        finally:
            self._learning.set()
            self._learning = None

    async def handle_put_cert(self, stream, peer: str) -> None:
        raw = await rpc.recv_blob(stream, 1 << 20)
        try:
            cert = AvailabilityCertificate.from_bytes(raw)
            new = await self.accept_certificate(cert, source=peer)
        except InvalidCertificateError as exc:
            self.counters["certs_rejected"] += 1
            raise ProtocolError(exc.reason) from None
        await rpc.send_json(stream, wire.NewReply(True, None, new).to_json())
        if new:
            await self.gossip_certificate(raw)

    async def gossip_certificate(self, raw: bytes) -> None:
        try:
            await self.node.pubsub.publish(protocols.certs_topic(self.net.name), raw)
        except Exception as exc:
            logger.info("gossiping a certificate failed: %s", exc)

    async def handle_list_certs(self, stream, peer: str) -> None:
        wire.ListCertsRequest.from_json(await rpc.recv_json(stream))
        items = [wire.CertListing(b, c.end_epoch, c.epoch)  # (epoch: renewals)
                 for b, c in itertools.islice(self.certs.items(), wire.MAX_CERTS_LISTED)]
        invalid = list(itertools.islice(self.proofs, wire.MAX_PROOFS_LISTED))
        await rpc.send_json(stream, wire.ListCertsReply(True, None, tuple(items), tuple(invalid)).to_json())

    async def handle_get_proof(self, stream, peer: str) -> None:
        blob_id = wire.GetProofRequest.from_json(await rpc.recv_json(stream), n_shards=self.net.n_shards).blob_id
        data = self.proofs.get(blob_id)
        await rpc.send_json(stream, (wire.BlobReply() if data is not None else wire.BlobReply.not_found()).to_json())
        if data is not None:
            await rpc.write_frame(stream, data)

    async def handle_list_blobs(self, stream, peer: str) -> None:
        wire.ListBlobsRequest.from_json(await rpc.recv_json(stream))

        def listing() -> tuple[wire.BlobListing, ...]:
            out = []
            for blob_id in self.store.list_blobs()[:wire.MAX_BLOBS_LISTED]:
                state = self.store.get_state(blob_id)
                out.append(wire.BlobListing(blob_id, tuple(self.held_pairs(blob_id)), state.get("end_epoch"),
                                           blob_id in self.certs, bool(state.get("invalid"))))
            return tuple(out)

        await rpc.send_json(stream, wire.ListBlobsReply(True, None, await trio.to_thread.run_sync(listing)).to_json())

    async def handle_info(self, stream, peer: str) -> None:
        wire.NodeInfoRequest.from_json(await rpc.recv_json(stream))
        await rpc.send_json(stream, wire.NodeInfoReply(True, None, self.status()).to_json())

    # --- fault injection (netlab) -------------------------------------------------------

    def gate(self, peer: str):
        """None to refuse a denied peer, else the injected delay (seconds)."""
        return None if peer in self.deny else self.delay

    def _apply_faults(self, obj: dict) -> None:
        deny = obj.get("deny", [])
        delay_ms = obj.get("delay_ms", 0)
        if not isinstance(deny, list) or not all(isinstance(p, str) for p in deny):
            raise ValueError("'deny' must be a list of peer IDs")
        if not isinstance(delay_ms, (int, float)) or not 0 <= delay_ms <= 60_000:
            raise ValueError("'delay_ms' must be between 0 and 60000")
        healed = bool(self.deny - set(deny))
        self.deny = set(deny) - {self.peer_id}
        self.delay = delay_ms / 1000
        if self.node is not None:
            self.node.deny = self.deny
        if self.liveness is not None:
            if healed:
                self.liveness.retry_down_now()
            self.liveness.wake()
        logger.info("faults applied: %d peers denied, %d ms delay", len(self.deny), delay_ms)

    async def _disconnect_denied(self) -> None:
        # Their heartbeat links die with the connection: denied peers leave our live set.
        for peer in list(self.node.connected_peers()):
            if str(peer) in self.deny:
                with trio.move_on_after(2):
                    try:
                        await self.node.host.disconnect(peer)
                    except Exception as exc:
                        logger.debug("disconnect %s: %r", peer, exc)

    async def _faults_loop(self) -> None:
        """Watch DATA_DIR/faults.json (netlab writes it) and keep denied peers disconnected."""
        path = self.data_dir / "faults.json"
        seen = None
        while True:
            try:
                stamp = path.stat().st_mtime_ns
            except FileNotFoundError:
                stamp = None
            if stamp != seen:
                seen = stamp
                try:
                    self._apply_faults(json.loads(path.read_text()) if stamp is not None else {})
                    self.write_status()
                except (ValueError, OSError) as exc:
                    logger.warning("ignoring %s: %s", path, exc)
            if self.deny:
                await self._disconnect_denied()
            await trio.sleep(FAULTS_POLL)

    def _denied_message(self, forwarder, msg) -> bool:
        from libp2p.peer.id import ID

        if not self.deny:
            return False
        try:
            sender = ID(msg.from_id).to_base58()
        except Exception:
            sender = ""
        return str(forwarder) in self.deny or sender in self.deny

    # --- gossip and anti-entropy ----------------------------------------------------

    async def _cert_validator(self, forwarder, msg) -> bool:
        if self._denied_message(forwarder, msg):
            return False
        try:
            cert = AvailabilityCertificate.from_bytes(msg.data)
            await self.accept_certificate(cert, source=str(forwarder))
            return True
        except InvalidCertificateError as exc:
            self.counters["certs_rejected"] += 1
            _log_once(f"cert:{forwarder}", logging.WARNING, "gossiped certificate from %s rejected: %s",
                      forwarder, exc.reason)
            return False
        except StorageError as exc:
            logger.error("cannot store a certificate: %s", exc)
            return True

    async def _drain_certs(self, subscription) -> None:
        while True:
            await subscription.get()  # accepted by the validator already

    async def call(self, peer_id: str, protocol, header, *, timeout: float = PEER_CALL_TIMEOUT):
        """Send a request header, read the JSON reply: (the open stream, the reply). ``header`` is a
        request message (core/messages.py), whose reply comes back parsed and checked by its reply
        class (ProtocolError if malformed); or a plain dict, whose reply is a dict."""
        from libp2p.peer.id import ID

        if peer_id in self.deny:
            raise ProtocolError(f"{peer_id} is on this node's deny-list (partition)")
        if self.delay:
            await trio.sleep(self.delay)
        with trio.fail_after(timeout):
            stream = await self.node.open_stream(ID.from_base58(peer_id), [protocol])
            try:
                typed = isinstance(header, wire.Request)
                await rpc.send_json(stream, header.to_json() if typed else header)
                reply = await rpc.recv_json(stream, rpc.MAX_LIST_REPLY)
                if typed:
                    reply = header.reply.from_json(reply, n_shards=self.net.n_shards)
                return stream, reply
            except BaseException:
                await rpc.close_quietly(stream, reset=True)
                raise

    async def fetch_blob(self, peer_id: str, protocol, header, max_size: int, *,
                         timeout: float = PEER_CALL_TIMEOUT) -> bytes | None:
        """A call answered by a JSON header and, when it says ok, one blob of at most
        ``max_size`` bytes; None if the peer said it has none. (``timeout`` bounds the call.)"""
        stream, reply = await self.call(peer_id, protocol, header, timeout=timeout)
        try:
            if not (reply.ok if isinstance(reply, wire.Reply) else reply.get("ok")):
                return None
            return await rpc.recv_blob(stream, max_size)
        finally:
            await rpc.close_quietly(stream)

    async def pull_certificates_from(self, peer_id: str) -> int:
        """Anti-entropy: fetch the proofs and certificates a peer lists that we lack.

        Bounded per pull (PULL_DEADLINE overall, at most PULL_CERTS / PULL_PROOFS fetches and
        PULL_PROOF_BYTES from the peer: the rest come with the next pull, which the beats'
        digests still ask for), and a blob whose certificate or proof failed (refused, or not
        given) is backed off, so that a peer listing 20,000 forged ones costs little each time."""
        got = 0
        with trio.move_on_after(PULL_DEADLINE):
            stream, reply = await self.call(peer_id, protocols.LIST_CERTS, {})
            await rpc.close_quietly(stream)
            invalid, certs = reply.get("invalid", []), reply.get("certs", [])
            if not isinstance(invalid, list) or not isinstance(certs, list):
                raise ProtocolError("certificate list reply of the wrong shape")
            await self._pull_proofs(peer_id, invalid)
            got = await self._pull_certs(peer_id, certs)
        return got

    async def _pull_proofs(self, peer_id: str, invalid: list) -> None:
        fetched = nbytes = 0
        now = time.monotonic()
        for text in invalid[:1000]:
            if fetched >= PULL_PROOFS or nbytes >= PULL_PROOF_BYTES:
                break
            try:
                blob_id = bytes.fromhex(text)
            except (ValueError, TypeError):
                continue
            if len(blob_id) != 32 or blob_id in self.proofs or not self.cert_backoff.ready(blob_id, now):
                continue
            fetched += 1
            try:
                message = await self.fetch_blob(peer_id, protocols.GET_PROOF, {"blob_id": blob_id.hex()},
                                                min(MAX_PROOF_MESSAGE, PULL_PROOF_BYTES - nbytes))
                if message is None:
                    raise ProtocolError("listed, then not given")
                nbytes += len(message)
                checked = await trio.to_thread.run_sync(self.check_proof_message, message)
                if checked != blob_id:
                    raise ProtocolError("a proof for another blob")
            except (ProtocolError, rs2.EncodingError, trio.TooSlowError) as exc:
                self.cert_backoff.failed(blob_id, time.monotonic())
                logger.info("inconsistency proof of %s pulled from %s rejected: %s", rs2_id(blob_id), peer_id, exc)
                continue
            await self._apply_invalid(checked, message)

    async def _pull_certs(self, peer_id: str, certs: list) -> int:
        from .recertify import renew, shows_an_honest_signer

        got = fetched = renewed = 0
        current = self.epoch
        now = time.monotonic()
        for item in certs[:20000]:
            if fetched >= PULL_CERTS:
                break
            try:
                blob_id, end_epoch = bytes.fromhex(item[0]), item[1]
                epoch = item[2] if len(item) > 2 else 0
            except (ValueError, TypeError, IndexError, KeyError):
                continue
            if type(end_epoch) is not int or type(epoch) is not int or len(blob_id) != 32:
                continue
            have = self.certs.get(blob_id)
            if (end_epoch <= current or (have and _freshness(have) >= (end_epoch, epoch))
                    or not self.cert_backoff.ready(blob_id, now)):
                continue
            fetched += 1
            try:
                raw = await self.fetch_blob(peer_id, protocols.GET_CERT, {"blob_id": blob_id.hex()}, 1 << 20)
                if raw is None:
                    raise InvalidCertificateError("listed, then not given")
                cert = AvailabilityCertificate.from_bytes(raw)
                if cert.blob_id != blob_id:
                    raise InvalidCertificateError("a certificate of another blob")
                try:
                    if await self.accept_certificate(cert, source=peer_id):
                        got += 1
                except InvalidCertificateError as exc:
                    # Churn moved its shards away from its signers: today's holders may sign it
                    # again, if honest holders signed it (recertify.py). A few per pull.
                    if ("in this node's view" not in exc.reason or renewed >= 2
                            or not await shows_an_honest_signer(self, cert)):
                        raise
                    renewed += 1
                    if not await renew(self, cert, source=peer_id):
                        raise
                    got += 1
                self.cert_backoff.succeeded(blob_id)
            except (InvalidCertificateError, ProtocolError, trio.TooSlowError) as exc:
                wait = self.cert_backoff.failed(blob_id, time.monotonic())
                logger.info("certificate of %s pulled from %s rejected: %s (not asked again for %.0f s)",
                            rs2_id(blob_id), peer_id, getattr(exc, "reason", exc), wait)
        return got

    async def _certified_elsewhere(self, blob_id: bytes) -> bool:
        """Whether a few live peers hold a certificate for the blob that we accept (one we
        missed: gossip and anti-entropy normally bring it first)."""
        peers = [p for p in self.members.live.peer_ids() if p != self.peer_id] if self.members else []
        for peer in random.sample(peers, min(3, len(peers))):
            try:
                raw = await self.fetch_blob(peer, protocols.GET_CERT, {"blob_id": blob_id.hex()}, 1 << 20)
                if raw is not None:
                    await self.accept_certificate(AvailabilityCertificate.from_bytes(raw), source=peer)
            except Exception as exc:
                logger.debug("certificate of %s from %s: %r", rs2_id(blob_id), peer, exc)
            if blob_id in self.certs:
                return True
        return False

    def uncertified_expired(self, now: float | None = None) -> list[bytes]:
        """Blobs whose slivers came more than `uncertified_grace` seconds ago and that have no
        certificate: uploads that were interrupted or failed before they were certified."""
        now = time.time() if now is None else now
        grace = self.net.timings.uncertified_grace
        out = []
        for blob_id in self.store.list_blobs():
            if blob_id in self.certs:
                continue
            state = self.store.get_state(blob_id)
            if state.get("certified") or state.get("invalid") or state.get("deleted"):
                continue
            stored_at = state.get("stored_at")
            if not isinstance(stored_at, (int, float)):  # data from before stored_at: a grace from now
                self.store.set_state(blob_id, {"stored_at": now})
                continue
            if now - stored_at > grace:
                out.append(blob_id)
        return out

    async def _gc_loop(self) -> None:
        """Blobs past their end epoch are deleted, and so are the slivers of uploads that got no
        certificate within `uncertified_grace` (a store interrupted before its certificate
        leaves nothing behind for longer); repeated every minute, or more often for a short grace."""
        grace = self.net.timings.uncertified_grace
        while True:
            current = self.epoch
            self.proofs.prune(current)  # proofs kept to their blob's end epoch
            for blob_id in self.store.list_blobs():
                end = self.store.get_state(blob_id).get("end_epoch")
                if end is not None and end <= current:
                    await trio.to_thread.run_sync(self.store.delete_blob, blob_id)
                    self.certs.pop(blob_id, None)
                    logger.info("blob %s expired at epoch %d: deleted", rs2_id(blob_id), end)
            for blob_id in await trio.to_thread.run_sync(self.uncertified_expired):
                if await self._certified_elsewhere(blob_id):
                    continue
                if blob_id in self.certs:  # certified while we asked
                    continue
                await trio.to_thread.run_sync(self.store.delete_blob, blob_id)
                self.counters["uncertified_deleted"] += 1
                logger.info("blob %s got no certificate within %.0f s of its upload: deleted", rs2_id(blob_id), grace)
            await trio.sleep(min(60.0, self.net.epoch_length / 4, max(0.5, grace / 4)))

    async def _membership_loop(self, changes) -> None:
        self._recompute_map()
        async for change in changes:
            kind = change.kind.name.lower()
            if kind != "updated":
                logger.info("peer %s %s (%d live)", change.peer_id, kind, len(self.members.live))
            self._recompute_map()
            if self.liveness is not None:
                self.liveness.wake()

    # --- run ------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        t = self.net.timings
        from ..p2p.host import HostTimings

        host_timings = HostTimings(refresh_interval=t.refresh_interval, gossip_heartbeat=t.gossip_heartbeat,
                                   gossip_degree=max(1, int(t.gossip_degree)), **self.host_overrides)
        mcfg = MembershipConfig(
            network=self.net.name,
            capacity=self.capacity or 0,
            publish_interval=t.record_refresh,
            record_lifetime=t.record_lifetime,
        )
        lcfg = LivenessConfig(interval=t.heartbeat_interval, dead_after=t.heartbeat_timeout,
                              reopen_timeout=max(4.0, t.heartbeat_timeout / 4))
        async with open_host(self.keypair, self.listen, list(self.net.bootstrap), timings=host_timings) as node:
            self.node = node
            handlers = {
                protocols.STORE: self.handle_store,
                protocols.CONFIRM: self.handle_confirm,
                protocols.GET_METADATA: self.handle_get_metadata,
                protocols.GET_SLIVER: self.handle_get_sliver,
                protocols.GET_RECOVERY: self.handle_recovery,
                protocols.BLOB_STATUS: self.handle_status,
                protocols.GET_CERT: self.handle_get_cert,
                protocols.PUT_CERT: self.handle_put_cert,
                protocols.LIST_CERTS: self.handle_list_certs,
                protocols.NODE_INFO: self.handle_info,
                protocols.LIST_BLOBS: self.handle_list_blobs,
                protocols.PUT_PROOF: self.handle_put_proof,
                protocols.GET_PROOF: self.handle_get_proof,
                protocols.DELETE: self.handle_delete,
            }
            for proto, handler in handlers.items():
                node.host.set_stream_handler(proto, rpc.serve(handler, HANDLER_TIMEOUT, proto.split("/")[2], self.gate,
                                                               self.peer_limits))
            topic = protocols.certs_topic(self.net.name)
            node.pubsub.set_topic_validator(topic, self._cert_validator, is_async_validator=True)
            cert_sub = await node.pubsub.subscribe(topic)

            node.pubsub.set_topic_validator(protocols.proofs_topic(self.net.name), self._proof_validator, is_async_validator=True)
            proof_sub = await node.pubsub.subscribe(protocols.proofs_topic(self.net.name))
            async with open_membership(node, self.keypair, mcfg) as members:
                self.members = members
                record_validator = members._gossip_validator

                def gated_record_validator(forwarder, msg):
                    if self._denied_message(forwarder, msg):
                        return False
                    try:
                        if SignedNodeRecord.from_bytes(msg.data, network=self.net.name, now=time.time()).peer_id in self.deny:
                            return False
                    except Exception:
                        pass  # the membership validator names the reason
                    return record_validator(forwarder, msg)

                node.pubsub.set_topic_validator(members.topic, gated_record_validator, is_async_validator=False)
                self.liveness = Liveness(node, members, lcfg, certs_digest=self.certs_digest,
                                         pull_certs=self.pull_certificates_from)

                def gated_report_validator(forwarder, msg):
                    return not self._denied_message(forwarder, msg) and self.liveness.validate_report(forwarder, msg)

                node.pubsub.set_topic_validator(self.liveness.topic, gated_report_validator, is_async_validator=False)
                logger.info("node %s listening on %s", self.peer_id, " ".join(node.listen_addrs()))
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._membership_loop, members.subscribe())
                    nursery.start_soon(self._drain_certs, cert_sub)
                    nursery.start_soon(self._drain_certs, proof_sub)
                    nursery.start_soon(self.repair.run)
                    nursery.start_soon(self.repair.challenge_loop)
                    nursery.start_soon(self._faults_loop)
                    nursery.start_soon(self.liveness.run)
                    nursery.start_soon(self._gc_loop)
                    for start in self.extra_services:
                        start(self, nursery)
                    self._recompute_map()
                    self.ready.set()
                    task_status.started(self)
                    await trio.sleep_forever()


MAX_PROOF_MESSAGE = rs2.MAX_PROOF_MESSAGE


def verify_pairs(meta: rs2.BlobMetadata, owned) -> tuple[list[tuple], dict[int, str]]:
    """Verify sliver pairs: ``owned`` is (pair, shard, primary, secondary) for pairs this node
    holds. All primary slivers are verified in one batch, then all secondary ones
    (rs2.verify_slivers). Returns the good pairs as (pair, shard, primary, secondary,
    primary leaves, secondary leaves) and {pair: why refused}. Synchronous: run it in a
    worker thread."""
    prim = rs2.verify_slivers(meta, rs2.PRIMARY, {pair: p for pair, _, p, _ in owned})
    sec = rs2.verify_slivers(meta, rs2.SECONDARY, {pair: q for pair, _, _, q in owned})
    good, refused = [], {}
    for pair, shard, p, q in owned:
        why = prim.bad.get(pair) or sec.bad.get(pair)
        if why is not None:
            refused[pair] = why
        else:
            good.append((pair, shard, p, q, prim.good[pair], sec.good[pair]))
    return good, refused


def persist_pairs(store: SliverStore, meta: rs2.BlobMetadata, blob_id: bytes, verified, update_state) -> list[int]:
    """Write verified pairs (from `verify_pairs`), the metadata (if new) and the state update
    in one group commit whose checksums reuse the verifier's leaf hashes. Returns the shards
    now durably stored (none if the blob was deleted meanwhile); a caller may confirm them
    once this returns. Synchronous: run it in a worker thread."""
    s = meta.symbol_size
    slivers, shards = [], []
    for _pair, shard, p, q, p_leaves, q_leaves in verified:
        slivers.append((shard, PRIMARY, p, SymbolLeaves(s, p_leaves.tobytes())))
        slivers.append((shard, SECONDARY, q, SymbolLeaves(s, q_leaves.tobytes())))
        shards.append(shard)
    if not slivers:
        return []
    if not store.put_slivers(blob_id, slivers, metadata=meta.to_bytes(), update_state=update_state):
        return []  # the blob was deleted meanwhile: nothing of this request is stored
    return shards


def verify_and_persist(store: SliverStore, meta: rs2.BlobMetadata, blob_id: bytes, owned, update_state,
                       timing: dict[str, float] | None = None):
    """A store request's work after receiving, in one go: `verify_pairs`, then `persist_pairs`.

    Returns (shards now durably stored, {pair: why refused}). ``timing``, if given, gets the
    seconds spent verifying ("verify") and writing ("write"). (handle_store does the same
    with each pair verified as it arrives.) Synchronous: run it in a worker thread.
    """
    timing = {} if timing is None else timing
    t0 = time.perf_counter()
    good, refused = verify_pairs(meta, owned)
    t1 = time.perf_counter()
    timing["verify"] = timing.get("verify", 0.0) + t1 - t0
    try:
        return persist_pairs(store, meta, blob_id, good, update_state), refused
    finally:
        timing["write"] = timing.get("write", 0.0) + time.perf_counter() - t1


async def _quietly(fn, *args) -> None:
    try:
        await fn(*args)
    except Exception as exc:
        logger.debug("%s%r failed: %r", getattr(fn, "__name__", fn), args, exc)


def _freshness(cert: AvailabilityCertificate) -> tuple[int, int]:
    """Which of two certificates of a blob a node keeps: the later end epoch, then the later
    certified epoch (a renewal by today's holders, see recertify.py)."""
    return cert.end_epoch, cert.epoch


def _labels(deletable: bool, owner: str):
    """A store request's labels, shaped as a certificate for `relabel_reason`."""
    from types import SimpleNamespace

    return SimpleNamespace(deletable=deletable, owner=owner)


def rs2_id(blob_id: bytes) -> str:
    from ..core.blob_id import blob_id_to_str

    return blob_id_to_str(blob_id)


async def run_node_until_signal(node: StorageNode) -> int | None:
    """Run until SIGINT or SIGTERM, then shut down cleanly; return the signal's number."""
    received: list[int] = []
    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(node.run)

                async def wait_signal():
                    async for sig in signals:
                        logger.info("received %s: shutting down", signal.Signals(sig).name)
                        received.append(sig)
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(wait_signal)
    finally:
        node.close()
    logger.info("node stopped")
    return received[0] if received else None
