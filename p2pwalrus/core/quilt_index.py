"""A quilt's index format (see :mod:`.quilt` for the byte layout): the little BCS it needs,
identifiers and tags, the blobs put in (``QuiltBlob``), the patches and their IDs
(``QuiltPatch``, ``QuiltPatchId``) and the index itself (``QuiltIndex``), each validated
when parsed. Importable from ``quilt`` as before."""

from __future__ import annotations

import base64
import struct
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..errors import InvalidPatchIdError, QuiltError, QuiltPatchNotFoundError
from .blob_id import BLOB_ID_LEN
from .varint import encode_uvarint, fold

QUILT_VERSION_V1 = 0x01
INDEX_PREFIX_SIZE = 1 + 4  # version byte, u32 size of the index
BLOB_HEADER_SIZE = 1 + 4 + 1  # version byte, u32 length, u8 mask
IDENTIFIER_SIZE_LEN = 2
TAGS_SIZE_LEN = 2
MAX_IDENTIFIER_BYTES = (1 << 16) - 1
MAX_INDEX_COLUMNS = 10
TAGS_FLAG = 0x01
PATCH_INTERNAL_ID_LEN = 5
PATCH_ID_LEN = BLOB_ID_LEN + PATCH_INTERNAL_ID_LEN
SYMBOL_ALIGNMENT = 2  # RS2 symbols have an even size


# --- BCS, the little of it the index needs ------------------------------------------------


def _bcs_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return encode_uvarint(len(raw)) + raw


def _bcs_tags(tags: Iterable[tuple[str, str]]) -> bytes:
    """A BCS map: entries in the order of their serialized keys (BCS's canonical order)."""
    entries = sorted((_bcs_string(k), _bcs_string(v)) for k, v in tags)
    return encode_uvarint(len(entries)) + b"".join(k + v for k, v in entries)


class _Reader:
    """A strict BCS reader: canonical ULEB128 only, UTF-8 strings, canonical maps."""

    def __init__(self, data: bytes, what: str):
        self.data, self.pos, self.what = data, 0, what

    def fail(self, why: str) -> QuiltError:
        return QuiltError(f"malformed {self.what}: {why}")

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail("truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def uleb(self) -> int:
        value = 0
        for i in range(5):  # a u32, BCS's length type
            try:
                value, last = fold(value, self.take(1)[0], i)
            except ValueError:
                raise self.fail("non-canonical length") from None
            if last:
                return value
        raise self.fail("length does not fit 32 bits")

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def string(self) -> str:
        raw = self.take(self.uleb())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail("a string is not UTF-8") from None

    def tags(self) -> tuple[tuple[str, str], ...]:
        count = self.uleb()
        out, last = [], None
        for _ in range(count):
            key_start = self.pos
            key = self.string()
            key_bytes = self.data[key_start:self.pos]
            if last is not None and key_bytes <= last:
                raise self.fail("tags are not in canonical order")
            last = key_bytes
            out.append((key, self.string()))
        return tuple(out)

    def end(self) -> None:
        if self.pos != len(self.data):
            raise self.fail(f"{len(self.data) - self.pos} bytes after its end")


# --- identifiers, blobs, patches ------------------------------------------------------------


def validate_identifier(identifier: str) -> None:
    """Walrus's rule: not empty, at most 65535 bytes, no trailing whitespace, no control characters."""
    if not isinstance(identifier, str) or not identifier:
        raise QuiltError("a quilt identifier cannot be empty")
    if len(identifier.encode("utf-8", "surrogatepass")) > MAX_IDENTIFIER_BYTES:
        raise QuiltError(f"quilt identifier {identifier[:40]!r}... is longer than {MAX_IDENTIFIER_BYTES} bytes")
    if identifier.rstrip() != identifier:
        raise QuiltError(f"quilt identifier {identifier!r} ends with whitespace")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in identifier):
        raise QuiltError(f"quilt identifier {identifier!r} contains a control character")


def _normal_tags(tags) -> tuple[tuple[str, str], ...]:
    items = tags.items() if isinstance(tags, Mapping) else tags
    out = tuple(sorted(((str(k), str(v)) for k, v in items), key=lambda kv: _bcs_string(kv[0])))  # BCS's order
    if len({k for k, _ in out}) != len(out):
        raise QuiltError("a tag name appears twice")
    return out


@dataclass(frozen=True)
class QuiltBlob:
    """One small blob to put in a quilt: its bytes, its identifier, and optional tags."""

    identifier: str
    data: bytes = field(repr=False)
    tags: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        validate_identifier(self.identifier)
        object.__setattr__(self, "tags", _normal_tags(self.tags))
        object.__setattr__(self, "data", bytes(self.data))

    def prefix(self) -> bytes:
        """The blob header, identifier and tags that precede the blob's bytes in its columns."""
        ident = _bcs_string(self.identifier)
        if len(ident) >= MAX_IDENTIFIER_BYTES:
            raise QuiltError(f"quilt identifier {self.identifier[:40]!r}... is too long")
        body = struct.pack("<H", len(ident)) + ident
        mask = 0
        if self.tags:
            tags = _bcs_tags(self.tags)
            if len(tags) > 0xFFFF:
                raise QuiltError(f"the tags of {self.identifier!r} take {len(tags)} bytes; at most 65535")
            body += struct.pack("<H", len(tags)) + tags
            mask |= TAGS_FLAG
        length = len(body) + len(self.data)
        if length > 0xFFFFFFFF:
            raise QuiltError(f"{self.identifier!r} is too large for a quilt")
        return struct.pack("<BIB", QUILT_VERSION_V1, length, mask) + body

    def serialized_size(self) -> int:
        return len(self.prefix()) + len(self.data)


@dataclass(frozen=True)
class QuiltPatch:
    """Where a patch lies in its quilt: columns [start_index, end_index)."""

    identifier: str
    start_index: int
    end_index: int
    tags: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        validate_identifier(self.identifier)
        if not 0 <= self.start_index < self.end_index <= 0xFFFF:
            raise QuiltError(f"patch {self.identifier!r} has bad columns {self.start_index}..{self.end_index}")

    @property
    def columns(self) -> range:
        return range(self.start_index, self.end_index)

    def internal_id(self) -> bytes:
        return struct.pack("<BHH", QUILT_VERSION_V1, self.start_index, self.end_index)

    def patch_id(self, quilt_id: bytes) -> "QuiltPatchId":
        return QuiltPatchId(quilt_id, self.start_index, self.end_index)


@dataclass(frozen=True)
class QuiltPatchId:
    """A patch's global ID: its quilt's blob ID and its columns."""

    quilt_id: bytes
    start_index: int
    end_index: int

    def __post_init__(self) -> None:
        if len(self.quilt_id) != BLOB_ID_LEN:
            raise InvalidPatchIdError("a quilt ID has 32 bytes")
        if not 0 <= self.start_index < self.end_index <= 0xFFFF:
            raise InvalidPatchIdError(f"a patch's columns {self.start_index}..{self.end_index} are not a range")

    def to_bytes(self) -> bytes:
        return self.quilt_id + struct.pack("<BHH", QUILT_VERSION_V1, self.start_index, self.end_index)

    def __str__(self) -> str:
        return base64.urlsafe_b64encode(self.to_bytes()).rstrip(b"=").decode("ascii")

    @classmethod
    def parse(cls, text: str) -> "QuiltPatchId":
        text = text.strip()
        shown = repr(text) if len(text) <= 60 else repr(text[:60]) + "..."
        raw = b""
        if len(text) <= 100 and all(c.isascii() and (c.isalnum() or c in "-_") for c in text):
            try:
                raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            except (ValueError, TypeError):
                raw = b""
        if len(raw) != PATCH_ID_LEN:
            raise InvalidPatchIdError(f"{shown} is not a quilt patch ID: expected {PATCH_ID_LEN} bytes "
                                      "(a quilt ID and a patch's columns) in URL-safe base64")
        if raw[BLOB_ID_LEN] != QUILT_VERSION_V1:
            raise InvalidPatchIdError(f"{shown} is a patch ID of quilt version {raw[BLOB_ID_LEN]}; "
                                      f"only version {QUILT_VERSION_V1} is known")
        start, end = struct.unpack_from("<HH", raw, BLOB_ID_LEN + 1)
        return cls(raw[:BLOB_ID_LEN], start, end)


@dataclass(frozen=True)
class QuiltIndex:
    """The patches of a quilt, in identifier order, over consecutive columns."""

    patches: tuple[QuiltPatch, ...]

    def __post_init__(self) -> None:
        names = [p.identifier for p in self.patches]
        if len(set(names)) != len(names):
            raise QuiltError("a quilt index names an identifier twice")
        for before, after in zip(self.patches, self.patches[1:]):
            if after.start_index != before.end_index:
                raise QuiltError("a quilt index's patches do not follow each other")

    def to_bytes(self) -> bytes:
        """The BCS of QuiltIndexV1 (start columns are not stored: each follows the previous end)."""
        body = [encode_uvarint(len(self.patches))]
        for p in self.patches:
            body.append(struct.pack("<H", p.end_index) + _bcs_string(p.identifier) + _bcs_tags(p.tags))
        return b"".join(body)

    @classmethod
    def from_bytes(cls, data: bytes, first_column: int, n_columns: int) -> "QuiltIndex":
        r = _Reader(data, "quilt index")
        count = r.uleb()
        if count >= n_columns:
            raise r.fail(f"{count} patches in a quilt of {n_columns} columns")
        patches, start = [], first_column
        for _ in range(count):
            end = r.u16()
            ident = r.string()
            tags = r.tags()
            if not start < end <= n_columns:
                raise r.fail(f"patch {ident[:40]!r} ends at column {end} (after {start}, of {n_columns})")
            try:
                patches.append(QuiltPatch(ident, start, end, tags))
            except QuiltError as exc:
                raise r.fail(str(exc)) from None
            start = end
        r.end()
        try:
            return cls(tuple(patches))
        except QuiltError as exc:
            raise r.fail(str(exc)) from None

    def by_identifier(self, identifier: str) -> QuiltPatch:
        for p in self.patches:
            if p.identifier == identifier:
                return p
        raise QuiltPatchNotFoundError(f"the quilt has no patch named {identifier!r}")

    def by_columns(self, start: int, end: int) -> QuiltPatch | None:
        for p in self.patches:
            if p.start_index == start and p.end_index == end:
                return p
        return None
