"""Every JSON request header and JSON reply of the blob and certificate exchanges, typed.

One frozen dataclass per message, in the pure core (no libp2p, no trio, no I/O). A message
checks itself when it is built (``__post_init__``: types, non-negative epochs, 32-byte blob
IDs, signature and nonce lengths) and when it is parsed from a peer (``from_json(obj, *,
n_shards)``: the same, plus the bounds that depend on the network: pair and shard indices
below n, list lengths): a malformed message raises ``ProtocolError`` naming the field, so
nothing malformed gets past the parsing boundary into a handler or a client.

The wire form is the one peers spoke before these classes existed (same field names, same
value forms): ``to_json()`` gives the dict ``rpc.send_json`` sends. Unknown fields are
ignored, so a peer may add some later.

Exchanges (protocol IDs in ``core/protocols.py``); a binary frame follows some headers:

=============  =======================  ==============================================
protocol       request                  reply
=============  =======================  ==============================================
STORE          StoreRequest + frames    StoreReply
GET_METADATA   GetMetadataRequest       BlobReply (+ metadata frame when ok)
GET_SLIVER     GetSliverRequest         BlobReply (+ sliver frame when ok)
GET_RECOVERY   RecoveryRequest          RecoveryReply (+ symbols frame when ok)
BLOB_STATUS    BlobStatusRequest        BlobStatusReply
LIST_BLOBS     ListBlobsRequest         ListBlobsReply
DELETE         DeleteRequest            Reply
NODE_INFO      NodeInfoRequest          NodeInfoReply
GET_CERT       GetCertRequest           BlobReply (+ certificate frame when ok)
PUT_CERT       certificate frame        NewReply
LIST_CERTS     ListCertsRequest         ListCertsReply
CONFIRM        ConfirmRequest           ConfirmReply
PUT_PROOF      proof frame              NewReply
GET_PROOF      GetProofRequest          BlobReply (+ proof frame when ok)
=============  =======================  ==============================================

Every reply may be an error: ``{"ok": false, "error": "..."}`` (what ``rpc.serve`` answers
to any ProtocolError), with the extra fields its class names (``invalid``, ``refused``).
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import ClassVar

from ..errors import ProtocolError
from . import protocols
from .certificates import DELETE_NONCE_BYTES, MAX_SHARDS, InvalidCertificateError, StorageConfirmation

BLOB_ID_BYTES = 32
SIGNATURE_BYTES = 64
PRIMARY, SECONDARY = "primary", "secondary"  # sliver kinds and recovery axes (rs2.PRIMARY, rs2.SECONDARY)
MAX_OWNER_CHARS = 256  # a peer ID's text (52 characters for an Ed25519 key)
MAX_ERROR_CHARS = 4096
MAX_TIMING_KEYS = 16
MAX_SECONDS = 1e6  # a node's reported time for one store (StoreReply.timing)
MAX_CERTS_LISTED = 20_000  # LIST_CERTS: certificates named per reply
MAX_PROOFS_LISTED = 1_000  # LIST_CERTS: invalid blobs named per reply
MAX_BLOBS_LISTED = 10_000  # LIST_BLOBS: blobs per reply
MAX_LIVE_LISTED = 4_096  # NODE_INFO: live members named


# --- field checks: each names the field it refuses ------------------------------------------


def _require(obj: dict, name: str):
    if not isinstance(obj, dict):
        raise ProtocolError("message is not a JSON object")
    if name not in obj:
        raise ProtocolError(f"missing field {name!r}")
    return obj[name]


def _is_int(value) -> bool:
    return type(value) is int  # bool is not an int on the wire


def check_int(name: str, value, *, low: int = 0, high: int | None = None) -> int:
    """An integer (not a bool) in [low, high); ProtocolError naming the field otherwise."""
    if not _is_int(value):
        raise ProtocolError(f"field {name!r} must be an integer")
    if value < low or (high is not None and value >= high):
        bound = f"in [{low}, {high})" if high is not None else f"at least {low}"
        raise ProtocolError(f"field {name!r} must be {bound}, not {value}")
    return value


def check_str(name: str, value, *, max_len: int | None = None) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"field {name!r} must be str")
    if max_len is not None and len(value) > max_len:
        raise ProtocolError(f"field {name!r} longer than {max_len} characters")
    return value


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ProtocolError(f"field {name!r} must be bool")
    return value


def check_list(name: str, value, *, max_len: int) -> list:
    if not isinstance(value, (list, tuple)):
        raise ProtocolError(f"field {name!r} must be list")
    if len(value) > max_len:
        raise ProtocolError(f"field {name!r} has {len(value)} items, at most {max_len} allowed")
    return list(value)


def check_indices(name: str, value, *, n_shards: int | None, distinct: bool = False) -> tuple[int, ...]:
    """Pair, shard or symbol indices: at most n of them, each in [0, n) (MAX_SHARDS without n)."""
    bound = MAX_SHARDS if n_shards is None else n_shards
    items = check_list(name, value, max_len=bound)
    for i, item in enumerate(items):
        check_int(f"{name}[{i}]", item, high=bound)
    if distinct and len(set(items)) != len(items):
        raise ProtocolError(f"field {name!r} must be distinct indices")
    return tuple(items)


def check_blob_id(value, name: str = "blob_id") -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) != BLOB_ID_BYTES:
        raise ProtocolError(f"{name} must be {BLOB_ID_BYTES} bytes")
    return bytes(value)


def _hex_field(obj: dict, name: str, size: int | None = None) -> bytes:
    text = check_str(name, _require(obj, name))
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ProtocolError(f"{name} must be hex") from None
    if size is not None and len(raw) != size:
        raise ProtocolError(f"{name} must be {size} bytes")
    return raw


def _blob_id_field(obj: dict, name: str = "blob_id") -> bytes:
    return _hex_field(obj, name, BLOB_ID_BYTES)


def blob_id_from_str(text, name: str = "blob_id") -> bytes:
    """A blob ID in its printed form (43 characters of URL-safe base64), strictly."""
    check_str(name, text, max_len=64)
    if len(text) != 43:
        raise ProtocolError(f"{name} must be 43 characters of URL-safe base64")
    try:
        raw = base64.urlsafe_b64decode(text + "=")
    except (ValueError, TypeError):
        raise ProtocolError(f"{name} must be URL-safe base64") from None
    if len(raw) != BLOB_ID_BYTES or base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != text:
        raise ProtocolError(f"{name} must be {BLOB_ID_BYTES} bytes in URL-safe base64")
    return raw


def blob_id_to_str(blob_id: bytes) -> str:
    return base64.urlsafe_b64encode(blob_id).rstrip(b"=").decode("ascii")


def _optional(obj: dict, name: str, default=None):
    value = obj.get(name, default)
    return default if value is None else value


def _check_payment(value) -> dict | None:
    if value is not None and not isinstance(value, dict):
        raise ProtocolError("field 'payment' must be an object (a payment certificate)")
    return value


def _check_error(ok, error) -> None:
    check_bool("ok", ok)
    if ok:
        if error is not None:
            raise ProtocolError("field 'error' in a reply that says ok")
    else:
        check_str("error", error, max_len=MAX_ERROR_CHARS)


def _error_of(obj: dict):
    """A refusal's reason (a refusal without one, as a node saying only "invalid": "")."""
    if obj.get("ok") is True:
        return None
    return _optional(obj, "error", "")


def _ok_of(obj: dict) -> bool:
    return check_bool("ok", _require(obj, "ok"))


# --- requests ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """Base of request headers: ``protocol`` is the exchange, ``reply`` its reply class."""

    protocol: ClassVar[str] = ""
    reply: ClassVar[type] = None  # set below, once the reply classes exist


@dataclass(frozen=True)
class EmptyRequest(Request):
    """A request without fields: ``{}`` (LIST_BLOBS, NODE_INFO, LIST_CERTS)."""

    def to_json(self) -> dict:
        return {}

    @classmethod
    def from_json(cls, obj: dict, *, n_shards: int | None = None):
        if not isinstance(obj, dict):
            raise ProtocolError("message is not a JSON object")
        return cls()


@dataclass(frozen=True)
class BlobRequest(Request):
    """A request naming one blob: ``{"blob_id": hex}``."""

    blob_id: bytes

    def __post_init__(self):
        check_blob_id(self.blob_id)

    def to_json(self) -> dict:
        return {"blob_id": self.blob_id.hex()}

    @classmethod
    def from_json(cls, obj: dict, *, n_shards: int | None = None):
        return cls(_blob_id_field(obj))


@dataclass(frozen=True)
class GetMetadataRequest(BlobRequest):
    protocol: ClassVar[str] = protocols.GET_METADATA


@dataclass(frozen=True)
class BlobStatusRequest(BlobRequest):
    protocol: ClassVar[str] = protocols.BLOB_STATUS


@dataclass(frozen=True)
class GetCertRequest(BlobRequest):
    protocol: ClassVar[str] = protocols.GET_CERT


@dataclass(frozen=True)
class GetProofRequest(BlobRequest):
    protocol: ClassVar[str] = protocols.GET_PROOF


@dataclass(frozen=True)
class ListBlobsRequest(EmptyRequest):
    protocol: ClassVar[str] = protocols.LIST_BLOBS


@dataclass(frozen=True)
class NodeInfoRequest(EmptyRequest):
    protocol: ClassVar[str] = protocols.NODE_INFO


@dataclass(frozen=True)
class ListCertsRequest(EmptyRequest):
    protocol: ClassVar[str] = protocols.LIST_CERTS


@dataclass(frozen=True)
class StoreRequest(Request):
    """STORE's header; the metadata frame and a primary and a secondary sliver frame per pair follow."""

    protocol: ClassVar[str] = protocols.STORE

    blob_id: bytes
    epoch: int
    end_epoch: int
    pairs: tuple[int, ...]
    deletable: bool = False
    owner: str = ""
    payment: dict | None = None  # a storage payment certificate as JSON (networks with prices)

    def __post_init__(self):
        check_blob_id(self.blob_id)
        check_int("epoch", self.epoch)
        check_int("end_epoch", self.end_epoch)
        object.__setattr__(self, "pairs", check_indices("pairs", self.pairs, n_shards=None, distinct=True))
        check_bool("deletable", self.deletable)
        check_str("owner", self.owner, max_len=MAX_OWNER_CHARS)
        _check_payment(self.payment)

    def check(self, n_shards: int) -> "StoreRequest":
        check_indices("pairs", self.pairs, n_shards=n_shards, distinct=True)
        return self

    def to_json(self) -> dict:
        out = {"blob_id": self.blob_id.hex(), "epoch": self.epoch, "end_epoch": self.end_epoch,
               "pairs": list(self.pairs), "deletable": self.deletable, "owner": self.owner}
        if self.payment is not None:
            out["payment"] = self.payment
        return out

    @classmethod
    def from_json(cls, obj: dict, *, n_shards: int) -> "StoreRequest":
        # Checked in the order the fields are sent: the first bad one is the one named.
        blob_id = _blob_id_field(obj)
        epoch = check_int("epoch", _require(obj, "epoch"))
        end_epoch = check_int("end_epoch", _require(obj, "end_epoch"))
        pairs = check_indices("pairs", _require(obj, "pairs"), n_shards=n_shards, distinct=True)
        return cls(blob_id, epoch, end_epoch, pairs, _optional(obj, "deletable", False), _optional(obj, "owner", ""),
                   obj.get("payment"))


@dataclass(frozen=True)
class ConfirmRequest(Request):
    """CONFIRM: sign the shards of a certified blob held now, for new epochs (extensions, renewals)."""

    protocol: ClassVar[str] = protocols.CONFIRM

    blob_id: bytes
    epoch: int
    end_epoch: int
    payment: dict | None = None

    def __post_init__(self):
        check_blob_id(self.blob_id)
        check_int("epoch", self.epoch)
        check_int("end_epoch", self.end_epoch)
        _check_payment(self.payment)

    def to_json(self) -> dict:
        out = {"blob_id": self.blob_id.hex(), "epoch": self.epoch, "end_epoch": self.end_epoch}
        if self.payment is not None:
            out["payment"] = self.payment
        return out

    @classmethod
    def from_json(cls, obj: dict, *, n_shards: int | None = None) -> "ConfirmRequest":
        blob_id = _blob_id_field(obj)
        epoch = check_int("epoch", _require(obj, "epoch"))
        end_epoch = check_int("end_epoch", _require(obj, "end_epoch"))
        return cls(blob_id, epoch, end_epoch, obj.get("payment"))


@dataclass(frozen=True)
class GetSliverRequest(Request):
    protocol: ClassVar[str] = protocols.GET_SLIVER

    blob_id: bytes
    pair: int
    kind: str  # PRIMARY or SECONDARY

    def __post_init__(self):
        check_blob_id(self.blob_id)
        check_int("pair", self.pair, high=MAX_SHARDS)
        if self.kind not in (PRIMARY, SECONDARY):
            raise ProtocolError(f"field 'kind' must be {PRIMARY!r} or {SECONDARY!r}")

    def to_json(self) -> dict:
        return {"blob_id": self.blob_id.hex(), "pair": self.pair, "kind": self.kind}

    @classmethod
    def from_json(cls, obj: dict, *, n_shards: int) -> "GetSliverRequest":
        blob_id = _blob_id_field(obj)
        pair = check_int("pair", _require(obj, "pair"), high=n_shards)
        return cls(blob_id, pair, check_str("kind", _require(obj, "kind")))


@dataclass(frozen=True)
class RecoveryRequest(Request):
    """GET_RECOVERY: the symbols of pair ``pair``'s sliver on ``axis`` that rebuild ``targets``."""

    protocol: ClassVar[str] = protocols.GET_RECOVERY

    blob_id: bytes
    pair: int
    axis: str  # PRIMARY or SECONDARY
    targets: tuple[int, ...]

    def __post_init__(self):
        check_blob_id(self.blob_id)
        check_int("pair", self.pair, high=MAX_SHARDS)
        if self.axis not in (PRIMARY, SECONDARY):
            raise ProtocolError(f"field 'axis' must be {PRIMARY!r} or {SECONDARY!r}")
        object.__setattr__(self, "targets", check_indices("targets", self.targets, n_shards=None))

    def to_json(self) -> dict:
        return {"blob_id": self.blob_id.hex(), "pair": self.pair, "axis": self.axis, "targets": list(self.targets)}

    @classmethod
    def from_json(cls, obj: dict, *, n_shards: int) -> "RecoveryRequest":
        blob_id = _blob_id_field(obj)
        pair = check_int("pair", _require(obj, "pair"), high=n_shards)
        axis = check_str("axis", _require(obj, "axis"))
        if axis not in (PRIMARY, SECONDARY):
            raise ProtocolError(f"field 'axis' must be {PRIMARY!r} or {SECONDARY!r}")
        targets = check_indices("targets", _require(obj, "targets"), n_shards=n_shards)
        return cls(blob_id, pair, axis, targets)


@dataclass(frozen=True)
class DeleteRequest(Request):
    """DELETE: the owner's signature over (network, blob, epoch, nonce); a node takes a nonce once."""

    protocol: ClassVar[str] = protocols.DELETE

    blob_id: bytes
    epoch: int
    signature: bytes
    nonce: bytes

    def __post_init__(self):
        check_blob_id(self.blob_id)
        check_int("epoch", self.epoch)
        if not isinstance(self.signature, bytes) or len(self.signature) != SIGNATURE_BYTES:
            raise ProtocolError(f"signature must be {SIGNATURE_BYTES} bytes")
        if not isinstance(self.nonce, bytes) or len(self.nonce) != DELETE_NONCE_BYTES:
            raise ProtocolError(f"nonce must be {DELETE_NONCE_BYTES} bytes")

    def to_json(self) -> dict:
        return {"blob_id": self.blob_id.hex(), "signature": self.signature.hex(), "epoch": self.epoch,
                "nonce": self.nonce.hex()}

    @classmethod
    def from_json(cls, obj: dict, *, n_shards: int | None = None) -> "DeleteRequest":
        blob_id = _blob_id_field(obj)
        epoch = check_int("epoch", _require(obj, "epoch"))
        return cls(blob_id, epoch, _hex_field(obj, "signature", SIGNATURE_BYTES),
                   _hex_field(obj, "nonce", DELETE_NONCE_BYTES))


# --- replies ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """``{"ok": true}``, or ``{"ok": false, "error": why}`` (DELETE; the base of every reply)."""

    ok: bool = True
    error: str | None = None

    def __post_init__(self):
        _check_error(self.ok, self.error)

    @classmethod
    def failed(cls, error: str, **extra):
        return cls(ok=False, error=error, **extra)

    def _base_json(self) -> dict:
        return {"ok": True} if self.ok else {"ok": False, "error": self.error}

    def to_json(self) -> dict:
        return self._base_json()

    @classmethod
    def from_json(cls, obj: dict, *, n_shards: int | None = None):
        return cls(_ok_of(obj), _error_of(obj))


@dataclass(frozen=True)
class BlobReply(Reply):
    """The header before a blob's bytes (metadata, sliver, certificate, proof): ``{"ok": true}``
    and the frame; ``{"ok": false, "error": "not found"}``; or, from a node holding the blob's
    inconsistency proof, ``"invalid": true`` (GET_CERT says ``invalid`` either way)."""

    invalid: bool | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.invalid is not None:
            check_bool("invalid", self.invalid)

    @classmethod
    def not_found(cls, invalid: bool | None = None) -> "BlobReply":
        return cls(False, "not found", invalid)

    def to_json(self) -> dict:
        out = self._base_json()
        if self.invalid is not None:
            out["invalid"] = self.invalid
        return out

    @classmethod
    def from_json(cls, obj: dict, *, n_shards: int | None = None) -> "BlobReply":
        return cls(_ok_of(obj), _error_of(obj), obj.get("invalid"))


INVALID_REPLY = BlobReply(False, "invalid", True)  # a node that holds the blob's inconsistency proof


@dataclass(frozen=True)
class NewReply(Reply):
    """PUT_CERT and PUT_PROOF: ``{"ok": true, "new": whether it was news here}``."""

    new: bool | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.ok:
            check_bool("new", self.new)

    def to_json(self) -> dict:
        out = self._base_json()
        if self.ok:
            out["new"] = self.new
        return out

    @classmethod
    def from_json(cls, obj: dict, *, n_shards: int | None = None) -> "NewReply":
        ok = _ok_of(obj)
        return cls(ok, _error_of(obj), _require(obj, "new") if ok else None)


def _check_refused(value, n_shards: int | None) -> dict[int, str]:
    bound = MAX_SHARDS if n_shards is None else n_shards
    if not isinstance(value, dict):
        raise ProtocolError("field 'refused' must be an object")
    if len(value) > bound:
        raise ProtocolError(f"field 'refused' names {len(value)} pairs, at most {bound} allowed")
    out = {}
    for key, why in value.items():
        if isinstance(key, str):
            if not (key.isascii() and key.isdigit()) or len(key) > 6:
                raise ProtocolError("field 'refused' keys must be pair indices")
            key = int(key)
        check_int("refused pair", key, high=bound)
        out[key] = check_str(f"refused[{key}]", why, max_len=MAX_ERROR_CHARS)
    return out


def _check_timing(value) -> dict[str, float]:
    if not isinstance(value, dict) or len(value) > MAX_TIMING_KEYS:
        raise ProtocolError(f"field 'timing' must be an object of at most {MAX_TIMING_KEYS} numbers")
    for key, seconds in value.items():
        if not isinstance(key, str) or isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                or (isinstance(seconds, float) and not math.isfinite(seconds)) or not 0 <= seconds <= MAX_SECONDS:
            raise ProtocolError(f"field 'timing' must map names to seconds in [0, {MAX_SECONDS}]")
    return dict(value)


def _check_confirmation(value, n_shards: int | None) -> StorageConfirmation:
    if not isinstance(value, StorageConfirmation):
        try:
            value = StorageConfirmation.from_json(value)
        except InvalidCertificateError as exc:
            raise ProtocolError(f"field 'confirmation': {exc.reason}") from None
    check_indices("confirmation shards", value.shards, n_shards=n_shards)
    return value


@dataclass(frozen=True)
class StoreReply(Reply):
    """STORE: the confirmation of the pairs stored, the pairs refused (pair -> why) and the
    node's seconds spent (``timing``: verify, write); an error may name refused pairs too."""

    confirmation: StorageConfirmation | None = None
    refused: dict[int, str] | None = None
    timing: dict[str, float] | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.ok and self.confirmation is None:
            raise ProtocolError("missing field 'confirmation'")
        if self.confirmation is not None:
            if not self.ok:
                raise ProtocolError("field 'confirmation' in a refusal")
            object.__setattr__(self, "confirmation", _check_confirmation(self.confirmation, None))
        if self.refused is not None:
            object.__setattr__(self, "refused", _check_refused(self.refused, None))
        if self.timing is not None:
            object.__setattr__(self, "timing", _check_timing(self.timing))

    def to_json(self) -> dict:
        out = self._base_json()
        if self.confirmation is not None:
            out["confirmation"] = self.confirmation.to_json()
        if self.refused is not None:
            out["refused"] = {str(k): v for k, v in self.refused.items()}
        if self.timing is not None:
            out["timing"] = self.timing
        return out

    @classmethod
    def from_json(cls, obj: dict, *, n_shards: int) -> "StoreReply":
        ok = _ok_of(obj)
        conf = _check_confirmation(_require(obj, "confirmation"), n_shards) if ok else None
        refused = obj.get("refused")
        return cls(ok, _error_of(obj), conf, None if refused is None else _check_refused(refused, n_shards),
                   obj.get("timing"))


@dataclass(frozen=True)
class ConfirmReply(Reply):
    """CONFIRM: ``{"ok": true, "confirmation": {...}}``."""

    confirmation: StorageConfirmation | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.ok and self.confirmation is None:
            raise ProtocolError("missing field 'confirmation'")
        if self.confirmation is not None:
            object.__setattr__(self, "confirmation", _check_confirmation(self.confirmation, None))

    def to_json(self) -> dict:
        out = self._base_json()
        if self.confirmation is not None:
            out["confirmation"] = self.confirmation.to_json()
        return out

    @classmethod
    def from_json(cls, obj: dict, *, n_shards: int) -> "ConfirmReply":
        ok = _ok_of(obj)
        conf = _check_confirmation(_require(obj, "confirmation"), n_shards) if ok else None
        return cls(ok, _error_of(obj), conf)


@dataclass(frozen=True)
class RecoveryReply(Reply):
    """GET_RECOVERY: ``{"ok": true, "count": symbols}`` and the symbols as one frame."""

    count: int | None = None
    invalid: bool | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.ok:
            check_int("count", self.count, high=MAX_SHARDS + 1)
        if self.invalid is not None:
            check_bool("invalid", self.invalid)

    def to_json(self) -> dict:
        out = self._base_json()
        if self.ok:
            out["count"] = self.count
        if self.invalid is not None:
            out["invalid"] = self.invalid
        return out

    @classmethod
    def from_json(cls, obj: dict, *, n_shards: int) -> "RecoveryReply":
        ok = _ok_of(obj)
        count = check_int("count", _require(obj, "count"), high=n_shards + 1) if ok else None
        return cls(ok, _error_of(obj), count, obj.get("invalid"))


@dataclass(frozen=True)
class BlobStatusReply(Reply):
    """BLOB_STATUS: the pairs both of whose slivers read back whole here, and the blob's state."""

    shards: tuple[int, ...] = ()
    certified: bool = False
    invalid: bool = False
    end_epoch: int | None = None

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "shards", check_indices("shards", self.shards, n_shards=None))
        check_bool("certified", self.certified)
        check_bool("invalid", self.invalid)
        if self.end_epoch is not None:
            check_int("end_epoch", self.end_epoch)

    def to_json(self) -> dict:
        if not self.ok:
            return self._base_json()
        return {"ok": True, "shards": list(self.shards), "certified": self.certified, "invalid": self.invalid,
                "end_epoch": self.end_epoch}

    @classmethod
    def from_json(cls, obj: dict, *, n_shards: int) -> "BlobStatusReply":
        if not _ok_of(obj):
            return cls(False, _error_of(obj))
        return cls(True, None, check_indices("shards", _require(obj, "shards"), n_shards=n_shards),
                   _require(obj, "certified"), _require(obj, "invalid"), obj.get("end_epoch"))


@dataclass(frozen=True)
class BlobListing:
    """One blob a node holds (LIST_BLOBS); its ID in the printed form (base64url) on the wire."""

    blob_id: bytes
    shards: tuple[int, ...]
    end_epoch: int | None
    certified: bool
    invalid: bool

    def __post_init__(self):
        check_blob_id(self.blob_id)
        object.__setattr__(self, "shards", check_indices("shards", self.shards, n_shards=None))
        if self.end_epoch is not None:
            check_int("end_epoch", self.end_epoch)
        check_bool("certified", self.certified)
        check_bool("invalid", self.invalid)

    def to_json(self) -> dict:
        return {"blob_id": blob_id_to_str(self.blob_id), "shards": list(self.shards), "end_epoch": self.end_epoch,
                "certified": self.certified, "invalid": self.invalid}

    @classmethod
    def from_json(cls, obj, *, n_shards: int) -> "BlobListing":
        return cls(blob_id_from_str(_require(obj, "blob_id")),
                   check_indices("shards", _require(obj, "shards"), n_shards=n_shards),
                   obj.get("end_epoch"), _require(obj, "certified"), _require(obj, "invalid"))


@dataclass(frozen=True)
class ListBlobsReply(Reply):
    blobs: tuple[BlobListing, ...] = ()

    def __post_init__(self):
        super().__post_init__()
        items = check_list("blobs", self.blobs, max_len=MAX_BLOBS_LISTED)
        if not all(isinstance(b, BlobListing) for b in items):
            raise ProtocolError("field 'blobs' must hold blob listings")
        object.__setattr__(self, "blobs", tuple(items))

    def to_json(self) -> dict:
        if not self.ok:
            return self._base_json()
        return {"ok": True, "blobs": [b.to_json() for b in self.blobs]}

    @classmethod
    def from_json(cls, obj: dict, *, n_shards: int) -> "ListBlobsReply":
        if not _ok_of(obj):
            return cls(False, _error_of(obj))
        items = check_list("blobs", _require(obj, "blobs"), max_len=MAX_BLOBS_LISTED)
        return cls(True, None, tuple(BlobListing.from_json(b, n_shards=n_shards) for b in items))


@dataclass(frozen=True)
class CertListing:
    """One certificate a node holds (LIST_CERTS): ``[blob_id hex, end_epoch, epoch]`` on the wire
    (a two-item form without the epoch from older nodes reads as epoch 0)."""

    blob_id: bytes
    end_epoch: int
    epoch: int = 0

    def __post_init__(self):
        check_blob_id(self.blob_id)
        check_int("end_epoch", self.end_epoch)
        check_int("epoch", self.epoch)

    def to_json(self) -> list:
        return [self.blob_id.hex(), self.end_epoch, self.epoch]

    @classmethod
    def from_json(cls, item) -> "CertListing":
        if not isinstance(item, list) or len(item) not in (2, 3):
            raise ProtocolError("field 'certs' items must be [blob_id, end_epoch, epoch]")
        return cls(_blob_id_field({"blob_id": item[0]}), item[1], item[2] if len(item) == 3 else 0)


@dataclass(frozen=True)
class ListCertsReply(Reply):
    """LIST_CERTS (anti-entropy): the certificates a node holds, and the blobs it has proofs for."""

    certs: tuple[CertListing, ...] = ()
    invalid: tuple[bytes, ...] = ()

    def __post_init__(self):
        super().__post_init__()
        certs = check_list("certs", self.certs, max_len=MAX_CERTS_LISTED)
        if not all(isinstance(c, CertListing) for c in certs):
            raise ProtocolError("field 'certs' must hold certificate listings")
        invalid = check_list("invalid", self.invalid, max_len=MAX_PROOFS_LISTED)
        for b in invalid:
            check_blob_id(b, "invalid blob ID")
        object.__setattr__(self, "certs", tuple(certs))
        object.__setattr__(self, "invalid", tuple(invalid))

    def to_json(self) -> dict:
        if not self.ok:
            return self._base_json()
        return {"ok": True, "certs": [c.to_json() for c in self.certs], "invalid": [b.hex() for b in self.invalid]}

    @classmethod
    def from_json(cls, obj: dict, *, n_shards: int | None = None) -> "ListCertsReply":
        if not _ok_of(obj):
            return cls(False, _error_of(obj))
        certs = check_list("certs", _optional(obj, "certs", []), max_len=MAX_CERTS_LISTED)
        invalid = check_list("invalid", _optional(obj, "invalid", []), max_len=MAX_PROOFS_LISTED)
        return cls(True, None, tuple(CertListing.from_json(c) for c in certs),
                   tuple(_blob_id_field({"invalid": b}, "invalid") for b in invalid))


@dataclass(frozen=True)
class NodeInfoReply(Reply):
    """NODE_INFO: ``{"ok": true, **status}``, the node's status (what node.json holds). The
    fields read by clients are checked; the rest (counters, repair, ledger, ...) is passed on."""

    status: dict = field(default_factory=dict)

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.status, dict):
            raise ProtocolError("node status must be an object")
        if self.ok:
            self._check(self.status, None)

    @staticmethod
    def _check(status: dict, n_shards: int | None) -> None:
        if "ok" in status or "error" in status:
            raise ProtocolError("node status must not name 'ok' or 'error'")
        check_str("peer_id", _require(status, "peer_id"), max_len=MAX_OWNER_CHARS)
        if "epoch" in status:
            check_int("epoch", status["epoch"])
        if "live" in status:
            for i, peer in enumerate(check_list("live", status["live"], max_len=MAX_LIVE_LISTED)):
                check_str(f"live[{i}]", peer, max_len=MAX_OWNER_CHARS)
        if "shards" in status:
            check_indices("shards", status["shards"], n_shards=n_shards)
        if "map_digest" in status:
            check_str("map_digest", status["map_digest"], max_len=128)
        if "blobs" in status:
            check_int("blobs", status["blobs"])

    def to_json(self) -> dict:
        if not self.ok:
            return self._base_json()
        return {"ok": True, **self.status}

    @classmethod
    def from_json(cls, obj: dict, *, n_shards: int) -> "NodeInfoReply":
        if not _ok_of(obj):
            return cls(False, _error_of(obj))
        status = {k: v for k, v in obj.items() if k != "ok"}
        cls._check(status, n_shards)
        return cls(True, None, status)


# Each request's reply class (``call`` helpers parse the answer with it).
for _request, _reply in (
    (StoreRequest, StoreReply), (GetMetadataRequest, BlobReply), (GetSliverRequest, BlobReply),
    (RecoveryRequest, RecoveryReply), (BlobStatusRequest, BlobStatusReply), (ListBlobsRequest, ListBlobsReply),
    (DeleteRequest, Reply), (NodeInfoRequest, NodeInfoReply), (GetCertRequest, BlobReply),
    (ListCertsRequest, ListCertsReply), (ConfirmRequest, ConfirmReply), (GetProofRequest, BlobReply),
):
    _request.reply = _reply
del _request, _reply

# PUT_CERT and PUT_PROOF take a raw frame (a certificate, a proof message) and answer NewReply.
PUT_CERT_REPLY = PUT_PROOF_REPLY = NewReply


def parse_reply(request: Request, obj: dict, *, n_shards: int):
    """The reply to ``request`` from a peer's JSON, typed and checked (ProtocolError otherwise)."""
    return request.reply.from_json(obj, n_shards=n_shards)
