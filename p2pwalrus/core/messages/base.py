"""What every blob and certificate message stands on: the bounds, the field checks (each
names the field it refuses), and the ``Request`` and ``Reply`` bases."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import ClassVar

from ...errors import ProtocolError
from ..certificates import MAX_SHARDS

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


# --- bases ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """Base of request headers: ``protocol`` is the exchange, ``reply`` its reply class."""

    protocol: ClassVar[str] = ""
    reply: ClassVar[type] = None  # set in __init__.py, once the reply classes exist


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
