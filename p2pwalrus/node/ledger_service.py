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
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time

import trio

from ..core.wal import messages as msg
from ..core.wal.committee import Committee, committee_from_genesis, committee_from_state
from ..core.wal.ledger import Applied, Missing, Refusal, RefusalCode
from ..core.wal.orders import Certificate, OrderKind, SignedOrder, sign_vote
from ..core.wal.payments import PaymentError, check_payment, needs_payment
from ..errors import ProtocolError
from ..p2p import rpc
from .ledger_store import LedgerStore
from ..core import protocols

logger = logging.getLogger("p2pwalrus.ledger")


MAX_REQUEST = 256 << 10  # a certificate with a thousand votes is about 200 KiB of JSON
CERT_PAGE = msg.CERT_PAGE  # certificates per ledger-certs answer (about 3 KiB each at 10 authorities)
CERT_PAGE_BYTES = 2 << 20  # ... and fewer if they are large: answers stay under rpc.MAX_LIST_REPLY
MAX_RECEIVED = msg.MAX_RECEIVED
MAX_SUMMARY_ACCOUNTS = msg.MAX_SUMMARY_ACCOUNTS  # about 3 MiB of summary, under rpc.MAX_LIST_REPLY (paging: later)
CATCH_UP_TIMEOUT = 20.0  # anti-entropy: pulling a sender's missing certificates from peers
CATCH_UP_IN_REQUEST = 5.0  # the same while a client waits for an answer (its call gives up at 10 s)
SYNC_PEERS = 2  # peers asked for their summary per anti-entropy round
BYZANTINE_FAULT = "ledger_sign_everything"
PRICE_CHANGE_GRACE = 120.0  # after a price change, payments at the previous prices still count this long
PAYMENT_CONFIRM_TIMEOUT = 5.0  # applying a store's payment certificate here (it is valid whether or not)


def _stored_certificate(store: LedgerStore, sender: str, seq: int) -> tuple[Certificate, int] | None:
    """A certificate applied here, read back (and parsed) from disk, with its size; None if absent."""
    raw = store.get_certificate(sender, seq)
    if raw is None:
        return None
    try:
        return Certificate.from_json(json.loads(raw)), len(raw)
    except (ValueError, RecursionError, ProtocolError) as exc:  # a damaged file
        logger.warning("ledger: certificate %s/%d on disk is unreadable (%s): not served", sender, seq, exc)
        return None


class LedgerService:
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

    # --- epochs: the stakes this ledger confirmed go into the next epoch's state ---

    def node_stakes(self) -> dict[str, int]:
        """FROST staked with each node, as this node's ledger has it now."""
        out: dict[str, int] = {}
        for (_, node), amount in self.ledger.stakes.items():
            if amount:
                out[node] = out.get(node, 0) + amount
        return out

    def propose_next(self, current):
        """This node's proposal for the next epoch: the stakes its ledger confirmed."""
        from ..core.wal.epoch_state import InvalidEpochStateError, next_state

        try:
            return next_state(current, self.node_stakes(), **self.economics(current))
        except InvalidEpochStateError as exc:  # no stake left anywhere, say: keep the committee
            logger.warning("ledger stakes make no valid epoch state (%s): proposing the same stakes", exc)
            return next_state(current, current.stakes)

    def check_proposal(self, state) -> None:
        """valid(v), this node's part: the proposed stakes are those its ledger confirmed. A
        mismatch (one of us missed a certificate) makes this node pull what it missed; the
        agreement's next round judges again (epoch_service.forget_validity)."""
        mine = {p: s for p, s in self.node_stakes().items() if s}
        if dict(state.stakes) != mine:
            self.sync_wanted.set()
            raise ProtocolError(f"the proposed stakes of epoch {state.epoch} are not those this ledger confirmed")
        runner = getattr(self.node, "epochs", None)
        current = getattr(getattr(runner, "service", None), "current", None)
        if current is not None and current.epoch + 1 == state.epoch:
            self.check_economics(current, state)  # reward credits no more than the funds owe

    def epoch_adopted(self, state) -> None:
        self._committees.pop(state.epoch, None)

    def status(self) -> dict:
        storage, write = self.prices_now()
        return {"supply": self.ledger.supply, "total": self.ledger.total(), "accounts": len(self.ledger.accounts),
                "funds": sum(self.ledger.funds.values()), "rewards_paid": self.ledger.rewards_paid,
                "rewarded_epoch": self.ledger.rewarded_epoch,
                "storage_price": storage, "write_price": write, **self.counters}

    # --- prices and payments ---

    def prices_now(self) -> tuple[int, int]:
        """(storage, write) price in force: the decided epoch state's when epochs run on this
        node, else genesis's."""
        runner = getattr(self.node, "epochs", None)
        state = getattr(getattr(runner, "service", None), "current", None)
        if state is not None:
            cur = (state.prices.storage_price_per_unit, state.prices.write_price_per_unit)
        else:
            cur = (self.genesis.storage_price, self.genesis.write_price)
        if cur != self._prices[-1]:
            self._prices = [self._prices[-1], cur]
            self._prices_changed_at = time.monotonic()
        return cur

    def price_options(self) -> list[tuple[int, int]]:
        """The prices a payment may have been computed at: the current ones, and for a while
        after a change the previous ones (a payment made just before the change)."""
        cur = self.prices_now()
        if len(self._prices) > 1 and time.monotonic() - self._prices_changed_at < PRICE_CHANGE_GRACE:
            return list(self._prices)
        return [cur]

    async def check_store_payment(self, payment, **what) -> int:
        """The cost a store's (or extension's) payment covers; PaymentError (a ProtocolError:
        the peer is told why) unless it is a valid storage payment certificate for this blob,
        its encoded size and epochs, of at least the cost at the prices in force. Nothing is
        asked while every price is 0. The certificate is also applied here (into the fund)."""
        prices = self.price_options()
        if not needs_payment(prices):
            return 0
        self.counters["payments_checked"] += 1
        try:
            cert = Certificate.from_json(payment) if payment is not None else None
            need = check_payment(cert.order if cert else None, prices=prices, **what)
            committee = self.committee_for(cert.order.epoch)
            if committee is None:
                raise PaymentError(f"the payment is certified in epoch {cert.order.epoch}; no committee is known "
                                   "here for it")
            if cert.order.genesis != self.genesis_hash:
                raise PaymentError("the payment is for another network (genesis hash differs)")
            await trio.to_thread.run_sync(cert.check, committee)  # signatures off the event loop
        except ProtocolError as exc:
            self.counters["payments_refused"] += 1
            if isinstance(exc, PaymentError):
                raise
            raise PaymentError(f"the payment does not hold: {exc}") from None
        try:
            with trio.move_on_after(PAYMENT_CONFIRM_TIMEOUT):
                await self.confirm(cert)  # usually applied already: the payer confirms it everywhere
        except Exception as exc:  # a certificate is final whether this node has applied it yet or not
            logger.info("ledger: the payment certificate of a store was not applied here yet: %r", exc)
        return need

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

    async def handle_certs(self, stream, peer: str) -> None:
        req = msg.parse_certs_request(await rpc.recv_json(stream))
        if isinstance(req, msg.ReceivedRequest):
            refs = self.received.get(req.recipient, [])[-MAX_RECEIVED:]
            await rpc.send_json(stream, msg.ReceivedReply(tuple(refs)).to_json())
            return
        out, size = [], 0
        for seq in range(req.first, min(req.first + min(req.count, CERT_PAGE), 1 << 64)):
            got = await trio.to_thread.run_sync(_stored_certificate, self.store, req.sender, seq)
            if got is None or (out and size + got[1] > CERT_PAGE_BYTES):
                break
            size += got[1]
            out.append(got[0])
        await rpc.send_json(stream, msg.CertsReply(tuple(out)).to_json())

    def summary_digest(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        for address, acct in sorted(self.ledger.accounts.items()):
            h.update(f"{address}:{acct.next_sequence};".encode())
        return h.hexdigest()

    async def handle_summary(self, stream, peer: str) -> None:
        req = msg.SummaryRequest.from_json(await rpc.recv_json(stream))
        digest = self.summary_digest()
        if req.digest == digest:
            await rpc.send_json(stream, msg.SummaryReply(same=True).to_json())
            return
        accounts = [(a, x.next_sequence) for a, x in self.ledger.accounts.items() if x.next_sequence]
        await rpc.send_json(stream, msg.SummaryReply(digest=digest,
                                                     accounts=tuple(accounts[:MAX_SUMMARY_ACCOUNTS])).to_json())

    # --- pulling what this node missed ---

    def _peers(self) -> list[str]:
        members = self.node.members
        live = set(members.live.peer_ids()) if members is not None else set()
        peers = [p for p in self.committee.members if p != self.node.peer_id and p in live and p not in self.node.deny]
        random.shuffle(peers)
        return peers

    async def _fetch(self, peer: str, protocol, request, reply_type):
        """``peer``'s typed answer to ``request``; ProtocolError if it refused or answered amiss."""
        stream, obj = await self.node.call(peer, protocol, request.to_json())
        await rpc.close_quietly(stream)
        reply = msg.parse_reply(obj, reply_type)
        if isinstance(reply, msg.Refused):
            raise ProtocolError(f"{peer} answered {reply.error or 'not ok'}")
        return reply

    async def catch_up(self, sender: str, first: int, last: int, peers: list[str] | None = None,
                       timeout: float = CATCH_UP_IN_REQUEST) -> None:
        """Pull and apply ``sender``'s certificates ``first..last`` from peers (bounded in time)."""
        with trio.move_on_after(timeout):
            for peer in peers or self._peers():
                try:
                    while True:
                        acct = self.ledger.account(sender)
                        have = acct.next_sequence if acct else 0
                        if have > last:
                            return
                        reply = await self._fetch(peer, protocols.LEDGER_CERTS,
                                                  msg.CertsRequest(sender, have, min(CERT_PAGE, last - have + 1)),
                                                  msg.CertsReply)
                        if not reply.certificates:
                            break
                        for expected, cert in enumerate(reply.certificates, start=have):
                            if cert.order.sender != sender or cert.order.sequence != expected:
                                raise ProtocolError("a certificate other than the one asked for")
                            if not isinstance(await self.confirm(cert, pull=False), Applied):
                                raise ProtocolError("certificates out of sequence")
                            self.counters["pulled"] += 1
                except Exception as exc:  # a peer's bad answer or a dead stream: try the next peer
                    logger.info("ledger: pulling certificates of %s from %s failed: %s", sender, peer, exc)

    async def sync_once(self) -> int:
        """Compare account summaries with a few peers; pull every sender we are behind on."""
        pulled = self.counters["pulled"]
        for peer in self._peers()[:SYNC_PEERS]:
            try:
                reply = await self._fetch(peer, protocols.LEDGER_SUMMARY, msg.SummaryRequest(self.summary_digest()),
                                          msg.SummaryReply)
            except Exception as exc:
                logger.debug("ledger summary from %s: %r", peer, exc)
                continue
            for address, next_sequence in reply.accounts:  # none when the digests match ("same")
                acct = self.ledger.account(address)
                have = acct.next_sequence if acct else 0
                if next_sequence > have:
                    await self.catch_up(address, have, next_sequence - 1, [peer], CATCH_UP_TIMEOUT)
        return self.counters["pulled"] - pulled

    def economics(self, current) -> dict:
        """``next_state`` keyword arguments for the state after ``current``: prices voted by the
        committee (quorum-below), parameters a quorum proposed, and the reward credits of
        ``current``'s epoch from this ledger's funds and stakes, shards held as this node's
        storage challenges saw them. A proposer passes them on:
        ``next_state(current, stakes, **ledger.economics(current))``."""
        votes = getattr(self.node, "votes", None)
        if votes is None:
            return {}
        if self._held_view is None:
            from .vote_service import ChallengeView

            self._held_view = ChallengeView(self.node)
        return votes.economics(current, self._held_view(current))

    def check_economics(self, current, proposal) -> None:
        """valid(v), the ledger's part for issue 16: ``proposal``'s reward credits pay no more
        than this ledger's funds owe ``current``'s epoch. ProtocolError if they do (and pull
        what this node may have missed: the next round judges again)."""
        from ..core.wal.pricing import check_reward_credits

        why = check_reward_credits(current, proposal, self.ledger.funds)
        if why is not None:
            self.sync_wanted.set()
            raise ProtocolError(why)

    async def apply_decided(self, states) -> int:
        """Pay the reward credits of decided epoch states (each ``EpochState(e + 1)`` credits
        epoch ``e``'s rewards) not applied here yet, in epoch order, each durable before the
        next; how many were applied. Every node applies the same decided numbers."""
        from ..core.wal.pricing import epoch_fund

        applied = 0
        for state in sorted(states, key=lambda s: s.epoch):
            if state.epoch - 1 <= self.ledger.rewarded_epoch:
                continue
            credits = sum(amount for _, amount in state.reward_credits)
            if credits > epoch_fund(self.ledger.funds, state.epoch - 1):
                # The committee credited more than this ledger's funds owe the epoch: this node
                # missed payments (a store it was not reached for). Pull them first, so that its
                # funds do not go negative; the decided credits are applied either way.
                self.counters["reward_pulls"] = self.counters.get("reward_pulls", 0) + 1
                with trio.move_on_after(CATCH_UP_TIMEOUT):
                    await self.sync_once()
            async with self.lock:
                if self.ledger.apply_rewards(state.epoch - 1, dict(state.reward_credits)):
                    await self._persist()
                    applied += 1
        if applied:
            self.node.write_status()
            done, self.changed = self.changed, trio.Event()
            done.set()
        return applied

    async def run_rewards(self) -> None:
        """With epochs running on this node (``attach_epochs``), apply each decided state's
        reward credits as it is decided or pulled."""
        runner = getattr(self.node, "epochs", None)
        if runner is None:
            return
        await runner.started.wait()
        svc = runner.service
        while True:
            changed = svc.changed
            try:
                await self.apply_decided([s for s, _ in svc.links])
            except Exception as exc:  # a bad credit list is refused here, and logged: never the node's end
                logger.warning("ledger: reward credits not applied: %r", exc)
            await changed.wait()

    async def run_sync(self) -> None:
        """Anti-entropy: at start, on every shard-map change (a peer back, a partition healed)
        and every repair_interval."""
        async def watch_map():
            while True:
                await self.node.map_changed.wait()
                self.sync_wanted.set()
                await trio.sleep(0)  # map_changed is replaced once set: wait on the new one

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_map)
            while True:
                with trio.move_on_after(self.node.net.timings.repair_interval):
                    await self.sync_wanted.wait()
                self.sync_wanted = trio.Event()
                try:
                    got = await self.sync_once()
                    if got:
                        logger.info("ledger: pulled %d certificate(s) this node had missed", got)
                except Exception as exc:
                    logger.info("ledger anti-entropy round failed: %r", exc)
