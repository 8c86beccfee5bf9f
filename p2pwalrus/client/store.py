"""Storing a blob: encode, pay (on a network with prices), upload each node its sliver pairs,
gather a quorum of confirmations, and publish the certificate they make."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import trio

from ..core import messages as wire
from ..core import protocols, rs2
from ..core.blob_id import blob_id_to_str
from ..core.certificates import (
    AvailabilityCertificate,
    StorageConfirmation,
    quorum,
    relabel_reason,
    verify_confirmation,
)
from ..core.placement import ShardMap, check_no_single_node_can_decode
from ..core.storage_period import epochs_problem
from ..errors import NotEnoughShardsError, P2PWalrusError
from ..p2p import rpc
from ..p2p.framing import write_frame
from .certs import QUORUM_GRACE
from .common import Progress
from .encoding import BackgroundEncoding

logger = logging.getLogger("p2pwalrus.client")

UPLOAD_TIMEOUT = 120.0
STORE_RETRY_PAUSE = 2.0  # a store short of its quorum asks for the live set again this often
QUOTE_TIMEOUT = 3.0  # prices and balance on a network free at genesis (see Client.quote)


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


class Storing:
    """Store, pay for and certify blobs (part of `Client`)."""

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
        if why := epochs_problem(epochs, self.net.max_epochs_ahead):
            raise P2PWalrusError(why)
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
                            prim = enc.primary_view(pair)  # a row of the encoding, sent without a copy
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


def _covered(confirmations: dict[str, StorageConfirmation]) -> set[int]:
    return {s for conf in confirmations.values() for s in conf.shards}
