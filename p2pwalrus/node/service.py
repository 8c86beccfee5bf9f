"""The storage node: identity, host, membership, shard map, sliver store and stream protocols.

`StorageNode.run` is the whole node as one trio task; every background task lives in its
nursery. Handlers validate and bound every message before storing or answering. The shard
map's upkeep is in shard_maps.py, calls to peers in peer_calls.py, the stream handlers in
handlers.py.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import trio

from ..config import NetworkConfig
from ..core import rs2
from ..core.certificates import AvailabilityCertificate
from ..core.placement import ShardMap
from ..p2p import rpc
from .cert_registry import CertificateRegistry
from .certcheck import CertChecker
from .expiry import Expiry
from .faults import FaultInjection
from .invalid_blobs import InvalidBlobs
from .status import StatusWriter, node_status
from ..p2p.log_once import LogOnce
from ..p2p.host import open_host
from .datadir_lock import lock_data_dir
from ..p2p.identity import load_or_create_identity
from .liveness import Liveness, LivenessConfig
from .membership import MembershipConfig, open_membership
from .handlers import MAX_PROOF_MESSAGE, StreamHandlers  # noqa: F401  (MAX_PROOF_MESSAGE: tools import it from here)
from .sliver_store import RECENT_BYTES, SliverStore
from ..core import protocols
from .peer_calls import PEER_CALL_TIMEOUT, _PeerCalls  # noqa: F401  (re-exported)
from .shard_maps import _ShardMaps

logger = logging.getLogger("p2pwalrus.node")
_log_once = LogOnce(logger)  # what peers send wrong: one line each, floods summarised

HANDLER_TIMEOUT = 60.0  # one whole exchange, including a node's share of a large blob


class StorageNode(_ShardMaps, _PeerCalls):
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
        self.store = SliverStore(self.data_dir / "store", capacity, recent_bytes=RECENT_BYTES)
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
        self.handlers = StreamHandlers(self)  # the blob and certificate exchanges it serves
        from .bounded import Backoff

        self.renew_backoff = Backoff(base=10.0, cap=600.0)  # certificates renewal failed for (recertify.py)
        self.node = None
        self.members = None
        self.ready = trio.Event()
        self.map_changed = trio.Event()
        self.counters = {"certs_seen": 0, "certs_rejected": 0, "slivers_refused": 0, "store_requests": 0,
                         "uncertified_deleted": 0, "certs_gossiped": 0, "certs_gossip_suppressed": 0}
        self.peer_limits = rpc.PeerLimits()  # per-peer caps on open streams and buffered bytes
        self.extra_services = []  # callables(node, nursery) started with the node (metrics, ...)
        self.host_overrides: dict = {}  # HostTimings fields, e.g. fewer connections in-process
        self.liveness_overrides: dict = {}  # LivenessConfig fields, e.g. fewer heartbeat links in-process
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
        self.membership_batches = 0  # batches of membership changes taken (each: one map, one upkeep)
        self.status_writer = StatusWriter(self)  # node.json, at most once a second while changes come
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

    def max_epochs_ahead(self) -> int:
        """The network file's bound, or the decided epoch state's ``max_epochs_ahead`` parameter
        when epochs run on this node (a parameter change a quorum proposed)."""
        state = getattr(getattr(getattr(self, "epochs", None), "service", None), "current", None)
        if state is not None:
            return state.parameter("max_epochs_ahead", self.net.max_epochs_ahead)
        return self.net.max_epochs_ahead

    def my_shards(self) -> tuple[int, ...]:
        return self.shard_map.shards_of(self.peer_id) if self.shard_map else ()

    def is_invalid(self, blob_id: bytes) -> bool:
        return self.invalid.is_invalid(blob_id)

    def write_status(self) -> None:
        """node.json follows a change: at once, or at the end of the current second (status.py)."""
        self.status_writer.request()

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

    def held_pairs(self, blob_id: bytes) -> list[int]:
        """Shards of this blob for which both slivers are stored here."""
        return sorted(s for s, kinds in self.store.shards_stored(blob_id).items() if len(kinds) == 2)

    async def gossip_certificate(self, raw: bytes) -> None:
        await self.certificates.gossip(raw)

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

    async def pull_certificates_from(self, peer_id: str) -> int:
        """Anti-entropy from one peer (cert_registry.py)."""
        return await self.certificates.pull_from(peer_id)

    def uncertified_expired(self, now: float | None = None) -> list[bytes]:
        return self.expiry.uncertified_expired(now)

    async def _membership_loop(self, changes) -> None:
        self._recompute_map()
        async for change in changes:
            batch = [change]
            while True:  # the changes queued meanwhile: one map and one upkeep round for them all
                try:
                    batch.append(changes.receive_nowait())
                except trio.WouldBlock:
                    break
            for change in batch:
                kind = change.kind.name.lower()
                if kind != "updated":
                    logger.info("peer %s %s (%d live)", change.peer_id, kind, len(self.members.live))
            self.membership_batches += 1
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
        lcfg = LivenessConfig(**{"interval": t.heartbeat_interval, "dead_after": t.heartbeat_timeout,
                                 "reopen_timeout": max(4.0, t.heartbeat_timeout / 4), **self.liveness_overrides})
        async with open_host(self.keypair, self.listen, list(self.net.bootstrap), timings=host_timings) as node:
            self.node = node
            handlers = self.handlers.table()
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
                        if members.validate_bytes(msg.data).peer_id in self.deny:
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
                    nursery.start_soon(self.certificates.run_pushed_gossip)
                    nursery.start_soon(self.repair.run)
                    nursery.start_soon(self.repair.challenge_loop)
                    nursery.start_soon(self.fault_injection.run)
                    nursery.start_soon(self.liveness.run)
                    nursery.start_soon(self.expiry.run)
                    nursery.start_soon(self.status_writer.run)
                    for start in self.extra_services:
                        start(self, nursery)
                    self._recompute_map()
                    self.ready.set()
                    task_status.started(self)
                    await trio.sleep_forever()




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
