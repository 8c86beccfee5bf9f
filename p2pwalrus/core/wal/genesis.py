"""Genesis: the initial committee and stakes, balances, prices and parameters (pure).

A network file pins it in its ``[genesis]`` table. Its hash covers all of that plus the
network's name, shard count and clock (genesis time, epoch length), and every signed
ledger message carries it: nothing signed for one network is valid on another, even
two netlab testnets that are both called "local".

Amounts are integers of FROST; in the file they may also be written "1000WAL".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from . import fields
from .amounts import MAX_AMOUNT, AmountError, parse_amount
from ...errors import GenesisError  # noqa: F401  (defined in errors.py; importable from here)

MAX_COMMITTEE = 1000
MAX_GENESIS_ACCOUNTS = 100_000
DEFAULT_PARAMETERS = {"max_epochs_ahead": 1000}  # as NetworkConfig's default


def check_address(address, what: str = "address") -> str:
    """An account or node address: the peer ID text of an Ed25519 key ("12D3KooW...")."""
    return fields.peer_id(address, what, GenesisError)


@dataclass(frozen=True)
class CommitteeMember:
    peer_id: str
    stake: int  # self-stake of the node's own key at genesis, in FROST


@dataclass(frozen=True)
class GenesisAccount:
    address: str
    balance: int  # FROST


@dataclass(frozen=True)
class Genesis:
    network: str
    n_shards: int
    genesis_time: float
    epoch_length: float
    committee: tuple[CommitteeMember, ...]
    accounts: tuple[GenesisAccount, ...] = ()
    storage_price: int = 0  # FROST per 1 MiB unit of encoded size per epoch (Walrus's rule)
    write_price: int = 0  # FROST per 1 MiB unit, once per store
    parameters: tuple[tuple[str, int], ...] = field(default=())  # sorted (name, value): max_epochs_ahead, ...

    def __post_init__(self) -> None:
        if not self.committee or len(self.committee) > MAX_COMMITTEE:
            raise GenesisError(f"the committee must have 1 to {MAX_COMMITTEE} members")
        if len(self.accounts) > MAX_GENESIS_ACCOUNTS:
            raise GenesisError(f"at most {MAX_GENESIS_ACCOUNTS} genesis accounts")
        ids = [m.peer_id for m in self.committee]
        if ids != sorted(set(ids)):
            raise GenesisError("committee members must be distinct and sorted by peer ID")
        addrs = [a.address for a in self.accounts]
        if addrs != sorted(set(addrs)):
            raise GenesisError("genesis accounts must be distinct and sorted by address")
        # network, shard count, parameters, prices and stakes: checked as every epoch state checks them
        fields.network_values(network=self.network, n_shards=self.n_shards, params=self.parameters,
                              prices=(("storage_price", self.storage_price), ("write_price", self.write_price)),
                              stakes=[(m.peer_id, m.stake) for m in self.committee], error=GenesisError)
        for a in self.accounts:
            check_address(a.address, "genesis account")
            _check_amount(a.balance, f"balance of {a.address}")
        if self.supply() > MAX_AMOUNT:
            raise GenesisError(f"the total supply is over {MAX_AMOUNT} FROST")

    # --- what it says ---

    def supply(self) -> int:
        """All WAL there is: genesis balances plus genesis stakes (conserved forever after)."""
        return sum(a.balance for a in self.accounts) + sum(m.stake for m in self.committee)

    def member_ids(self) -> tuple[str, ...]:
        return tuple(m.peer_id for m in self.committee)

    def parameter(self, name: str, default: int | None = None) -> int | None:
        return dict(self.parameters).get(name, default)

    def canonical(self) -> bytes:
        obj = {
            "version": 1,
            "network": self.network,
            "n_shards": self.n_shards,
            "genesis_time": self.genesis_time,
            "epoch_length": self.epoch_length,
            "committee": [[m.peer_id, m.stake] for m in self.committee],
            "accounts": [[a.address, a.balance] for a in self.accounts],
            "storage_price": self.storage_price,
            "write_price": self.write_price,
            "parameters": [[k, v] for k, v in self.parameters],
        }
        return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()

    def hash(self) -> bytes:
        """The 32 bytes every signed ledger message carries."""
        return hashlib.blake2b(self.canonical(), digest_size=32, person=b"p2pw-genesis").digest()

    # --- the network file ---

    def to_toml(self) -> str:
        """The ``[genesis]`` tables of a network file (amounts as integers of FROST)."""
        lines = ["[genesis]", f"storage_price = {self.storage_price}", f"write_price = {self.write_price}", ""]
        if self.parameters:
            lines += ["[genesis.parameters]", *[f"{k} = {v}" for k, v in self.parameters], ""]
        for m in self.committee:
            lines += ["[[genesis.committee]]", f'peer_id = "{m.peer_id}"', f"stake = {m.stake}", ""]
        for a in self.accounts:
            lines += ["[[genesis.accounts]]", f'address = "{a.address}"', f"balance = {a.balance}", ""]
        return "\n".join(lines)


def _check_amount(value, what: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_AMOUNT:
        raise GenesisError(f"{what} must be an integer number of FROST in 0..{MAX_AMOUNT}")
    return value


def _amount(value, what: str) -> int:
    try:
        return parse_amount(value) if isinstance(value, (str, int)) else _check_amount(value, what)
    except AmountError as exc:
        raise GenesisError(f"{what}: {exc}") from None


def make_genesis(*, network: str, n_shards: int, genesis_time: float, epoch_length: float,
                 committee, accounts=(), storage_price: int = 0, write_price: int = 0,
                 parameters: dict | None = None) -> Genesis:
    """A Genesis from unsorted (peer_id, stake) and (address, balance) pairs."""
    return Genesis(
        network=network, n_shards=n_shards, genesis_time=float(genesis_time), epoch_length=float(epoch_length),
        committee=tuple(CommitteeMember(p, s) for p, s in sorted(committee)),
        accounts=tuple(GenesisAccount(a, b) for a, b in sorted(accounts)),
        storage_price=storage_price, write_price=write_price,
        parameters=tuple(sorted({**DEFAULT_PARAMETERS, **(parameters or {})}.items())),
    )


def genesis_from_table(table, *, network: str, n_shards: int, genesis_time: float, epoch_length: float,
                       max_epochs_ahead: int) -> Genesis:
    """Parse a network file's ``[genesis]`` table (already TOML-decoded); GenesisError names the problem."""
    if not isinstance(table, dict):
        raise GenesisError("[genesis] must be a table")
    unknown = set(table) - {"storage_price", "write_price", "parameters", "committee", "accounts"}
    if unknown:
        raise GenesisError(f"unknown [genesis] keys {sorted(unknown)}")
    committee, accounts = table.get("committee", []), table.get("accounts", [])
    if not isinstance(committee, list) or not all(isinstance(m, dict) for m in committee):
        raise GenesisError("[[genesis.committee]] must be a list of tables with peer_id and stake")
    if not isinstance(accounts, list) or not all(isinstance(a, dict) for a in accounts):
        raise GenesisError("[[genesis.accounts]] must be a list of tables with address and balance")
    params = table.get("parameters", {})
    if not isinstance(params, dict) or not all(type(v) is int for v in params.values()):
        raise GenesisError("[genesis.parameters] must map names to integers")
    # The network file's top-level max_epochs_ahead, unless genesis states its own.
    params = {"max_epochs_ahead": max_epochs_ahead, **params}
    try:
        members = [(check_address(m.get("peer_id"), "committee member"), _amount(m.get("stake", 0), "stake"))
                   for m in committee]
        balances = [(check_address(a.get("address"), "genesis account"), _amount(a.get("balance", 0), "balance"))
                    for a in accounts]
    except AttributeError:
        raise GenesisError("committee members and accounts must be tables") from None
    if len({p for p, _ in members}) != len(members):
        raise GenesisError("a committee member is listed twice")
    if len({a for a, _ in balances}) != len(balances):
        raise GenesisError("a genesis account is listed twice")
    return make_genesis(network=network, n_shards=n_shards, genesis_time=genesis_time, epoch_length=epoch_length,
                        committee=members, accounts=balances,
                        storage_price=_amount(table.get("storage_price", 0), "storage_price"),
                        write_price=_amount(table.get("write_price", 0), "write_price"), parameters=params)
