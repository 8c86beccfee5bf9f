"""The request headers of the blob and certificate exchanges (one class per exchange)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...errors import ProtocolError
from .. import protocols
from ..certificates import DELETE_NONCE_BYTES, MAX_SHARDS
from .base import (
    SIGNATURE_BYTES,
    PRIMARY,
    SECONDARY,
    MAX_OWNER_CHARS,
    _require,
    check_int,
    check_str,
    check_bool,
    check_indices,
    check_blob_id,
    _hex_field,
    _blob_id_field,
    _optional,
    _check_payment,
    Request,
)


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
