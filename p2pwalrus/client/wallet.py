"""The wallet: a FastPay client over the committee's nodes (used by `p2pwalrus wallet`,
`stake`, `unstake` and `netlab faucet`).

An order is signed, saved to the wallet's journal (fsync) and only then sent to every
committee member; votes of quorum weight make a certificate, which is saved and then
handed to every reachable member. After a crash the journal's unfinished order is sent
again, identical (nodes sign the same order twice; a new one at that sequence could lock
the account: FastPay's rule). Numbers read from nodes (balance, next sequence) are the
highest that members weighing more than ``f`` shards vouch for, so one lying node cannot
raise them.

The journal is in wallet_journal.py, certificates and the account's history in
wallet_history.py (Wallet's own methods all the same).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import trio

from ..core.keys import peer_id_from_public_key
from ..core.wal import messages as msg
from ..core.wal.amounts import format_amount
from ..core.wal.committee import Committee, committee_from_genesis, committee_from_state
from ..core.wal.orders import (
    Certificate,
    InvalidOrderError,
    Order,
    OrderKind,
    SignedOrder,
    Vote,
    make_certificate,
    sign_order,
)
from ..core import protocols
from ..errors import WalletError, NoLedgerError, InsufficientBalanceError, UnknownAccountError, SequenceUsedError, NoQuorumError, WrongEpochError, NotANodeError  # noqa: F401  (defined in errors.py; importable from here)
from .wallet_history import WalletHistory
from .wallet_journal import Journal

__all__ = ["CALL_TIMEOUT", "CONFIRM_TIMEOUT", "AccountView", "Journal", "Wallet", "WalletHistory", "address_of",
           "vouched", "WalletError", "NoLedgerError", "InsufficientBalanceError", "UnknownAccountError",
           "SequenceUsedError", "NoQuorumError", "WrongEpochError", "NotANodeError"]

logger = logging.getLogger("p2pwalrus.wallet")

CALL_TIMEOUT = 10.0  # one node's answer to a sign, confirm or account query
CONFIRM_TIMEOUT = 15.0  # handing a certificate to every reachable member


def address_of(keypair) -> str:
    return peer_id_from_public_key(keypair.public_key.to_bytes())


def vouched(reports: dict[str, int], committee: Committee) -> int | None:
    """The highest value that members of more than ``f`` shards' weight report at least
    (so at least one honest node holds it); None if the answers weigh too little."""
    weight = 0
    for peer, value in sorted(reports.items(), key=lambda kv: -kv[1]):
        weight += committee.weight(peer)
        if committee.is_validity(weight):
            return value
    return None


@dataclass
class AccountView:
    address: str
    known: bool
    balance: int
    next_sequence: int
    stakes: dict[str, int]
    staked_with: int
    answered: list[str] = field(default_factory=list)
    prices: tuple[int, int] | None = None  # (storage, write) FROST per unit, as members vouch; None: not said
    unreachable: dict[str, str] = field(default_factory=dict)


class Wallet(WalletHistory):
    def __init__(self, client, keypair, journal_root: Path):
        net = client.net
        if net.genesis is None:
            raise NoLedgerError(f"network {net.name!r} ({net.source or 'built in'}) has no genesis, so no ledger: "
                                "use a network file with a [genesis] table, such as the one `netlab up` writes")
        self.client = client
        self.keypair = keypair
        self.genesis = net.genesis
        self.genesis_hash = self.genesis.hash()
        self._genesis_committee = committee_from_genesis(self.genesis)
        self.address = address_of(keypair)
        self.journal = Journal(journal_root, self.genesis_hash, self.address)

    @property
    def committee(self) -> Committee:
        """The committee of the latest decided epoch the client verified (client/epochs.py)."""
        epochs = getattr(self.client, "epochs", None)
        return self.committee_for(epochs.current.epoch) if epochs is not None else self._genesis_committee

    def committee_for(self, epoch: int) -> Committee | None:
        epochs = getattr(self.client, "epochs", None)
        if epochs is None:
            return self._genesis_committee if epoch == 0 else None
        state = epochs.state_for(epoch)
        if state is None:
            return None
        cache = self.__dict__.setdefault("_committees", {})
        if epoch not in cache:
            cache[epoch] = committee_from_state(state)
        return cache[epoch]

    # --- talking to the committee ---

    def members(self) -> list[str]:
        """Committee members with shards, the live ones first (a client knows who is live)."""
        live = set(self.client.records)
        weighed = [p for p in self.committee.members if self.committee.weight(p)]
        return sorted(weighed, key=lambda p: p not in live)

    async def _ask_all(self, protocol, request, *, timeout: float = CALL_TIMEOUT, peers=None,
                       enough=None, reply=None) -> tuple[dict, dict[str, str]]:
        """Ask members in parallel: (answers, {peer: why it did not answer}). ``request``: a
        message of core/wal/messages.py (or its JSON); ``reply``: the type of the answer, which
        is then parsed (``messages.parse_reply``: that type or a ``Refused``; a malformed answer
        counts as none). ``enough(answers)`` true ends the round early."""
        header = request.to_json() if hasattr(request, "to_json") else request
        answers: dict = {}
        failed: dict[str, str] = {}
        live = set(self.client.records)
        with trio.move_on_after(timeout + 1):
            async with trio.open_nursery() as nursery:
                async def ask(peer: str) -> None:
                    try:
                        obj = await self.client.call(peer, protocol, header, timeout=timeout)
                        answers[peer] = msg.parse_reply(obj, reply) if reply is not None else obj
                    except Exception as exc:
                        failed[peer] = f"{type(exc).__name__}: {exc}"[:200]
                        return
                    if enough is not None and enough(answers):
                        nursery.cancel_scope.cancel()

                for peer in peers if peers is not None else self.members():
                    if peer in live:
                        nursery.start_soon(ask, peer)
                    else:
                        failed[peer] = "not live"
        for peer in peers if peers is not None else self.members():
            if peer not in answers and peer not in failed:
                failed[peer] = "no answer in time"
        return answers, failed

    async def account(self, address: str | None = None, *, quick: bool = False,
                      timeout: float | None = None) -> AccountView:
        """``quick``: stop asking once the answers weigh a quorum (a dead member still in the
        live set does not hold the caller up for the whole call timeout)."""
        address = address or self.address

        def good_of(answers: dict) -> dict[str, msg.AccountReply]:
            return {p: a for p, a in answers.items() if isinstance(a, msg.AccountReply) and a.genesis == self.genesis_hash}

        def enough(answers: dict) -> bool:
            return self.committee.is_quorum(self.committee.weight_of(good_of(answers)))

        answers, failed = await self._ask_all(protocols.LEDGER_ACCOUNT, msg.AccountRequest(address),
                                              enough=enough if quick else None, timeout=timeout or CALL_TIMEOUT,
                                              reply=msg.AccountReply)
        good = good_of(answers)
        if not good:
            raise NoQuorumError(self._unreachable_sentence("no committee member answered an account query", {}, failed))

        balances = {p: a.balance for p, a in good.items()}
        sequences = {p: a.next_sequence for p, a in good.items()}
        balance = vouched(balances, self.committee)
        seq = vouched(sequences, self.committee)
        priced = {p: a.prices for p, a in good.items() if a.prices is not None}
        storage = vouched({p: x[0] for p, x in priced.items()}, self.committee)
        write = vouched({p: x[1] for p, x in priced.items()}, self.committee)
        best = max(good.values(), key=lambda a: a.next_sequence)
        return AccountView(
            address=address,
            known=any(a.known for a in good.values()),  # a false claim fails at signing
            balance=balance if balance is not None else min(balances.values()),
            next_sequence=seq if seq is not None else min(sequences.values()),
            stakes=dict(best.stakes),
            staked_with=best.staked_with,
            answered=sorted(good), unreachable=failed,
            prices=(storage, write) if storage is not None and write is not None else None)

    def _unreachable_sentence(self, what: str, votes: dict, failed: dict[str, str], refused: dict | None = None) -> str:
        weight = self.committee.weight_of(votes)
        parts = [f"{what}: votes weigh {weight} of {self.committee.n_shards} shards, a certificate needs "
                 f"{self.committee.quorum_weight}" if votes or refused is not None else what]
        if votes:
            parts.append(f"signed by {', '.join(sorted(votes))}")
        if refused:
            parts.append("refused by " + ", ".join(f"{p} ({r.error or '?'})" for p, r in sorted(refused.items())))
        if failed:
            parts.append("no answer from " + ", ".join(f"{p} ({why})" for p, why in sorted(failed.items())))
        return "; ".join(parts) + "; check that the committee's nodes are up (netlab status), then run it again"

    # --- orders ---

    async def _certify(self, signed: SignedOrder) -> Certificate:
        order = signed.order
        votes: dict[str, Vote] = {}
        committee = self.committee_for(order.epoch) or self.committee  # votes weigh as in the order's epoch

        def enough(answers: dict) -> bool:
            for peer, reply in answers.items():
                if peer not in votes and isinstance(reply, msg.SignReply):
                    vote = reply.vote
                    if vote.authority == peer and vote.holds_for(order):
                        votes[peer] = vote
            return committee.is_quorum(committee.weight_of(votes))

        answers, failed = await self._ask_all(protocols.LEDGER_SIGN, msg.SignRequest(signed), enough=enough,
                                              reply=msg.SignReply)
        enough(answers)
        if committee.is_quorum(committee.weight_of(votes)):
            return make_certificate(signed, votes.values())
        refused = {p: r for p, r in answers.items() if isinstance(r, msg.Refused)}

        def decisive(code: str) -> list[msg.Refused]:
            """Refusals for ``code``, if the nodes giving them weigh enough to rule out a quorum."""
            by = [p for p, r in refused.items() if r.code == code]
            left = committee.weight_of(committee.members) - committee.weight_of(by)
            return [refused[p] for p in by] if by and not committee.is_quorum(left) else []

        used = [r for r in refused.values() if r.code == "sequence_used"]
        if any(r.next_sequence is not None and r.next_sequence > order.sequence for r in used):
            cert = await self.fetch_certificate(order.sender, order.sequence)  # certified already (a crash
            if cert is not None and cert.order == order:  # after the quorum, before the journal knew)?
                return cert
        if decisive("sequence_used"):
            raise SequenceUsedError(
                f"sequence {order.sequence} of {order.sender} is already used by another order; the account may be "
                "locked (FastPay: a sender that signs two orders at one sequence number can leave both uncertified)")
        if decisive("insufficient_balance"):
            balance = max(r.balance or 0 for r in decisive("insufficient_balance"))
            raise InsufficientBalanceError(
                f"insufficient balance: {order.sender} has {format_amount(balance)}, the {order.kind.value} needs "
                f"{format_amount(order.amount)}", balance)
        if decisive("wrong_epoch") and not votes:
            epochs = sorted({r.epoch for r in decisive("wrong_epoch") if r.epoch is not None})
            raise WrongEpochError(f"the order was signed for epoch {order.epoch}; the committee's nodes are at "
                                  f"epoch {', '.join(map(str, epochs))}: nothing was signed, run it again")
        if decisive("unknown_account"):
            raise UnknownAccountError(self._unknown(order.sender))
        raise NoQuorumError(self._unreachable_sentence(f"no quorum reachable for sequence {order.sequence}",
                                                       votes, failed, refused))

    def _unknown(self, address: str) -> str:
        return (f"unknown account {address}: no node has seen it receive WAL; fund it first "
                f"(on a netlab testnet: netlab faucet {address} 10WAL)")

    async def _confirm(self, cert: Certificate) -> int:
        """Hand the certificate to every reachable member; the weight that applied it."""
        answers, _ = await self._ask_all(protocols.LEDGER_CONFIRM, msg.ConfirmRequest(cert), timeout=CONFIRM_TIMEOUT,
                                         reply=msg.ConfirmReply)
        return self.committee.weight_of(p for p, a in answers.items() if isinstance(a, msg.ConfirmReply))

    async def _finish(self, signed: SignedOrder, cert: Certificate | None) -> Certificate:
        try:
            if cert is None:
                cert = await self._certify(signed)
                self.journal.save(signed, cert, "certified")
        except (InsufficientBalanceError, UnknownAccountError, SequenceUsedError, WrongEpochError):
            # Refused for good: the wallet may sign another order at this sequence.
            self.journal.save(signed, None, "abandoned")
            raise
        await self._confirm(cert)
        self.journal.save(signed, cert, "done")
        return cert

    async def resume(self) -> list[Certificate]:
        """Finish the orders a crash or an error left unfinished, each as it was signed."""
        done = []
        for signed, cert in self.journal.unfinished():
            done.append(await self._finish(signed, cert))
        return done

    async def submit(self, kind: OrderKind, recipient: str, amount: int, payload: bytes = b"") -> Certificate:
        try:
            return await self._submit(kind, recipient, amount, payload)
        except WrongEpochError:
            # No node voted for it, so signing again at the same sequence for the epoch the
            # nodes are at locks nothing: once, after learning the decided states again.
            await self.client.refresh_epochs()
            return await self._submit(kind, recipient, amount, payload)

    async def _submit(self, kind: OrderKind, recipient: str, amount: int, payload: bytes = b"") -> Certificate:
        await self.client.refresh_epochs()  # orders carry the epoch of the committee that votes
        await self.resume()
        view = await self.account()
        if not view.known:
            raise UnknownAccountError(self._unknown(self.address))
        if kind is OrderKind.UNSTAKE:
            staked = view.stakes.get(recipient, 0)
            if staked < amount:
                raise InsufficientBalanceError(f"insufficient stake: {self.address} has {format_amount(staked)} "
                                               f"staked with {recipient}, the unstake needs {format_amount(amount)}",
                                               staked)
        elif view.balance < amount:
            raise InsufficientBalanceError(f"insufficient balance: {self.address} has {format_amount(view.balance)}, "
                                           f"the {kind.value} needs {format_amount(amount)}", view.balance)
        if kind is OrderKind.STAKE and recipient not in self.committee.members and recipient not in self.client.records:
            raise NotANodeError(f"{recipient} is neither a storage node of the committee nor a live storage node; "
                                "`p2pwalrus committee` and `p2pwalrus info` list them")
        seq = max(view.next_sequence, self.journal.next_sequence())
        try:
            order = Order(self.genesis_hash, self.committee.epoch, self.address, seq, recipient, amount, kind, payload)
        except InvalidOrderError as exc:
            raise WalletError(str(exc)) from None
        signed = sign_order(self.keypair, order)
        self.journal.save(signed)  # on disk before any node sees it
        return await self._finish(signed, None)

    async def transfer(self, recipient: str, amount: int) -> Certificate:
        return await self.submit(OrderKind.TRANSFER, recipient, amount)

    async def stake(self, node: str, amount: int) -> Certificate:
        return await self.submit(OrderKind.STAKE, node, amount)

    async def unstake(self, node: str, amount: int) -> Certificate:
        return await self.submit(OrderKind.UNSTAKE, node, amount)
