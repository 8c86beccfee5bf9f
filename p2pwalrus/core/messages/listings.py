"""LIST_BLOBS and LIST_CERTS: a node's listing of the blobs and certificates it holds."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ProtocolError
from .base import (
    MAX_CERTS_LISTED,
    MAX_PROOFS_LISTED,
    MAX_BLOBS_LISTED,
    _require,
    check_int,
    check_bool,
    check_list,
    check_indices,
    check_blob_id,
    _blob_id_field,
    blob_id_from_str,
    blob_id_to_str,
    _optional,
    _error_of,
    _ok_of,
    Reply,
)


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
