"""The node's side of the WAL ledger: FastPay authority over libp2p streams.

Stream protocols (a JSON request, a JSON answer; every size bounded before it is read):

- ``ledger-sign``: a signed order in, this node's vote out, or why not (FastPay's rules,
  ``core/wal/ledger.py``). The pending order is on disk before the vote leaves.
- ``ledger-confirm``: a certificate in; applied once checked against the committee of its
  epoch and written to disk. One ahead of the sender's sequence makes this node pull
  the missing ones from its peers first.
- ``ledger-account``: an account's balance, next sequence, pending order and stakes.
- ``ledger-certs``: certificates by (sender, sequences), or the (sender, sequence) of the
  transfers an account received: how a node pulls what it missed, and a wallet's history.
- ``ledger-summary``: every account's next sequence (or "same" when the asker's digest
  matches): anti-entropy, pulled at start, when the shard map changes (a peer came back,
  a partition healed) and every ``repair_interval`` as a backstop.

Fault injection: a node whose ``faults`` hold ``ledger_sign_everything`` votes for any
order it is shown (the Byzantine signer of the tests).

Anti-entropy (``ledger-certs``, ``ledger-summary``, pulls) is in node/ledger_sync.py; the
ledger's part in epochs, prices and payments in node/ledger_economy.py.
"""

from __future__ import annotations

import logging

import trio

from ..core.wal import messages as msg
from ..core.wal.committee import Committee, committee_from_genesis, committee_from_state
from ..core.wal.ledger import Applied, Missing, Refusal, RefusalCode
from ..core.wal.orders import Certificate, OrderKind, SignedOrder, sign_vote
from ..errors import ProtocolError
from ..p2p import rpc
from .ledger_store import LedgerStore
from ..core import protocols
from .ledger_economy import PAYMENT_CONFIRM_TIMEOUT, PRICE_CHANGE_GRACE, _LedgerEpochs  # noqa: F401
from .ledger_sync import (  # noqa: F401  (re-exported)
    CATCH_UP_IN_REQUEST, CATCH_UP_TIMEOUT, CERT_PAGE, CERT_PAGE_BYTES, MAX_RECEIVED,
    MAX_SUMMARY_ACCOUNTS, SYNC_PEERS, _LedgerSync, _stored_certificate,
)

logger = logging.getLogger("p2pwalrus.ledger")


MAX_REQUEST = 256 << 10  # a certificate with a thousand votes is about 200 KiB of JSON
BYZANTINE_FAULT = "ledger_sign_everything"


class LedgerService(_LedgerEpochs, _LedgerSync):
    def __init__(self, node, genesis):
        self.node = node
        self.genesis = genesis
        self.genesis_hash = genesis.hash()
        self._genesis_committee: Committee = committee_from_genesis(genesis)
        self._committees: dict[int, Committee] = {}  # epoch -> committee of its decided state
        self.store = LedgerStore(node.data_dir / "ledger", genesis)
        self.received: dict[str, list[tuple[str, int]]] = {}  # recipient -> transfers (sender, sequence)
        self.lock = trio.Lock()  # one change of the ledger at a time, each on disk before the next
        self.sync_wanted = trio.Event()
        self.sync_wanted.set()  # a first pull as soon as the node runs
        self.changed = trio.Event()  # set (and replaced) after every applied certificate: tests wait on it
        self.counters = {"votes": 0, "refusals": 0, "applied": 0, "pulled": 0, "payments_checked": 0,
                         "payments_refused": 0}
        self._prices = [(genesis.storage_price, genesis.write_price)]  # [previous,] current
        self._prices_changed_at = -PRICE_CHANGE_GRACE
        self._held_view = None  # vote_service.ChallengeView, made on first use (economics)
        self.ledger, certs, replayed = self.store.load(self.committee_for)
        for cert in certs:
            self._index(cert)
        if replayed:
            logger.info("ledger: %d certificate(s) on disk applied after a restart", replayed)

    @classmethod
    def open(cls, node) -> "LedgerService | None":
        """The node's ledger, or None on a network whose file has no genesis."""
        genesis = node.net.genesis
        return cls(node, genesis) if genesis is not None else None

    # --- start-up ---

    def start(self, node, nursery) -> None:
        """Register the stream handlers and start anti-entropy (StorageNode.extra_services)."""
        for proto, handler in self.handlers().items():
            node.node.host.set_stream_handler(
                proto, rpc.serve(handler, 60.0, proto.split("/")[2], node.gate, node.peer_limits))
        nursery.start_soon(self.run_sync)
        nursery.start_soon(self.run_rewards)

    def handlers(self) -> dict:
        return {protocols.LEDGER_SIGN: self.handle_sign, protocols.LEDGER_CONFIRM: self.handle_confirm,
                protocols.LEDGER_ACCOUNT: self.handle_account, protocols.LEDGER_CERTS: self.handle_certs,
                protocols.LEDGER_SUMMARY: self.handle_summary}

    @property
    def epochs(self):
        return getattr(self.node, "epochs", None)

    @property
    def committee(self) -> Committee:
        """The committee of the current decided epoch, weighted by the shards it holds then."""
        epochs = self.epochs
        if epochs is None:
            return self._genesis_committee  # a node without epochs (none on a network with a genesis)
        return self.committee_for(epochs.current.epoch)

    def committee_for(self, epoch: int) -> Committee | None:
        """The committee of ``epoch`` as this node knows it from the decided chain (None: not known here)."""
        epochs = self.epochs
        if epochs is None:
            return self._genesis_committee if epoch == 0 else None
        committee = self._committees.get(epoch)
        if committee is None:
            state = epochs.state_for(epoch)
            if state is None:
                return None
            committee = self._committees[epoch] = committee_from_state(state)
        return committee

    def status(self) -> dict:
        storage, write = self.prices_now()
        return {"supply": self.ledger.supply, "total": self.ledger.total(), "accounts": len(self.ledger.accounts),
                "funds": sum(self.ledger.funds.values()), "rewards_paid": self.ledger.rewards_paid,
                "rewarded_epoch": self.ledger.rewarded_epoch,
                "storage_price": storage, "write_price": write, **self.counters}

    # --- changes, each durable before it is answered ---

    async def _persist(self) -> None:
        data = self.store.state_bytes(self.ledger)
        await trio.to_thread.run_sync(self.store.save_state, data)

    def _index(self, cert: Certificate) -> None:
        order = cert.order
        if order.kind is OrderKind.TRANSFER:
            refs = self.received.setdefault(order.recipient, [])
            if (order.sender, order.sequence) not in refs[-8:]:
                refs.append((order.sender, order.sequence))

    async def _apply_locked(self, cert: Certificate, committee: Committee) -> Applied | Missing:
        acct = self.ledger.account(cert.order.sender)
        if cert.order.sequence == (acct.next_sequence if acct else 0):
            await trio.to_thread.run_sync(self.store.put_certificate, cert)  # first: replayed after a crash
            result = self.ledger.apply(cert, committee)
            await self._persist()
            self._index(cert)
            self.counters["applied"] += 1
            self.node.write_status()  # node.json: netlab status shows WAL held against the supply
            done, self.changed = self.changed, trio.Event()
            done.set()
            epochs = self.epochs
            if epochs is not None and epochs.service is not None:
                epochs.service.forget_validity()  # stakes may have changed: judge proposals again
            return result
        return self.ledger.apply(cert, committee)  # applied before, or ahead: no change

    async def confirm(self, cert: Certificate, *, pull: bool = True) -> Applied | Missing:
        """Check and apply a certificate; pull the sender's missing ones first if it is ahead."""
        committee = self.committee_for(cert.order.epoch)
        if committee is None:
            raise ProtocolError(f"no committee is known here for epoch {cert.order.epoch}")
        if cert.order.genesis != self.genesis_hash:
            raise ProtocolError("the certificate is for another network (genesis hash differs)")
        cert.check(committee)
        async with self.lock:
            result = await self._apply_locked(cert, committee)
        if isinstance(result, Missing) and pull:
            await self.catch_up(result.sender, result.first, result.last)
            async with self.lock:
                result = await self._apply_locked(cert, committee)
        return result

    # --- handlers ---

    async def handle_sign(self, stream, peer: str) -> None:
        signed = msg.SignRequest.from_json(await rpc.recv_json(stream, MAX_REQUEST)).signed  # refused at serve()
        order = signed.order
        if BYZANTINE_FAULT in self.node.faults:
            await self._send_vote(stream, signed)
            return
        committee = self.committee
        acct = self.ledger.account(order.sender)
        again = acct is not None and acct.pending is not None and acct.pending.order == order
        if ((order.epoch == committee.epoch - 1 or again) and order.epoch != committee.epoch
                and (prev := self.committee_for(order.epoch)) is not None):
            # An order signed just before an epoch change: voted for with the weights of its own
            # epoch, so a wallet that got some votes before the change can finish it after; and
            # the identical order this node voted for, whenever asked again (FastPay's rule).
            committee = prev
        if not committee.weight(self.node.peer_id):  # a node that joined later keeps a replica, no vote
            await rpc.send_json(stream, msg.Refused.because(
                f"{self.node.peer_id} holds no shards in the committee of epoch {committee.epoch}: it does not vote",
                "not_a_member").to_json())
            return
        refusal = None
        for attempt in range(2):
            async with self.lock:
                try:
                    if self.ledger.handle_order(signed, committee, candidates=self._candidates()):
                        await self._persist()  # the pending order is on disk before the vote leaves
                    refusal = None
                except Refusal as exc:
                    refusal = exc
            if refusal is not None and refusal.code is RefusalCode.SEQUENCE_AHEAD and attempt == 0:
                await self.catch_up(order.sender, refusal.details["next_sequence"], order.sequence - 1)
                continue
            break
        if refusal is not None:
            self.counters["refusals"] += 1
            await rpc.send_json(stream, msg.Refused.from_refusal(refusal).to_json())
            return
        await self._send_vote(stream, signed)

    def _candidates(self) -> set[str]:
        """Nodes one may stake with besides the committee: storage nodes live now (a node
        staked in joins the committee at the next epoch change)."""
        members = self.node.members
        return set(members.live.peer_ids()) | {self.node.peer_id} if members is not None else {self.node.peer_id}

    async def _send_vote(self, stream, signed: SignedOrder) -> None:
        vote = sign_vote(self.node.keypair, self.node.peer_id, signed.order)
        self.counters["votes"] += 1
        await rpc.send_json(stream, msg.SignReply(vote).to_json())

    async def handle_confirm(self, stream, peer: str) -> None:
        cert = msg.ConfirmRequest.from_json(await rpc.recv_json(stream, MAX_REQUEST)).certificate
        result = await self.confirm(cert)
        acct = self.ledger.account(cert.order.sender)
        if isinstance(result, Missing):
            await rpc.send_json(stream, msg.Refused.because(
                f"certificates {result.first}..{result.last} of {result.sender} are missing here and no peer gave "
                "them", "missing", first=result.first, last=result.last).to_json())
            return
        await rpc.send_json(stream, msg.ConfirmReply(result.new, acct.next_sequence if acct else 0).to_json())

    async def handle_account(self, stream, peer: str) -> None:
        address = msg.AccountRequest.from_json(await rpc.recv_json(stream)).address
        acct = self.ledger.account(address)
        await rpc.send_json(stream, msg.AccountReply(
            authority=self.node.peer_id, epoch=self.committee.epoch, genesis=self.genesis_hash,
            known=acct is not None, balance=acct.balance if acct else 0,
            next_sequence=acct.next_sequence if acct else 0, pending=acct.pending if acct else None,
            stakes=tuple(self.ledger.stakes_of(address).items()), staked_with=self.ledger.stake_with(address),
            prices=self.prices_now()).to_json())
