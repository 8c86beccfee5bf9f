"""The replies of the blob and certificate exchanges (listings apart: ``listings.py``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ...errors import ProtocolError
from ..certificates import MAX_SHARDS, InvalidCertificateError, StorageConfirmation
from .base import (
    MAX_OWNER_CHARS,
    MAX_ERROR_CHARS,
    MAX_TIMING_KEYS,
    MAX_SECONDS,
    MAX_LIVE_LISTED,
    _require,
    check_int,
    check_str,
    check_bool,
    check_list,
    check_indices,
    _error_of,
    _ok_of,
    Reply,
)


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
