"""The storage node: identity, host, membership, shard map, sliver store and stream protocols.

`StorageNode.run` is the whole node as one trio task; every background task lives in its
nursery. Handlers validate and bound every message before storing or answering.
"""

from __future__ import annotations

import itertools
import logging
import signal
import time
from pathlib import Path

import trio

from ..config import NetworkConfig
from ..core import rs2
from ..core.certificates import (
    AvailabilityCertificate,
    InvalidCertificateError,
    relabel_reason,
    sign_confirmation,
)
from ..core.placement import ShardMap, compute_shard_map
from ..core.records import SignedNodeRecord
from ..errors import CapacityExceededError, ProtocolError, StorageError
from ..p2p import rpc
from .cert_registry import CertificateRegistry
from .certcheck import CertChecker
from .expiry import Expiry
from .faults import FaultInjection
from .invalid_blobs import InvalidBlobs
from .status import node_status, write_status_file
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

HANDLER_TIMEOUT = 60.0  # one whole exchange, including a node's share of a large blob
PEER_CALL_TIMEOUT = 10.0
MAX_PAID_HEADER = 256 << 10  # a store or extension header with its payment certificate (votes of up to 1000 nodes)


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
        # The node's jobs, each a small service owning its state; the node wires them together.
        self.certificates = CertificateRegistry(self)  # accepted, stored, gossiped, pulled
        self.certs = self.certificates.certs  # (the same dict: handlers and services read it)
        self.invalid = InvalidBlobs(self)  # inconsistency proofs and invalid marks
        self.proofs = self.invalid.proofs
        self.expiry = Expiry(self)  # end epochs and uploads never certified
        self.fault_injection = FaultInjection(self, self.data_dir)  # netlab's faults.json
        from .bounded import Backoff

        self.renew_backoff = Backoff(base=10.0, cap=600.0)  # certificates renewal failed for (recertify.py)
        self.node = None
        self.members = None
        self.ready = trio.Event()
        self.map_changed = trio.Event()
        self.counters = {"certs_seen": 0, "certs_rejected": 0, "slivers_refused": 0, "store_requests": 0,
                         "uncertified_deleted": 0}
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
        self.certificates.load()

    def close(self) -> None:
        """Close the store and release the data dir (idempotent). Call it once the node's
        task has ended, however it ended (a cancelled in-process node included)."""
        try:
            self.store.close()
        finally:
            self.data_dir_lock.release()

    # --- state ------------------------------------------------------------------

    # Fault injection state (faults.py), read by handlers and by the ledger and epoch services.
    @property
    def deny(self) -> set[str]:
        return self.fault_injection.deny

    @property
    def delay(self) -> float:
        return self.fault_injection.delay

    @property
    def faults(self) -> set[str]:
        return self.fault_injection.flags

    @property
    def cert_added(self) -> trio.Event:
        return self.certificates.added

    @property
    def cert_backoff(self):
        return self.certificates.backoff

    @property
    def epoch(self) -> int:
        return self.net.current_epoch()

    def my_shards(self) -> tuple[int, ...]:
        return self.shard_map.shards_of(self.peer_id) if self.shard_map else ()

    def is_invalid(self, blob_id: bytes) -> bool:
        return self.invalid.is_invalid(blob_id)

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
        self.certificates.backoff = type(self.certificates.backoff)()
        if self.liveness is not None:
            self.liveness.pull_again("certs")
        self.repair.trigger()
        self.write_status()

    def write_status(self) -> None:
        write_status_file(self)

    def status(self) -> dict:
        return node_status(self)

    async def accept_certificate(self, cert: AvailabilityCertificate, *, source: str) -> bool:
        """Validate and keep a certificate; True if it is new or extends one we had (cert_registry.py)."""
        return await self.certificates.accept(cert, source=source)

    # --- invalid blobs and deletion ------------------------------------------------------

    async def mark_invalid(self, blob_id: bytes, meta: rs2.BlobMetadata, proof: rs2.InconsistencyProof) -> None:
        """We found the blob inconsistent: mark it and tell every node (invalid_blobs.py)."""
        await self.invalid.found(blob_id, meta, proof)

    def check_proof_message(self, message: bytes) -> bytes:
        """Verify an inconsistency proof message; return the blob ID it proves invalid."""
        return self.invalid.check_message(message)

    async def handle_put_proof(self, stream, peer: str) -> None:
        message = await rpc.recv_blob(stream, MAX_PROOF_MESSAGE)
        blob_id = await trio.to_thread.run_sync(self.check_proof_message, message)
        new = await self.invalid.apply(blob_id, message)
        await rpc.send_json(stream, wire.NewReply(True, None, new).to_json())

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
        await self.certificates.gossip(raw)

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
        """None to refuse a denied peer, else the injected delay (seconds): see faults.py."""
        return self.fault_injection.gate(peer)

    def _apply_faults(self, obj: dict) -> None:
        self.fault_injection.apply(obj)

    # --- gossip and anti-entropy ----------------------------------------------------

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
        """Anti-entropy from one peer (cert_registry.py)."""
        return await self.certificates.pull_from(peer_id)

    def uncertified_expired(self, now: float | None = None) -> list[bytes]:
        return self.expiry.uncertified_expired(now)

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
            node.pubsub.set_topic_validator(topic, self.certificates.validator, is_async_validator=True)
            cert_sub = await node.pubsub.subscribe(topic)

            node.pubsub.set_topic_validator(protocols.proofs_topic(self.net.name), self.invalid.validator, is_async_validator=True)
            proof_sub = await node.pubsub.subscribe(protocols.proofs_topic(self.net.name))
            async with open_membership(node, self.keypair, mcfg) as members:
                self.members = members
                record_validator = members._gossip_validator

                def gated_record_validator(forwarder, msg):
                    if self.fault_injection.denied_message(forwarder, msg):
                        return False
                    try:
                        if SignedNodeRecord.from_bytes(msg.data, network=self.net.name, now=time.time()).peer_id in self.deny:
                            return False
                    except Exception:
                        pass  # the membership validator names the reason
                    return record_validator(forwarder, msg)

                node.pubsub.set_topic_validator(members.topic, gated_record_validator, is_async_validator=False)
                self.liveness = Liveness(node, members, lcfg, certs_digest=self.certificates.digest,
                                         pull_certs=self.pull_certificates_from)

                def gated_report_validator(forwarder, msg):
                    return not self.fault_injection.denied_message(forwarder, msg) and self.liveness.validate_report(forwarder, msg)

                node.pubsub.set_topic_validator(self.liveness.topic, gated_report_validator, is_async_validator=False)
                logger.info("node %s listening on %s", self.peer_id, " ".join(node.listen_addrs()))
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._membership_loop, members.subscribe())
                    nursery.start_soon(self._drain_certs, cert_sub)
                    nursery.start_soon(self._drain_certs, proof_sub)
                    nursery.start_soon(self.repair.run)
                    nursery.start_soon(self.repair.challenge_loop)
                    nursery.start_soon(self.fault_injection.run)
                    nursery.start_soon(self.liveness.run)
                    nursery.start_soon(self.expiry.run)
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
