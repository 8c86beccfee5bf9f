"""Account state at one authority and FastPay's rules over it (pure: no I/O, no clock).

Per account: ``balance``, ``next_sequence`` and ``pending``, the one order this authority
has signed at ``next_sequence``. An authority signs an order only if the sender's
signature holds (SignedOrder checked it), the sequence is the next one, the balance (or,
to unstake, the stake) covers it, and it signed no other order at that sequence; it
signs the identical order again on request. A certificate (votes of quorum weight) is
applied once, in sequence order per sender: debit, bump the sequence, credit. One ahead
of the sender's next sequence is not applied: the caller fetches the missing ones.

The caller must make ``pending`` durable before it hands out a vote, and a certificate
durable before it reports it applied: a node that forgets a vote can sign twice.

A balance may go below zero at an authority that has not yet applied the credits a
quorum saw (FastPay allows it: credits commute and arrive later); WAL is conserved all
the same: balances + stakes + storage funds = genesis supply, after every step (rewards
move FROST from the funds to balances: ``apply_rewards``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from .committee import Committee
from .genesis import Genesis
from .orders import Certificate, InvalidOrderError, OrderKind, SignedOrder
from ...errors import Refusal, ConservationError  # noqa: F401  (defined in errors.py; importable from here)


class RefusalCode(enum.Enum):
    WRONG_NETWORK = "wrong_network"
    WRONG_EPOCH = "wrong_epoch"
    UNKNOWN_ACCOUNT = "unknown_account"
    SEQUENCE_USED = "sequence_used"  # confirmed already, or another order is signed at it (a lock)
    SEQUENCE_AHEAD = "sequence_ahead"  # this authority has not applied the sender's earlier certificates
    INSUFFICIENT_BALANCE = "insufficient_balance"
    INSUFFICIENT_STAKE = "insufficient_stake"
    NOT_A_NODE = "not_a_node"  # stake with a key that is not in the committee


@dataclass(frozen=True)
class Account:
    balance: int = 0
    next_sequence: int = 0
    pending: SignedOrder | None = None


@dataclass(frozen=True)
class Applied:
    new: bool  # False: the certificate was applied before (confirmations are idempotent)


@dataclass(frozen=True)
class Missing:
    """Certificates of ``sender`` at sequences ``first..last`` must be applied first."""

    sender: str
    first: int
    last: int


class Ledger:
    def __init__(self, genesis_hash: bytes, supply: int):
        self.genesis_hash = genesis_hash
        self.supply = supply
        self.accounts: dict[str, Account] = {}
        self.stakes: dict[tuple[str, str], int] = {}  # (staker, node) -> FROST
        self.funds: dict[tuple[int, int], int] = {}  # storage paid for epochs [start, end) -> FROST
        self.rewarded_epoch = -1  # the last epoch whose rewards (decided reward credits) are applied
        self.rewards_paid = 0  # FROST credited from the funds as rewards, all epochs (inside balances)

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> "Ledger":
        ledger = cls(genesis.hash(), genesis.supply())
        for a in genesis.accounts:
            ledger.accounts[a.address] = Account(balance=a.balance)
        for m in genesis.committee:
            if m.stake:
                ledger.stakes[(m.peer_id, m.peer_id)] = m.stake  # a node's genesis stake is its own key's
        return ledger

    # --- reading ---

    def account(self, address: str) -> Account | None:
        return self.accounts.get(address)

    def stakes_of(self, staker: str) -> dict[str, int]:
        return {node: amount for (s, node), amount in self.stakes.items() if s == staker and amount}

    def stake_with(self, node: str) -> int:
        return sum(amount for (_, n), amount in self.stakes.items() if n == node)

    def total(self) -> int:
        return sum(a.balance for a in self.accounts.values()) + sum(self.stakes.values()) + sum(self.funds.values())

    # --- signing ---

    def check_order(self, signed: SignedOrder, committee: Committee, candidates=()) -> Account:
        """The sender's account if this authority may vote for ``signed`` now; else Refusal.

        ``candidates``: storage nodes outside the committee that one may stake with (a node
        staked in joins the committee at the next epoch change)."""
        order = signed.order
        if order.genesis != self.genesis_hash:
            raise Refusal(RefusalCode.WRONG_NETWORK, "the order is for another network (genesis hash differs)")
        if order.epoch != committee.epoch:
            raise Refusal(RefusalCode.WRONG_EPOCH, f"the order is for epoch {order.epoch}; the committee is of "
                          f"epoch {committee.epoch}", epoch=committee.epoch)
        acct = self.accounts.get(order.sender)
        if acct is None:
            raise Refusal(RefusalCode.UNKNOWN_ACCOUNT, f"unknown account {order.sender}: it never received WAL")
        if order.sequence < acct.next_sequence:
            raise Refusal(RefusalCode.SEQUENCE_USED, f"sequence {order.sequence} of {order.sender} is already "
                          f"confirmed (next is {acct.next_sequence})", next_sequence=acct.next_sequence)
        if order.sequence > acct.next_sequence:
            raise Refusal(RefusalCode.SEQUENCE_AHEAD, f"sequence {order.sequence} is ahead: this node has "
                          f"{order.sender} at {acct.next_sequence}", next_sequence=acct.next_sequence)
        if acct.pending is not None:
            if acct.pending.order == order:
                return acct  # the identical order: sign it again
            raise Refusal(RefusalCode.SEQUENCE_USED, f"sequence {order.sequence} of {order.sender} is already used "
                          "by another signed order; the account may be locked (FastPay: two orders at one "
                          "sequence can leave neither certified)", next_sequence=acct.next_sequence,
                          pending=acct.pending.to_json())
        if order.kind is OrderKind.UNSTAKE:
            staked = self.stakes.get((order.sender, order.recipient), 0)
            if staked < order.amount:
                raise Refusal(RefusalCode.INSUFFICIENT_STAKE, f"{order.sender} has {staked} FROST staked with "
                              f"{order.recipient}, less than {order.amount}", staked=staked)
            return acct
        if (order.kind is OrderKind.STAKE and order.recipient not in committee.members
                and order.recipient not in candidates):
            raise Refusal(RefusalCode.NOT_A_NODE, f"{order.recipient} is not a storage node of the committee "
                          "nor a live storage node")
        if acct.balance < order.amount:
            raise Refusal(RefusalCode.INSUFFICIENT_BALANCE, f"insufficient balance: {order.sender} has "
                          f"{acct.balance} FROST, the order needs {order.amount}", balance=acct.balance)
        return acct

    def handle_order(self, signed: SignedOrder, committee: Committee, candidates=()) -> bool:
        """Record ``signed`` as the pending order of its sender; True if that changed the state
        (persist it before voting). Refusal if FastPay's rules forbid a vote."""
        acct = self.check_order(signed, committee, candidates)
        if acct.pending is not None:
            return False
        self.accounts[signed.order.sender] = replace(acct, pending=signed)
        return True

    # --- confirming ---

    def apply(self, cert: Certificate, committee: Committee) -> Applied | Missing:
        """Apply a certificate (InvalidOrderError unless it holds for ``committee``)."""
        order = cert.order
        if order.genesis != self.genesis_hash:
            raise InvalidOrderError("the certificate is for another network (genesis hash differs)")
        cert.check(committee)
        acct = self.accounts.get(order.sender, Account())
        if order.sequence < acct.next_sequence:
            return Applied(new=False)
        if order.sequence > acct.next_sequence:
            return Missing(order.sender, acct.next_sequence, order.sequence - 1)
        debit = 0 if order.kind is OrderKind.UNSTAKE else order.amount
        self.accounts[order.sender] = Account(acct.balance - debit, acct.next_sequence + 1, None)
        if order.kind is OrderKind.TRANSFER:
            self._credit(order.recipient, order.amount)
        elif order.kind is OrderKind.STAKE:
            key = (order.sender, order.recipient)
            self.stakes[key] = self.stakes.get(key, 0) + order.amount
        elif order.kind is OrderKind.UNSTAKE:
            key = (order.sender, order.recipient)
            left = self.stakes.get(key, 0) - order.amount
            if left:
                self.stakes[key] = left
            else:
                self.stakes.pop(key, None)
            self._credit(order.sender, order.amount)
        else:  # storage: into the fund of the epochs it pays for (issue 16 splits it among holders)
            pay = order.storage
            key = (pay.start_epoch, pay.end_epoch)
            self.funds[key] = self.funds.get(key, 0) + order.amount
        return Applied(new=True)

    def apply_rewards(self, epoch: int, credits) -> bool:
        """Pay epoch ``epoch``'s reward credits (account -> FROST, from the decided state of
        ``epoch + 1``) out of the storage funds, once: False if already applied. Epochs are
        applied in order; one skipped (its state never seen here) simply paid nothing here.
        The funds drop by exactly what is credited (pricing.settle_funds), so WAL is conserved."""
        from .pricing import settle_funds

        if epoch <= self.rewarded_epoch:
            return False
        total = 0
        for address, amount in dict(credits).items():
            if type(amount) is not int or amount < 0:
                raise ValueError("reward credits are non-negative integers of FROST")
            total += amount
        self.funds = settle_funds(self.funds, epoch, total)
        for address, amount in sorted(dict(credits).items()):
            if amount:
                self._credit(address, amount)
        self.rewards_paid += total
        self.rewarded_epoch = epoch
        return True

    def _credit(self, address: str, amount: int) -> None:
        acct = self.accounts.get(address, Account())
        self.accounts[address] = replace(acct, balance=acct.balance + amount)

    # --- persistence (the node writes this atomically) ---

    def to_json(self) -> dict:
        return {
            "version": 1,
            "genesis": self.genesis_hash.hex(),
            "supply": self.supply,
            "accounts": {a: [x.balance, x.next_sequence, x.pending.to_json() if x.pending else None]
                         for a, x in sorted(self.accounts.items())},
            "stakes": [[s, n, v] for (s, n), v in sorted(self.stakes.items())],
            "funds": [[a, b, v] for (a, b), v in sorted(self.funds.items())],
            "rewarded_epoch": self.rewarded_epoch,
            "rewards_paid": self.rewards_paid,
        }

    @classmethod
    def from_json(cls, obj, genesis: Genesis) -> "Ledger":
        """A saved state of this genesis's network; ValueError if it is not one."""
        if not isinstance(obj, dict) or obj.get("version") != 1:
            raise ValueError("not a saved ledger state (version 1)")
        if obj.get("genesis") != genesis.hash().hex():
            raise ValueError("saved for another genesis")
        ledger = cls(genesis.hash(), genesis.supply())
        try:
            for address, (balance, seq, pending) in obj["accounts"].items():
                if type(balance) is not int or type(seq) is not int or seq < 0:
                    raise ValueError(f"account {address}")
                signed = SignedOrder.from_json(pending) if pending is not None else None
                if signed is not None and (signed.order.sender != address or signed.order.sequence != seq):
                    raise ValueError(f"pending order of {address}")
                ledger.accounts[address] = Account(balance, seq, signed)
            for staker, node, amount in obj["stakes"]:
                ledger.stakes[(staker, node)] = _int(amount)
            for start, end, amount in obj["funds"]:
                ledger.funds[(_int(start), _int(end))] = _int(amount)
            ledger.rewarded_epoch = _int(obj.get("rewarded_epoch", -1))  # absent in states saved before rewards
            ledger.rewards_paid = _int(obj.get("rewards_paid", 0))
        except (KeyError, TypeError, InvalidOrderError) as exc:
            raise ValueError(f"malformed ledger state ({exc})") from None
        return ledger


def _int(value) -> int:
    if type(value) is not int:
        raise ValueError("not an integer")
    return value


def check_conservation(ledger: Ledger) -> None:
    """Balances + stakes + storage funds = genesis supply; ConservationError with the figures if not."""
    total = ledger.total()
    if total != ledger.supply:
        raise ConservationError(f"WAL not conserved: {total} FROST held, the genesis supply is {ledger.supply}")
