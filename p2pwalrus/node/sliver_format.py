"""The on-disk format of the sliver store's files: names, headers and checksums, and the
writing and fsync of one temp file (node/sliver_store.py keeps the index and the commits).

Every file is a header then its content, so a torn or corrupted file is detected on read
and never returned as data (it reads as missing, and repair restores it). Two headers:

- ``b"PWS1" + blake2b-256(content)`` (36 bytes): what ``put_*`` write.
- ``b"PWS2" + blake2b-256(u32le(c) || L_0 || ... || L_k-1) + u32le(c)`` (40 bytes), where
  L_i = blake2b-256(0x00 || i-th c-byte chunk of the content) (the last chunk may be
  short): what ``put_slivers`` writes when it is handed those leaf hashes. With ``c`` the
  symbol size they are the Merkle leaf hashes that verifying a sliver computes anyway
  (rs2.verify_slivers), so the checksum costs no second pass over the sliver. A read
  recomputes every L_i from the bytes on disk, so any changed, missing or extra byte
  changes the digest just as with PWS1 (Blake2b's collision resistance either way), and a
  changed ``c`` changes both the chunking and the hashed prefix.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from p2pwalrus.durable import write_direct as _write_direct
from p2pwalrus.errors import InvalidBlobIdError, StorageError

PRIMARY = "primary"
SECONDARY = "secondary"
_KIND_PREFIX = {PRIMARY: "p", SECONDARY: "s"}
_PREFIX_KIND = {"p": PRIMARY, "s": SECONDARY}

_MAGIC = b"PWS1"
HEADER_LEN = len(_MAGIC) + 32
_MAGIC2 = b"PWS2"
_CHUNK = struct.Struct("<I")
HEADER2_LEN = len(_MAGIC2) + 32 + _CHUNK.size
_IO_THREADS = 8  # file writes+fsyncs of one group commit in flight at once
_SLIVER_RE = re.compile(r"^([ps])(0|[1-9][0-9]*)$")
_BLOB_DIR_RE = re.compile(r"^[0-9a-f]{64}$")
_TMP_SUFFIX = ".tmp"
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _digest(data) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def _is_store_file(name: str) -> bool:
    return name in ("meta", "state", "cert") or _SLIVER_RE.match(name) is not None


def _storage_error(exc: OSError, action: str, path: Path) -> StorageError:
    if exc.errno in _DISK_FULL:
        hint = "the disk is full: free space on it or lower the node's capacity_bytes"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        hint = "permission denied: make the store directory writable by the node's user"
    elif exc.errno == errno.EROFS:
        hint = "the file system is read-only: remount it read-write or move the store"
    else:
        hint = f"{exc.strerror or exc}: check the disk and the store directory"
    return StorageError(f"cannot {action} {path}: {hint}")


def _blob_key(blob_id: bytes) -> str:
    if not isinstance(blob_id, (bytes, bytearray)) or len(blob_id) != 32:
        raise InvalidBlobIdError(f"a blob ID must be 32 raw bytes, got {blob_id!r:.80}")
    return bytes(blob_id).hex()


def _sliver_name(shard: int, kind: str) -> str:
    if not isinstance(shard, int) or isinstance(shard, bool) or shard < 0:
        raise ValueError(f"shard must be a non-negative int, got {shard!r}")
    if kind not in _KIND_PREFIX:
        raise ValueError(f"sliver kind must be {PRIMARY!r} or {SECONDARY!r}, got {kind!r}")
    return f"{_KIND_PREFIX[kind]}{shard}"


@dataclass(eq=False)
class _Pending:
    """One file of a group commit."""

    name: str
    data: memoryview
    leaves: SymbolLeaves | None = None  # given: a PWS2 file checksummed over these
    enforce_capacity: bool = True
    size: int = 0
    tmp: Path | None = None
    fd: int | None = None
    created: bool = False

    @property
    def header_len(self) -> int:
        return HEADER_LEN if self.leaves is None else HEADER2_LEN


@dataclass(frozen=True)
class SymbolLeaves:
    """The leaf hashes H(0x00 || chunk) of a file's content cut in ``chunk``-byte pieces.

    Handed in by a caller that has just computed them over exactly these bytes (a verified
    sliver's symbols: rs2.verify_slivers), so that the file's checksum costs no second
    pass over the data.
    """

    chunk: int
    leaves: bytes  # 32 bytes per chunk, in order


def _leaf_hashes_of(content, chunk: int) -> bytes:
    mv = memoryview(content).cast("B")
    out = []
    for i in range(0, len(mv), chunk):
        h = hashlib.blake2b(b"\x00", digest_size=32)
        h.update(mv[i:i + chunk])
        out.append(h.digest())
    return b"".join(out)


def _digest2(chunk: int, leaves: bytes) -> bytes:
    return _digest(_CHUNK.pack(chunk) + leaves)


def _header(f: _Pending) -> bytes:
    if f.leaves is None:
        return _MAGIC + _digest(f.data)
    chunk = f.leaves.chunk
    if not 1 <= chunk <= 0xFFFFFFFF or len(f.leaves.leaves) != 32 * -(-f.data.nbytes // chunk):
        raise ValueError(f"{f.name}: {len(f.leaves.leaves)} bytes of leaf hashes do not fit "
                         f"{f.data.nbytes} bytes in chunks of {chunk}")
    return _MAGIC2 + _digest2(chunk, f.leaves.leaves) + _CHUNK.pack(chunk)


def _check(header: bytes, content: bytes) -> str | None:
    """Why a file's header does not vouch for its content, or None if it does."""
    if len(header) == HEADER_LEN and header.startswith(_MAGIC):
        return None if _digest(content) == header[len(_MAGIC):] else "checksum mismatch"
    if len(header) == HEADER2_LEN and header.startswith(_MAGIC2):
        (chunk,) = _CHUNK.unpack_from(header, HEADER_LEN)
        if chunk == 0:
            return "bad or truncated header"
        digest = _digest2(chunk, _leaf_hashes_of(content, chunk))
        return None if digest == header[len(_MAGIC2):HEADER_LEN] else "checksum mismatch"
    return "bad or truncated header"


# Contents at least this large are written with O_DIRECT (Linux; durable.write_direct, an
# aligned buffer per I/O thread): the node fsyncs them at once anyway, and a buffered write
# first copies them into page-cache pages. On this machine's virtual CPUs those fresh pages
# made that copy the nodes' largest single cost (28% of their CPU during 64 MiB stores,
# perf). A file system that refuses O_DIRECT (tmpfs) gets the buffered write.
# P2PWALRUS_DIRECT_IO=0 turns it off (every write buffered).
_DIRECT_ON = os.environ.get("P2PWALRUS_DIRECT_IO", "1") != "0"
_DIRECT_MIN = 256 * 1024
_DIRECT_MAX = 64 << 20  # larger contents: buffered (no bounce buffer that large per thread)


def _write_and_sync(f: _Pending, blob_dir: Path) -> None:
    """Write a temp file's header and content and fsync it; runs without the store's lock."""
    try:
        try:
            header = _header(f)
            with os.fdopen(f.fd, "wb", buffering=0, closefd=True) as out:
                f.fd = None  # closed by the with, whatever happens
                data = memoryview(f.data).cast("B")
                if not (_DIRECT_ON and hasattr(os, "O_DIRECT") and _DIRECT_MIN <= data.nbytes <= _DIRECT_MAX
                        and _write_direct(out.fileno(), header, data)):
                    for part in (memoryview(header), data):
                        while part.nbytes:
                            part = part[out.write(part):]
                os.fsync(out.fileno())
        except OSError as exc:
            raise _storage_error(exc, "write", blob_dir / f.name) from exc
    finally:
        if f.fd is not None:  # fdopen itself failed
            os.close(f.fd)
            f.fd = None


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _io_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_IO_THREADS, thread_name_prefix="p2pwalrus-fsync")
        return _pool
