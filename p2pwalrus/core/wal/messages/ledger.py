"""The ledger's exchanges: LEDGER_SIGN, LEDGER_CONFIRM, LEDGER_ACCOUNT, LEDGER_CERTS and
LEDGER_SUMMARY, one request and one reply class each."""

from __future__ import annotations

from dataclasses import dataclass

from ....errors import ProtocolError
from .. import fields
from ..orders import Certificate, SignedOrder, Vote
from .base import (
    CERT_PAGE, MAX_RECEIVED, MAX_SUMMARY_ACCOUNTS, MAX_STAKES, SUMMARY_DIGEST_HEX, _U64, _obj, _get, _int,
    _bool, _peer, _seq_pairs, _check_pairs, _typed, _Reply, _ok
)


# --- ledger-sign ---


@dataclass(frozen=True)
class SignRequest:
    signed: SignedOrder

    def __post_init__(self) -> None:
        _typed(self.signed, SignedOrder, "signed")

    def to_json(self) -> dict:
        return {"signed": self.signed.to_json()}

    @classmethod
    def from_json(cls, obj) -> "SignRequest":
        obj = _obj(obj, "a sign request")
        return cls(SignedOrder.from_json(_get(obj, "signed")))


@dataclass(frozen=True)
class SignReply(_Reply):
    vote: Vote

    def __post_init__(self) -> None:
        _typed(self.vote, Vote, "vote")

    def to_json(self) -> dict:
        return {"ok": True, "vote": self.vote.to_json()}

    @classmethod
    def from_json(cls, obj) -> "SignReply":
        obj = _ok(obj, "a sign reply")
        return cls(Vote.from_json(_get(obj, "vote")))


# --- ledger-confirm ---


@dataclass(frozen=True)
class ConfirmRequest:
    certificate: Certificate

    def __post_init__(self) -> None:
        _typed(self.certificate, Certificate, "certificate")

    def to_json(self) -> dict:
        return {"certificate": self.certificate.to_json()}

    @classmethod
    def from_json(cls, obj) -> "ConfirmRequest":
        obj = _obj(obj, "a confirm request")
        return cls(Certificate.from_json(_get(obj, "certificate")))


@dataclass(frozen=True)
class ConfirmReply(_Reply):
    new: bool  # False: applied before (confirmations are idempotent)
    next_sequence: int  # the sender's, after it

    def __post_init__(self) -> None:
        _bool(self.new, "new")
        _int(self.next_sequence, "next_sequence")

    def to_json(self) -> dict:
        return {"ok": True, "new": self.new, "next_sequence": self.next_sequence}

    @classmethod
    def from_json(cls, obj) -> "ConfirmReply":
        obj = _ok(obj, "a confirm reply")
        return cls(_get(obj, "new"), _get(obj, "next_sequence"))


# --- ledger-account ---


@dataclass(frozen=True)
class AccountRequest:
    address: str

    def __post_init__(self) -> None:
        _peer(self.address, "address")

    def to_json(self) -> dict:
        return {"address": self.address}

    @classmethod
    def from_json(cls, obj) -> "AccountRequest":
        return cls(_get(_obj(obj, "an account request"), "address"))


@dataclass(frozen=True)
class AccountReply(_Reply):
    authority: str  # the answering node
    epoch: int  # of its committee
    genesis: bytes  # its network's genesis hash
    known: bool
    balance: int  # FROST; below zero at a node that has not applied the account's credits yet
    next_sequence: int
    pending: SignedOrder | None  # the order it signed at next_sequence
    stakes: tuple[tuple[str, int], ...]  # (node, FROST) this account staked with each
    staked_with: int  # FROST staked with this address (a node)
    prices: tuple[int, int] | None  # (storage, write) FROST per unit in force there; None: not said

    def __post_init__(self) -> None:
        _peer(self.authority, "authority")
        _int(self.epoch, "epoch")
        if not isinstance(self.genesis, bytes) or len(self.genesis) != 32:
            raise ProtocolError("field 'genesis' must be 32 bytes")
        _bool(self.known, "known")
        _int(self.balance, "balance", -_U64)
        _int(self.next_sequence, "next_sequence")
        if self.pending is not None:
            _typed(self.pending, SignedOrder, "pending")
        _check_pairs(self.stakes, "stakes", MAX_STAKES)
        _int(self.staked_with, "staked_with")
        if self.prices is not None:
            if not isinstance(self.prices, tuple) or len(self.prices) != 2:
                raise ProtocolError("field 'prices' must be [storage, write]")
            for p in self.prices:
                _int(p, "prices")

    def to_json(self) -> dict:
        out = {"ok": True, "authority": self.authority, "epoch": self.epoch, "genesis": self.genesis.hex(),
               "known": self.known, "balance": self.balance, "next_sequence": self.next_sequence,
               "pending": self.pending.to_json() if self.pending is not None else None,
               "stakes": dict(self.stakes), "staked_with": self.staked_with}
        if self.prices is not None:
            out["prices"] = list(self.prices)
        return out

    @classmethod
    def from_json(cls, obj) -> "AccountReply":
        obj = _ok(obj, "an account reply")
        stakes = obj.get("stakes", {})
        if not isinstance(stakes, dict) or len(stakes) > MAX_STAKES:
            raise ProtocolError(f"field 'stakes' must be an object of at most {MAX_STAKES} nodes")
        prices = obj.get("prices")
        if prices is not None and not (isinstance(prices, list) and len(prices) == 2):
            raise ProtocolError("field 'prices' must be [storage, write]")
        pending = obj.get("pending")
        return cls(_get(obj, "authority"), _get(obj, "epoch"), fields.hex_bytes(_get(obj, "genesis"), "field 'genesis'", 32),
                   _get(obj, "known"), _get(obj, "balance"), _get(obj, "next_sequence"),
                   SignedOrder.from_json(pending) if pending is not None else None,
                   tuple(stakes.items()), obj.get("staked_with", 0),
                   tuple(prices) if prices is not None else None)


# --- ledger-certs ---


@dataclass(frozen=True)
class CertsRequest:
    """``sender``'s certificates from sequence ``first`` on, at most ``count`` (a node answers
    at most CERT_PAGE)."""

    sender: str
    first: int
    count: int

    def __post_init__(self) -> None:
        _peer(self.sender, "sender")
        if type(self.first) is not int or not 0 <= self.first <= _U64:
            raise ProtocolError("field 'first' must be a sequence number (an integer in 0..2^64-1)")
        _int(self.count, "count")

    def to_json(self) -> dict:
        return {"sender": self.sender, "first": self.first, "count": self.count}

    @classmethod
    def from_json(cls, obj) -> "CertsRequest":
        obj = _obj(obj, "a certificates request")
        return cls(_get(obj, "sender"), _get(obj, "first"), _get(obj, "count"))


@dataclass(frozen=True)
class ReceivedRequest:
    """The (sender, sequence) of the latest transfers ``recipient`` received."""

    recipient: str

    def __post_init__(self) -> None:
        _peer(self.recipient, "recipient")

    def to_json(self) -> dict:
        return {"recipient": self.recipient}

    @classmethod
    def from_json(cls, obj) -> "ReceivedRequest":
        return cls(_get(_obj(obj, "a received request"), "recipient"))


def parse_certs_request(obj) -> CertsRequest | ReceivedRequest:
    """What a ledger-certs request asks: by recipient if it names one, else by sender."""
    obj = _obj(obj, "a certificates request")
    return ReceivedRequest.from_json(obj) if "recipient" in obj else CertsRequest.from_json(obj)


@dataclass(frozen=True)
class CertsReply(_Reply):
    certificates: tuple[Certificate, ...]  # consecutive sequences from the one asked for

    def __post_init__(self) -> None:
        if not isinstance(self.certificates, tuple) or len(self.certificates) > CERT_PAGE:
            raise ProtocolError(f"field 'certificates' holds at most {CERT_PAGE}")
        for cert in self.certificates:
            _typed(cert, Certificate, "certificates")

    def to_json(self) -> dict:
        return {"ok": True, "certificates": [c.to_json() for c in self.certificates]}

    @classmethod
    def from_json(cls, obj) -> "CertsReply":
        obj = _ok(obj, "a certificates reply")
        certs = _get(obj, "certificates")
        if not isinstance(certs, list) or len(certs) > CERT_PAGE:
            raise ProtocolError(f"field 'certificates' must be a list of at most {CERT_PAGE}")
        return cls(tuple(Certificate.from_json(c) for c in certs))


@dataclass(frozen=True)
class ReceivedReply(_Reply):
    received: tuple[tuple[str, int], ...]  # (sender, sequence), oldest first

    def __post_init__(self) -> None:
        _check_pairs(self.received, "received", MAX_RECEIVED)

    def to_json(self) -> dict:
        return {"ok": True, "received": [list(r) for r in self.received]}

    @classmethod
    def from_json(cls, obj) -> "ReceivedReply":
        return cls(_seq_pairs(_get(_ok(obj, "a received reply"), "received"), "received", MAX_RECEIVED))


# --- ledger-summary ---


def _digest(value, name: str = "digest") -> str:
    if (not isinstance(value, str) or len(value) != SUMMARY_DIGEST_HEX
            or value.strip("0123456789abcdef")):
        raise ProtocolError(f"field {name!r} must be {SUMMARY_DIGEST_HEX} lowercase hex digits")
    return value


@dataclass(frozen=True)
class SummaryRequest:
    digest: str | None = None  # the asker's summary digest: "same" if it matches

    def __post_init__(self) -> None:
        if self.digest is not None:
            _digest(self.digest)

    def to_json(self) -> dict:
        return {"digest": self.digest} if self.digest is not None else {}

    @classmethod
    def from_json(cls, obj) -> "SummaryRequest":
        return cls(_obj(obj, "a summary request").get("digest"))


@dataclass(frozen=True)
class SummaryReply(_Reply):
    """Every account's next sequence (those above 0), or ``same``: the asker's digest matched."""

    same: bool = False
    digest: str | None = None
    accounts: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        _bool(self.same, "same")
        if self.same:
            if self.digest is not None or self.accounts:
                raise ProtocolError("a 'same' summary carries no digest or accounts")
            return
        _digest(self.digest)
        _check_pairs(self.accounts, "accounts", MAX_SUMMARY_ACCOUNTS)

    def to_json(self) -> dict:
        if self.same:
            return {"ok": True, "same": True}
        return {"ok": True, "digest": self.digest, "accounts": [list(a) for a in self.accounts]}

    @classmethod
    def from_json(cls, obj) -> "SummaryReply":
        obj = _ok(obj, "a summary reply")
        if obj.get("same", False) is not False:
            if obj["same"] is not True:
                raise ProtocolError("field 'same' must be true or false")
            return cls(True)
        return cls(False, _get(obj, "digest"),
                   _seq_pairs(_get(obj, "accounts"), "accounts", MAX_SUMMARY_ACCOUNTS))
