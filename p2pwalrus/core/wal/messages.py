"""Every JSON message of the WAL exchanges, typed (pure): ledger, governance votes, epoch chain.

One frozen value per request and per reply, checked when it is built and when it is parsed
(``from_json``), as h11's events are: a value that exists is well formed, so node and
client handle only these past the parsing boundary. What the envelopes carry is typed
already (orders, votes and certificates: ``orders.py``; governance votes: ``votes.py``;
epoch states and their certificates travel as frames of their own bytes: ``epoch_state.py``).

The wire stays as it was (the same field names and forms), so older peers interoperate:

==================  ===========================================  =====================================
protocol            request                                      reply (``{"ok": true, ...}``)
==================  ===========================================  =====================================
LEDGER_SIGN         ``{"signed"}``                               ``{"vote"}``
LEDGER_CONFIRM      ``{"certificate"}``                          ``{"new", "next_sequence"}``
LEDGER_ACCOUNT      ``{"address"}``                              ``{"authority", "epoch", "genesis",
                                                                 "known", "balance", "next_sequence",
                                                                 "pending", "stakes", "staked_with",
                                                                 "prices"}``
LEDGER_CERTS        ``{"sender", "first", "count"}``             ``{"certificates"}``
                    or ``{"recipient"}``                         or ``{"received"}``
LEDGER_SUMMARY      ``{"digest"?}``                              ``{"same": true}`` or
                                                                 ``{"digest", "accounts"}``
NODE_VOTE           ``{}``                                       ``{"vote"}`` (null: none)
EPOCH_CHAIN         ``{"from"}``                                 ``{"count"}``, then the frames
==================  ===========================================  =====================================

A refusal is ``{"ok": false, "error", "code"?, ...numbers}`` (:class:`Refused`);
:func:`parse_reply` gives the reply or the refusal. Every parse error is a ProtocolError
that names the field.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ProtocolError
from . import fields
from .orders import Certificate, SignedOrder, Vote
from .votes import SignedNodeVote

CERT_PAGE = 64  # certificates per ledger-certs answer
MAX_RECEIVED = 500  # (sender, sequence) references per ledger-certs answer for a recipient
MAX_SUMMARY_ACCOUNTS = 50_000  # accounts per ledger-summary answer (about 3 MiB)
MAX_STAKES = 4096  # nodes an account's stakes name in an account answer
MAX_LINKS_PER_REPLY = 64  # decided links per epoch-chain answer
MAX_ERROR = 2000  # characters of a refusal's reason
MAX_CODE = 64
SUMMARY_DIGEST_HEX = 32  # a ledger summary digest: Blake2b-128, hex
_U64 = fields.U64_MAX


# --- field readers: each names the field it refuses ---


def _obj(obj, what: str) -> dict:
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} must be a JSON object")
    return obj


def _get(obj: dict, name: str):
    if name not in obj:
        raise ProtocolError(f"missing field {name!r}")
    return obj[name]


def _int(value, name: str, lo: int = 0, hi: int = _U64) -> int:
    return fields.integer(value, f"field {name!r}", lo, hi)


def _bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise ProtocolError(f"field {name!r} must be true or false")
    return value


def _peer(value, name: str) -> str:
    return fields.peer_id(value, f"field {name!r}")


def _seq_pairs(value, name: str, limit: int) -> tuple[tuple[str, int], ...]:
    """[[peer ID, integer], ...] of at most ``limit`` items."""
    if not isinstance(value, list) or len(value) > limit:
        raise ProtocolError(f"field {name!r} must be a list of at most {limit} [address, integer] pairs")
    out = []
    for item in value:
        if not isinstance(item, list) or len(item) != 2:
            raise ProtocolError(f"field {name!r} must hold [address, integer] pairs")
        out.append((_peer(item[0], name), _int(item[1], name)))
    return tuple(out)


def _check_pairs(pairs, name: str, limit: int) -> None:
    if not isinstance(pairs, tuple) or len(pairs) > limit:
        raise ProtocolError(f"field {name!r} holds at most {limit} pairs")
    for pair in pairs:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise ProtocolError(f"field {name!r} must hold (address, integer) pairs")
        _peer(pair[0], name)
        _int(pair[1], name)


def _typed(value, cls, name: str):
    if not isinstance(value, cls):
        raise ProtocolError(f"field {name!r} must be a {cls.__name__}")
    return value


# --- refusals ---


_DETAILS = ("epoch", "next_sequence", "balance", "staked", "first", "last")


@dataclass(frozen=True)
class Refused:
    """``{"ok": false, "error": reason, "code"?: ..., numbers?}``: why a node did not do it.

    ``code`` says what for a program (``ledger.RefusalCode``, ``"missing"``, ``"not_a_member"``);
    the numbers are what the wallet needs to say why (balance, next sequence, the node's epoch,
    the missing certificates); ``pending``: the other order the node signed at that sequence."""

    error: str
    code: str | None = None
    epoch: int | None = None
    next_sequence: int | None = None
    balance: int | None = None  # may be below zero at a node that has not applied credits yet
    staked: int | None = None
    first: int | None = None
    last: int | None = None
    pending: SignedOrder | None = None

    ok = False

    def __post_init__(self) -> None:
        if not isinstance(self.error, str) or len(self.error) > MAX_ERROR:
            raise ProtocolError(f"field 'error' must be a string of at most {MAX_ERROR} characters")
        if self.code is not None and (not isinstance(self.code, str) or not 0 < len(self.code) <= MAX_CODE):
            raise ProtocolError(f"field 'code' must be a string of at most {MAX_CODE} characters")
        for name in _DETAILS:
            value = getattr(self, name)
            if value is not None:
                _int(value, name, -_U64 if name == "balance" else 0)
        if self.pending is not None:
            _typed(self.pending, SignedOrder, "pending")

    @classmethod
    def because(cls, error: str, code: str | None = None, **details) -> "Refused":
        """A refusal to send: the reason cut to MAX_ERROR characters."""
        return cls(str(error)[:MAX_ERROR], code, **details)

    @classmethod
    def from_refusal(cls, refusal) -> "Refused":
        """From the ledger's ``Refusal`` (its code and numbers)."""
        details = dict(refusal.details)
        pending = details.pop("pending", None)
        if isinstance(pending, dict):
            pending = SignedOrder.from_json(pending)
        return cls.because(str(refusal), refusal.code.value, pending=pending, **details)

    def detail(self, name: str) -> int | None:
        return getattr(self, name) if name in _DETAILS else None

    def to_json(self) -> dict:
        out: dict = {"ok": False}
        if self.code is not None:
            out["code"] = self.code
        out["error"] = self.error
        for name in _DETAILS:
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.pending is not None:
            out["pending"] = self.pending.to_json()
        return out

    @classmethod
    def from_json(cls, obj) -> "Refused":
        obj = _obj(obj, "a refusal")
        if obj.get("ok") is not False:
            raise ProtocolError("field 'ok' of a refusal must be false")
        error = obj.get("error", "")
        if not isinstance(error, str):
            raise ProtocolError("field 'error' must be a string")
        pending = obj.get("pending")
        return cls(error[:MAX_ERROR], obj.get("code"), **{k: obj.get(k) for k in _DETAILS},
                   pending=SignedOrder.from_json(pending) if pending is not None else None)


class _Reply:
    """A reply with ``"ok": true``."""

    ok = True


def parse_reply(obj, reply_type):
    """``reply_type.from_json(obj)`` if ``obj`` says ok, else a :class:`Refused`; ProtocolError if
    it is neither."""
    obj = _obj(obj, "a reply")
    ok = _bool(_get(obj, "ok"), "ok")
    return reply_type.from_json(obj) if ok else Refused.from_json(obj)


def _ok(obj, what: str) -> dict:
    obj = _obj(obj, what)
    if obj.get("ok") is not True:
        raise ProtocolError(f"field 'ok' of {what} must be true")
    return obj


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


# --- node-vote ---


@dataclass(frozen=True)
class VoteRequest:
    def to_json(self) -> dict:
        return {}

    @classmethod
    def from_json(cls, obj) -> "VoteRequest":
        _obj(obj, "a vote request")
        return cls()


@dataclass(frozen=True)
class VoteReply(_Reply):
    vote: SignedNodeVote | None  # None: the node votes nothing

    def __post_init__(self) -> None:
        if self.vote is not None:
            _typed(self.vote, SignedNodeVote, "vote")

    def to_json(self) -> dict:
        return {"ok": True, "vote": self.vote.to_json() if self.vote is not None else None}

    @classmethod
    def from_json(cls, obj) -> "VoteReply":
        vote = _ok(obj, "a vote reply").get("vote")
        return cls(SignedNodeVote.from_json(vote) if vote is not None else None)


# --- epoch-chain ---


@dataclass(frozen=True)
class ChainRequest:
    """The decided links from epoch ``first`` on (``{"from": first}``)."""

    first: int

    def __post_init__(self) -> None:
        if type(self.first) is not int or not 1 <= self.first <= _U64:
            raise ProtocolError("'from' must be an epoch of at least 1")

    def to_json(self) -> dict:
        return {"from": self.first}

    @classmethod
    def from_json(cls, obj) -> "ChainRequest":
        return cls(_get(_obj(obj, "a chain request"), "from"))


@dataclass(frozen=True)
class ChainReply(_Reply):
    """How many links follow, each as two frames: the state's bytes, its certificate's."""

    count: int

    def __post_init__(self) -> None:
        if type(self.count) is not int or not 0 <= self.count <= MAX_LINKS_PER_REPLY:
            raise ProtocolError(f"a chain reply holds at most {MAX_LINKS_PER_REPLY} links")

    def to_json(self) -> dict:
        return {"ok": True, "count": self.count}

    @classmethod
    def from_json(cls, obj) -> "ChainReply":
        return cls(_get(_ok(obj, "a chain reply"), "count"))


__all__ = [
    "AccountReply", "AccountRequest", "CERT_PAGE", "CertsReply", "CertsRequest", "ChainReply", "ChainRequest",
    "ConfirmReply", "ConfirmRequest", "MAX_LINKS_PER_REPLY", "MAX_RECEIVED", "MAX_SUMMARY_ACCOUNTS",
    "ReceivedReply", "ReceivedRequest", "Refused", "SignReply", "SignRequest", "SummaryReply",
    "SummaryRequest", "VoteReply", "VoteRequest", "parse_certs_request", "parse_reply",
]
