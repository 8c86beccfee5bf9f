"""The client: a libp2p peer that stores nothing, talks to the holders of each shard directly.

It pulls the membership from a bootstrap node over a stream (no waiting for gossip),
computes the shard map, and stores or reads blobs. Used by the CLI and the gateway.
"""

from __future__ import annotations

import logging
import os
import random
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

import multiaddr
import trio

from .. import p2p as _p2p  # noqa: F401  (first: loads libp2p lean, see p2p/patches/lean_import.py)
from libp2p.peer.id import ID  # noqa: E402
from libp2p.peer.peerinfo import PeerInfo  # noqa: E402

from ..config import NetworkConfig
from ..core import rs2
from ..core.blob_id import blob_id_to_str
from ..core.certificates import (
    AvailabilityCertificate,
    InvalidCertificateError,
    StorageConfirmation,
    one_honest,
    quorum,
    relabel_reason,
    validate_certificate,
    verify_confirmation,
)
from .encoding import BackgroundEncoding
from ..core.placement import ShardMap, check_no_single_node_can_decode, compute_shard_map
from ..core.records import InvalidRecordError, SignedNodeRecord
from ..errors import (
    BlobNotFoundError,
    InconsistentBlobError,
    NetworkConfigError,
    NotEnoughShardsError,
    P2PWalrusError,
    ProtocolError,
    VerificationError,
)
from ..p2p import rpc
from ..p2p.framing import read_frame, write_frame
from ..p2p.host import build_host, open_stream, parse_peer_addr
from ..core.records import MAX_RECORD_SIZE
from ..core import messages as wire
from ..core import protocols

logger = logging.getLogger("p2pwalrus.client")

DIAL_TIMEOUT = 5.0
CALL_TIMEOUT = 10.0
UPLOAD_TIMEOUT = 120.0
QUORUM_GRACE = 2.0  # after the quorum, late uploads get this long before they are cut
STORE_RETRY_PAUSE = 2.0  # a store short of its quorum asks for the live set again this often
CERT_PUSH_PAUSE = 1.0  # nodes that refused a certificate (they do not know a signer yet) get it again
CERT_PUSH_TIMEOUT = 20.0  # ... until this long after the first push
QUOTE_TIMEOUT = 3.0  # prices and balance on a network free at genesis (see Client.quote)
# A read asks a recovery row in place of a systematic one still outstanding this long after
# it was asked: READ_HEDGE_FACTOR times what the first half of the rows took, at least
# READ_HEDGE_MIN seconds (a hung holder otherwise holds the read for the 60 s sliver timeout).
READ_HEDGE_MIN = 2.0
READ_HEDGE_FACTOR = 3.0
READ_HEDGE_TICK = 0.25


class BlobInvalidError(P2PWalrusError):
    """The network marked this blob invalid (it was encoded inconsistently)."""


class BlobExpiredError(P2PWalrusError):
    """The blob's storage period is over."""


class Progress:
    """What the CLI's progress bars implement; the default does nothing."""

    def start(self, description: str, total: int) -> None: ...

    def advance(self, amount: int) -> None: ...

    def done(self) -> None: ...

    def certifying(self, blob_id: bytes) -> None:
        """The certificate is built and about to be published (a store is past undoing)."""

    def paying(self, quote) -> None:
        """A store or extension is about to be paid for (``payments.Quote``: the cost, the balance)."""


@dataclass
class StoreResult:
    blob_id: bytes
    size: int
    already_certified: bool
    certificate: AvailabilityCertificate
    shards_confirmed: int
    nodes_failed: dict[str, str]
    encode_seconds: float = 0.0
    upload_seconds: float = 0.0
    # Summed over the nodes whose confirmations made the certificate, as they report them.
    node_verify_seconds: float = 0.0
    node_write_seconds: float = 0.0
    # Of encode_seconds, how long the store waited for the encoding once it was connected
    # (the rest ran while the process started and dialled).
    encode_waited: float = 0.0
    cost: int = 0  # FROST paid for this store (0 at price 0, or when a journaled payment covered it)

    def to_walrus_json(self, epochs_ahead: int | None = None) -> dict:
        cert = self.certificate
        bid = blob_id_to_str(self.blob_id)
        if self.already_certified:
            return {"alreadyCertified": {"blobId": bid, "endEpoch": cert.end_epoch}}
        encoded = rs2.EncodingConfig(cert.n_shards).encoded_length(self.size)
        return {"newlyCreated": {"blobObject": {
            "blobId": bid,
            "size": self.size,
            "encodingType": "RS2",
            "certifiedEpoch": cert.epoch,
            "deletable": cert.deletable,
            "storage": {"startEpoch": cert.epoch, "endEpoch": cert.end_epoch, "storageSize": encoded},
        }, "cost": self.cost}}


class Client:
    def __init__(self, net: NetworkConfig, host, keypair, *, epoch_cache=None):
        self.net = net
        self.host = host
        self.keypair = keypair
        self._proven_invalid: set[bytes] = set()  # blobs whose inconsistency proof verified here
        self._unproven: set[tuple[bytes, str]] = set()  # (blob, peer) claims of invalidity without a proof
        self.records: dict[str, SignedNodeRecord] = {}
        self.shard_map: ShardMap | None = None
        # Pays for stores from this client's key (payments.StorePayer), on a network with a ledger;
        # its journal under payer_journal (default: P2PWALRUS_CLIENT_DIR/wallet).
        self.payer = None
        self.payer_journal = None
        self.on_pay = None  # called with the Quote just before a store or extension pays (the CLI prints it)
        # Every member this client has seen in a pulled live set, not only the last one.
        self.known_peers: set[str] = set()
        # Shard maps of the live sets other bootstrap peers gave (learn_members): certificates
        # are judged by our own map first, then by these honest views (certificates.py).
        self.other_views: list[ShardMap] = []
        self.past_views: list[ShardMap] = []  # maps this client held before (a long-lived gateway)
        # peer -> {"verify": s, "write": s} its last store reply reported (StoreResult sums them)
        self.node_timing: dict[str, dict] = {}
        # A network with a genesis: shards are held as the decided epoch state says (client/epochs.py).
        self.epochs = None
        if net.genesis is not None:
            from .epochs import EpochView

            self.epochs = EpochView(net.genesis, epoch_cache)

    @property
    def peer_id(self) -> str:
        return str(self.host.get_id())

    # --- membership --------------------------------------------------------------

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

    # --- calls -----------------------------------------------------------------

    async def new_stream(self, peer_id: str, protocol):
        """A stream to a node; if its connection went away, dial once more and retry."""
        return await open_stream(self.host, ID.from_base58(peer_id), [protocol], DIAL_TIMEOUT)

    async def _open(self, peer_id: str, protocol, header: dict, timeout: float = CALL_TIMEOUT):
        with trio.fail_after(timeout):
            stream = await self.new_stream(peer_id, protocol)
            try:
                await rpc.send_json(stream, header)
            except BaseException:
                await rpc.close_quietly(stream, reset=True)
                raise
            return stream

    async def call(self, peer_id: str, protocol, header: dict, *, max_reply: int = rpc.MAX_LIST_REPLY,
                   timeout: float = CALL_TIMEOUT) -> dict:
        """One JSON header, one JSON reply (the transport under `request`; the WAL exchanges use it as is)."""
        stream = await self._open(peer_id, protocol, header, timeout)
        try:
            with trio.fail_after(timeout):
                return await rpc.recv_json(stream, max_reply)
        finally:
            await rpc.close_quietly(stream)

    async def call_with_blob(self, peer_id: str, protocol, header: dict, max_size: int,
                             timeout: float = CALL_TIMEOUT) -> tuple[dict, bytes | None]:
        stream = await self._open(peer_id, protocol, header, timeout)
        try:
            with trio.fail_after(timeout):
                reply = await rpc.recv_json(stream)
                if not reply.get("ok"):
                    return reply, None
                return reply, await rpc.recv_blob(stream, max_size)
        finally:
            await rpc.close_quietly(stream)

    async def request(self, peer_id: str, request: wire.Request, **kw):
        """A typed exchange (core/messages.py): the request's reply message, parsed and checked
        (ProtocolError naming the field if the node sent a malformed one)."""
        reply = await self.call(peer_id, request.protocol, request.to_json(), **kw)
        return request.reply.from_json(reply, n_shards=self.net.n_shards)

    async def request_with_blob(self, peer_id: str, request: wire.Request, max_size: int,
                                timeout: float = CALL_TIMEOUT):
        """(reply message, the frame that follows an ok reply or None): metadata, slivers, certificates, proofs."""
        reply, raw = await self.call_with_blob(peer_id, request.protocol, request.to_json(), max_size, timeout)
        return request.reply.from_json(reply, n_shards=self.net.n_shards), raw

    async def gather(self, peers, fn, *, limit: int = 16) -> dict[str, object]:
        """Run fn(peer) for each peer in parallel; map peer -> result or exception."""
        results: dict[str, object] = {}
        limiter = trio.CapacityLimiter(limit)

        async def one(peer):
            async with limiter:
                try:
                    results[peer] = await fn(peer)
                except Exception as exc:
                    results[peer] = exc

        async with trio.open_nursery() as nursery:
            for p in peers:
                nursery.start_soon(one, p)
        return results

    # --- certificates ------------------------------------------------------------

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
            return await self.request_with_blob(peer, wire.GetCertRequest(blob_id), 1 << 20)

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

    # --- store -------------------------------------------------------------------

    async def store(self, data, *, epochs: int = 1, deletable: bool = False, force: bool = False,
                    progress: Progress | None = None, length: int | None = None,
                    encoding: BackgroundEncoding | None = None) -> StoreResult:
        """Encode and store a blob; `data` may be a padded buffer (rs2.blob_buffer) with `length`.

        `encoding`: the same blob's encoding, already started (`BackgroundEncoding`, as the CLI
        starts it before it loads the network stack); otherwise it starts here, in a worker
        thread. Either way the live nodes are dialled while it runs: the upload starts the
        moment the blob ID (hence the placement of every sliver pair) is known.
        """
        progress = progress or Progress()
        if epochs < 1 or epochs > self.net.max_epochs_ahead:
            raise P2PWalrusError(f"epochs must be between 1 and {self.net.max_epochs_ahead}")
        n = self.net.n_shards
        size = len(data) if length is None else length
        rs2.EncodingConfig(n).symbol_size(size)  # refuse an oversized blob before any work
        if encoding is None:
            encoding = BackgroundEncoding(data, n, length)
        shard_map = self.shard_map or await self.refresh_membership()
        check_no_single_node_can_decode(shard_map)
        try:
            async with trio.open_nursery() as nursery:
                # The connections are ready when the slivers are. A dial to a dead node is not
                # waited for (the upload reports that node); whatever still dials is cut at the end.
                nursery.start_soon(self.dial_all)
                enc = await encoding.wait()
                result = await self.store_encoded(enc, epochs=epochs, deletable=deletable, force=force,
                                                  progress=progress, encode_seconds=encoding.seconds,
                                                  encode_waited=encoding.waited)
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # dial_all raises nothing (gather keeps each dial's error): the store's own error
            # is the one to give the caller, as it is, not wrapped in a group.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        return result

    def store_payer(self):
        """The payer of this client's stores, or None on a network without a ledger."""
        if self.net.genesis is None:
            return None
        if self.payer is None:
            from .payments import StorePayer

            self.payer = StorePayer(self, self.keypair, self.payer_journal)
        return self.payer

    async def quote(self, length: int, epochs: int, *, write: bool = True):
        """What storing ``length`` bytes for ``epochs`` costs now, and this client's balance
        (``payments.Quote``); None on a network without a ledger, or if no quorum of the
        committee answers on a network whose genesis prices are 0 (free to store)."""
        from .wallet import WalletError

        payer = self.store_payer()
        if payer is None:
            return None
        g = self.net.genesis
        free_at_genesis = not (g.storage_price or g.write_price)
        try:
            # On a network free at genesis, a committee that does not answer quickly does not hold
            # up a store (nodes refuse one that should have paid, saying so).
            return await payer.quote(length, epochs, write=write, timeout=QUOTE_TIMEOUT if free_at_genesis else None)
        except WalletError:
            if free_at_genesis:
                return None
            raise

    async def require_funds_for_file(self, size: int, chunk_size: int | None, epochs: int) -> int:
        """The FROST a file of ``size`` bytes costs as chunks and a manifest (at most: chunks
        certified already are not paid again); InsufficientFundsError, before anything is
        uploaded, if this client's balance is short of it."""
        from ..core.wal.amounts import format_amount
        from .payments import InsufficientFundsError, file_cost

        quote = await self.quote(0, epochs)
        if quote is None or not (quote.cost.storage_price or quote.cost.write_price):
            return 0
        total, blobs = file_cost(quote.cost.storage_price, quote.cost.write_price, size, self.net.n_shards, epochs,
                                 chunk_size)
        if total > quote.balance:
            raise InsufficientFundsError(
                f"storing {size} bytes ({blobs} blobs: chunks and their manifest) for {epochs} epoch(s) costs "
                f"{format_amount(total)}; {quote.address} has {format_amount(quote.balance)}: nothing was uploaded. "
                f"Fund this account first (on a netlab testnet: netlab faucet {quote.address} 10WAL)",
                total, quote.balance)
        return total

    async def _pay(self, length: int, blob_id: bytes, start: int, end: int, what: str, progress: Progress,
                   *, write: bool = True) -> tuple[dict | None, int]:
        """(payment certificate as JSON or None, FROST paid) for a store or an extension; refused
        with the cost and the balance (InsufficientFundsError) before anything is uploaded."""
        quote = await self.quote(length, end - start, write=write)
        if quote is None or not quote.cost.total:
            return None, 0
        self.payer.refuse_if_short(quote, what)
        progress.paying(quote)
        if self.on_pay is not None:
            self.on_pay(quote)
        cert, paid = await self.payer.pay(quote, blob_id, start, end, what)
        return cert.to_json(), paid

    async def dial_all(self) -> None:
        """Connect to every live node now (bounded by DIAL_TIMEOUT each; failures are left to the
        calls that follow, which dial again and report them)."""
        async def dial(peer: str) -> None:
            with trio.move_on_after(DIAL_TIMEOUT):
                await self.host.connect(PeerInfo(ID.from_base58(peer), self.host.get_peerstore().addrs(
                    ID.from_base58(peer))))

        await self.gather(self.live_peers(), dial)

    async def store_encoded(self, enc: rs2.EncodedBlob, *, epochs: int = 1, deletable: bool = False,
                            force: bool = False, progress: Progress | None = None,
                            encode_seconds: float = 0.0, encode_waited: float | None = None) -> StoreResult:
        """Upload an encoded blob and certify it (tests pass deliberately inconsistent ones)."""
        progress = progress or Progress()
        n = self.net.n_shards
        shard_map = self.shard_map or await self.refresh_membership()
        check_no_single_node_can_decode(shard_map)
        blob_id = enc.blob_id
        data_len = enc.metadata.unencoded_length
        epoch = self.net.current_epoch()
        end_epoch = epoch + epochs
        encode_waited = encode_seconds if encode_waited is None else encode_waited
        t_found = time.perf_counter()
        cert, invalid = await self.find_certificate(blob_id)
        if not force and cert is not None and cert.end_epoch >= end_epoch and not invalid:
            return StoreResult(blob_id, data_len, True, cert, len(cert.shards_confirmed), {}, encode_seconds,
                               encode_waited=encode_waited)
        if cert is not None and not invalid:
            # Nodes refuse to sign other labels than the certificate they hold has (issue 13).
            why = relabel_reason(cert, AvailabilityCertificate(
                self.net.name, blob_id, n, epoch, end_epoch, (), (), deletable=deletable, owner=self.peer_id))
            if why:
                kind = f"deletable by the key {cert.owner}" if cert.deletable else "permanent"
                raise P2PWalrusError(f"this blob is already certified as {kind} and cannot be stored again "
                                     f"{'as deletable' if deletable else 'as permanent'} ({why})")
        t_found = time.perf_counter() - t_found
        payment, paid = await self._pay(data_len, blob_id, epoch, end_epoch,
                                        f"storing {data_len} bytes for {epochs} epoch(s)", progress)
        need = quorum(n)
        confirmations: dict[str, StorageConfirmation] = {}
        failures: dict[str, str] = {}
        upload_seconds = 0.0
        give_up_at = None
        while True:
            # Confirmations from earlier rounds count while their signer still holds those
            # shards; a node whose shards are not all confirmed gets all of them again.
            owned = {node: set(shard_map.shards_of(node)) for node in shard_map.nodes}
            confirmations = {p: c for p, c in confirmations.items() if set(c.shards) <= owned.get(p, set())}
            if len(_covered(confirmations)) < need:
                plan = {
                    node: [rs2.pair_for_shard(s, blob_id, n) for s in shard_map.shards_of(node)]
                    for node, shards in owned.items()
                    if shards and (node not in confirmations or set(confirmations[node].shards) != shards)
                }
                t1 = time.perf_counter()
                got, failures = await self._upload_round(enc, shard_map, plan, epoch, end_epoch, deletable,
                                                         need, confirmations, progress, payment)
                upload_seconds += time.perf_counter() - t1
                confirmations.update(got)
            covered = _covered(confirmations)
            if len(covered) >= need:
                break
            # The live set is changing (a node died and its record has not expired yet, or
            # nodes disagree on a newcomer): ask again until a dead node has left every live
            # set, which takes up to heartbeat_timeout.
            now = trio.current_time()
            give_up_at = give_up_at or now + self.net.timings.heartbeat_timeout + 4 * STORE_RETRY_PAUSE
            if now >= give_up_at:
                detail = "; ".join(f"{p[:16]}…: {e}" for p, e in list(failures.items())[:5])
                raise NotEnoughShardsError(
                    f"only {len(covered)} of {n} shards confirmed, {need} needed for a certificate ({detail})"
                )
            logger.info("%d of %d shards confirmed (%d needed); the live set is changing, asking again in %.0f s",
                        len(covered), n, need, STORE_RETRY_PAUSE)
            await trio.sleep(STORE_RETRY_PAUSE)
            shard_map = await self.refresh_membership()
            check_no_single_node_can_decode(shard_map)
        members = tuple(shard_map.nodes)
        cert = AvailabilityCertificate(
            network=self.net.name, blob_id=blob_id, n_shards=n, epoch=epoch, end_epoch=end_epoch,
            members=members, confirmations=tuple(confirmations[k] for k in sorted(confirmations)),
            deletable=deletable, owner=self.peer_id,
        )
        await trio.to_thread.run_sync(self._validate, cert)  # off the loop: a gateway serves on it
        progress.certifying(blob_id)
        # Return only once any reader finds the certificate (read-after-write).
        t_publish = time.perf_counter()
        await self.publish_certificate(cert)
        logger.info("stored %s: certificate lookup %.3f s, upload %.3f s, certificate push %.3f s",
                    blob_id_to_str(blob_id), t_found, upload_seconds, time.perf_counter() - t_publish)

        def node_seconds(key: str) -> float:
            return sum(float(self.node_timing.get(p, {}).get(key, 0.0)) for p in confirmations)

        return StoreResult(blob_id, data_len, False, cert, len(covered), failures, encode_seconds, upload_seconds,
                           node_seconds("verify"), node_seconds("write"), encode_waited, paid)

    async def _upload_round(self, enc: rs2.EncodedBlob, shard_map: ShardMap, plan: dict[str, list[int]],
                            epoch: int, end_epoch: int, deletable: bool, need: int,
                            kept: dict[str, StorageConfirmation], progress: Progress, payment: dict | None = None
                            ) -> tuple[dict[str, StorageConfirmation], dict[str, str]]:
        """Send each planned node its metadata and sliver pairs, all nodes in parallel; return the
        verified confirmations and each failure. Ends when all have answered or, once the
        confirmed shards (with `kept`) reach `need`, after a grace for the stragglers."""
        blob_id = enc.blob_id
        meta_bytes = enc.metadata.to_bytes()
        total_bytes = sum(
            len(pairs) * (enc.primary_row(0).nbytes + enc.secondary_column(0).nbytes) for pairs in plan.values()
        )
        progress.start("storing", total_bytes)
        confirmations: dict[str, StorageConfirmation] = {}
        failures: dict[str, str] = {}
        node_timing = self.node_timing
        covered = _covered(kept)
        reached = trio.Event()

        async def upload(node: str, pairs: list[int]) -> None:
            try:
                with trio.fail_after(UPLOAD_TIMEOUT):
                    stream = await self.new_stream(node, protocols.STORE)
                    try:
                        header = wire.StoreRequest(blob_id, epoch, end_epoch, tuple(pairs), deletable, self.peer_id,
                                                  payment)
                        await rpc.send_json(stream, header.to_json())
                        await write_frame(stream, meta_bytes)
                        for pair in pairs:
                            prim = enc.primary_sliver(pair)
                            sec = enc.secondary_sliver(pair)
                            await write_frame(stream, prim)
                            await write_frame(stream, sec)
                            progress.advance(len(prim) + len(sec))
                        reply = wire.StoreReply.from_json(await rpc.recv_json(stream), n_shards=self.net.n_shards)
                    finally:
                        await rpc.close_quietly(stream)
            except Exception as exc:  # (a malformed reply too: a ProtocolError naming the field)
                failures[node] = repr(exc)
                return
            if not reply.ok:
                failures[node] = reply.error
                return
            conf = reply.confirmation
            owned = set(shard_map.shards_of(node))
            if conf.peer_id != node or not set(conf.shards) <= owned or not verify_confirmation(
                conf, self.net.name, blob_id, epoch, end_epoch, deletable=deletable, owner=self.peer_id
            ):
                failures[node] = "confirmation does not verify"
                return
            if reply.refused:
                failures[node] = f"refused pairs: {reply.refused}"
            if conf.shards:
                confirmations[node] = conf
                covered.update(conf.shards)
                if reply.timing is not None:
                    node_timing[node] = reply.timing
            if len(covered) >= need:
                reached.set()

        all_done = trio.Event()
        finished = 0

        async def upload_and_count(node: str, pairs: list[int]) -> None:
            nonlocal finished
            await upload(node, pairs)
            finished += 1
            if finished == len(plan):
                all_done.set()

        async with trio.open_nursery() as nursery:
            for node, pairs in plan.items():
                nursery.start_soon(upload_and_count, node, pairs)

            async def stop_after_all_done():
                await all_done.wait()
                nursery.cancel_scope.cancel()

            async def stop_after_quorum_grace():
                await reached.wait()  # late confirmations are not awaited beyond a grace
                await trio.sleep(QUORUM_GRACE)
                nursery.cancel_scope.cancel()

            if plan:
                nursery.start_soon(stop_after_all_done)
                nursery.start_soon(stop_after_quorum_grace)
        progress.done()
        return confirmations, failures

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

    # --- read --------------------------------------------------------------------

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

    async def metadata(self, blob_id: bytes) -> rs2.BlobMetadata:
        n = self.net.n_shards
        holders = [self.shard_map.owner(s) for s in range(n)]
        peers = list(dict.fromkeys(holders))
        random.shuffle(peers)
        for peer in peers:
            try:
                reply, raw = await self.request_with_blob(peer, wire.GetMetadataRequest(blob_id), rs2.metadata_size(n))
            except Exception as exc:
                logger.debug("metadata from %s failed: %r", peer, exc)
                continue
            if reply.invalid and await self.proven_invalid(blob_id, peer):
                raise BlobInvalidError(f"blob {blob_id_to_str(blob_id)} is invalid")
            if raw is None:
                continue
            try:
                meta = rs2.BlobMetadata.from_bytes(raw)
                meta.verify_blob_id(blob_id)
                return meta
            except (ProtocolError, VerificationError) as exc:
                logger.warning("metadata from %s rejected: %s", peer, exc)
        raise NotEnoughShardsError("no holder returned valid metadata for this blob")

    async def _certified_metadata(self, blob_id: bytes) -> rs2.BlobMetadata:
        """`certified` and `metadata` at once (the metadata is checked against the blob ID, so it
        needs no certificate to be trusted): one round trip instead of two. A failure of the
        certificate lookup (not found, invalid, expired) wins over the metadata's."""
        failed: list[BaseException] = []
        got: list[rs2.BlobMetadata] = []

        async with trio.open_nursery() as nursery:
            async def certificate() -> None:
                try:
                    await self.certified(blob_id)
                except Exception as exc:
                    failed.insert(0, exc)
                    nursery.cancel_scope.cancel()

            async def metadata() -> None:
                try:
                    got.append(await self.metadata(blob_id))
                except Exception as exc:
                    failed.append(exc)

            nursery.start_soon(certificate)
            nursery.start_soon(metadata)
        if failed:
            raise failed[0]
        return got[0]

    async def _fetch_primary(self, meta: rs2.BlobMetadata, blob_id: bytes, pair: int, holder: str,
                             bad: dict[int, str], spent: dict[str, float] | None = None) -> bytes | None:
        """Primary sliver `pair` from `holder`, verified (in a worker thread); None, noted in `bad`, if not.

        The verification's seconds are added to `spent["verify"]`."""
        sliver_len = meta.config.n_secondary * meta.symbol_size
        try:
            reply, raw = await self.request_with_blob(holder, wire.GetSliverRequest(blob_id, pair, rs2.PRIMARY),
                                                      sliver_len, 60.0)
        except Exception as exc:
            bad[pair] = f"{holder[:16]}…: {exc!r}"
            return None
        if raw is None:
            if reply.invalid and await self.proven_invalid(blob_id, holder):
                raise BlobInvalidError(f"blob {blob_id_to_str(blob_id)} is invalid")
            bad[pair] = f"{holder[:16]}…: {reply.error}"
            return None
        t0 = time.perf_counter()
        try:
            await trio.to_thread.run_sync(rs2.verify_primary_sliver, meta, pair, raw)
        except VerificationError as exc:
            logger.warning("primary sliver %d from %s is corrupt: %s", pair, holder, exc)
            bad[pair] = f"{holder[:16]}…: corrupt sliver"
            return None
        finally:
            if spent is not None:
                spent["verify"] = spent.get("verify", 0.0) + time.perf_counter() - t0
        return raw

    async def read(self, blob_id: bytes, *, strict: bool = False, progress: Progress | None = None) -> bytes:
        """The blob (see `read_parts`), as one bytes object."""
        parts = await self.read_parts(blob_id, strict=strict, progress=progress)
        if len(parts) == 1 and isinstance(parts[0], bytes):
            return parts[0]
        return await trio.to_thread.run_sync(b"".join, parts)

    async def read_parts(self, blob_id: bytes, *, strict: bool = False,
                         progress: Progress | None = None) -> list[bytes | memoryview]:
        """The blob as consecutive parts: views of its systematic primary slivers when all of
        them were had (no copy), else one bytes object. Read from its systematic primary
        slivers whenever their holders serve them.

        The R = n - 2f systematic primary slivers (rows 0..R-1) are the blob itself, padded:
        their holders are asked in parallel, and each sliver is verified in a worker thread as
        it arrives. A row that cannot be had or fails verification is replaced by a recovery
        row (R..n-1), holders that failed already asked last; so is a row still outstanding
        long after half of them arrived (READ_HEDGE_*). With every systematic row the blob is
        their concatenation; otherwise only the missing rows are decoded, from any R verified
        primary slivers.
        """
        progress = progress or Progress()
        t_start = time.perf_counter()
        if self.shard_map is None:
            await self.refresh_membership()
        meta = await self._certified_metadata(blob_id)
        t_fetch = time.perf_counter()
        spent: dict[str, float] = {}
        n, cfg = meta.n_shards, meta.config
        need = cfg.n_primary
        holder = {pair: self.shard_map.owner(rs2.shard_for_pair(pair, blob_id, n)) for pair in range(n)}
        good: dict[int, bytes] = {}
        bad: dict[int, str] = {}
        spares = list(range(need, n))  # recovery rows, asked only in place of a systematic one
        failed_holders: set[str] = set()
        waiting: dict[int, float] = {}  # pair -> when it was asked; left out once a spare stands in
        in_flight = 0
        half_time: float | None = None  # how long the first half of the rows took to arrive
        invalid: BlobInvalidError | None = None
        started = trio.current_time()
        progress.start("reading", need * cfg.n_secondary * meta.symbol_size)

        async with trio.open_nursery() as nursery:

            def ask(pair: int) -> None:
                nonlocal in_flight
                in_flight += 1
                waiting[pair] = trio.current_time()
                nursery.start_soon(fetch, pair)

            def ask_spare() -> None:
                if spares:
                    pick = next((p for p in spares if holder[p] not in failed_holders), spares[0])
                    spares.remove(pick)
                    ask(pick)

            async def fetch(pair: int) -> None:
                nonlocal in_flight, half_time, invalid
                try:
                    try:
                        raw = await self._fetch_primary(meta, blob_id, pair, holder[pair], bad, spent)
                    except BlobInvalidError as exc:  # raised below, outside the nursery's exception group
                        invalid = exc
                        nursery.cancel_scope.cancel()
                        return
                    stood_in = waiting.pop(pair, None) is None  # a spare was asked already
                    if raw is None:
                        failed_holders.add(holder[pair])
                        if not stood_in:
                            ask_spare()
                    elif len(good) < need:
                        good[pair] = raw
                        progress.advance(len(raw))
                        if half_time is None and 2 * len(good) >= need:
                            half_time = trio.current_time() - started
                        if len(good) >= need:
                            nursery.cancel_scope.cancel()
                finally:
                    in_flight -= 1
                    if in_flight == 0:  # nothing more can arrive: stop the hedging timer
                        nursery.cancel_scope.cancel()

            async def hedge() -> None:
                while True:
                    await trio.sleep(READ_HEDGE_TICK)
                    if half_time is None:
                        continue
                    late = trio.current_time() - max(READ_HEDGE_MIN, READ_HEDGE_FACTOR * half_time)
                    for pair, asked in list(waiting.items()):
                        if asked < late:
                            logger.info("primary sliver %d from %s is late: asking another", pair, holder[pair])
                            del waiting[pair]
                            ask_spare()

            for pair in range(need):
                ask(pair)
            nursery.start_soon(hedge)
        progress.done()
        if invalid is not None:
            raise invalid
        if len(good) < need:
            raise NotEnoughShardsError(
                f"got {len(good)} valid primary slivers of the {need} needed "
                f"({len(bad)} holders failed or lied)"
            )
        t_decode = time.perf_counter()
        if not strict and all(i in good for i in range(need)):
            parts = rs2.systematic_parts(meta, good)  # the blob itself: nothing to decode or join
        else:
            try:
                parts = [await trio.to_thread.run_sync(lambda: rs2.decode_primary(meta, good, strict=strict))]
            except InconsistentBlobError as exc:
                raise BlobInvalidError(f"blob {blob_id_to_str(blob_id)} is invalid: {exc}") from None
        # Shown by `p2pwalrus -v read` (bench/store_read.py parses it): verify runs in worker
        # threads while slivers arrive, so it is part of fetch, summed over the slivers.
        logger.info("read %d bytes: certificate+metadata %.3f s, fetch %.3f s (verify %.3f s, summed), decode %.3f s",
                    sum(len(p) for p in parts), t_fetch - t_start, t_decode - t_fetch, spent.get("verify", 0.0),
                    time.perf_counter() - t_decode)
        return parts

    # --- status ------------------------------------------------------------------

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


def _covered(confirmations: dict[str, StorageConfirmation]) -> set[int]:
    return {s for conf in confirmations.values() for s in conf.shards}


@asynccontextmanager
async def open_client(net: NetworkConfig, keypair=None, *, epoch_cache=None):
    """A running client host; membership is pulled on first use."""
    if keypair is None:
        from libp2p.crypto.ed25519 import create_new_key_pair

        keypair = create_new_key_pair()
    host = build_host(keypair, [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")])
    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        yield Client(net, host, keypair, epoch_cache=epoch_cache)
