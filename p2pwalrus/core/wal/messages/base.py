"""What every WAL message stands on: the bounds, the field readers (each names the field it
refuses), the refusal (:class:`Refused`) and :func:`parse_reply`."""

from __future__ import annotations

from dataclasses import dataclass

from ....errors import ProtocolError
from .. import fields
from ..orders import SignedOrder

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
