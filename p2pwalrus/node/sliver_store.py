"""The on-disk store of a storage node: blob metadata, sliver pairs, per-blob state, certificates.

Synchronous and thread-safe; trio services call it through ``trio.to_thread.run_sync``.

Layout under ``root`` (the directory tree *is* the index: it is rebuilt by scanning at open,
so no separate index file can disagree with the data after a crash)::

    blobs/<blob id, 64 lowercase hex>/meta      blob metadata (opaque bytes)
                                     /state     per-blob state (JSON object)
                                     /cert      availability certificate (opaque bytes)
                                     /p<shard>  primary sliver held for <shard> (decimal)
                                     /s<shard>  secondary sliver held for <shard>
                                     /<name>.<random>.tmp   a write in progress
    trash/<blob id hex>.<random>/               a blob being deleted

Every file is ``b"PWS1" + blake2b-256(content) + content`` (36 header bytes), so a torn or
corrupted file is detected on read and never returned as data. Every write goes to a temp
file in the same directory, is fsynced, renamed over the final name and the directory is
fsynced: a crash at any instant leaves the old file or the new one, never a mix. Temp files
and trash are removed at open. Hex (not base64url) names stay distinct on case-insensitive
file systems.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2pwalrus.errors import CapacityExceededError, InvalidBlobIdError, StorageError

log = logging.getLogger(__name__)

PRIMARY = "primary"
SECONDARY = "secondary"
_KIND_PREFIX = {PRIMARY: "p", SECONDARY: "s"}
_PREFIX_KIND = {"p": PRIMARY, "s": SECONDARY}

_MAGIC = b"PWS1"
HEADER_LEN = len(_MAGIC) + 32
_SLIVER_RE = re.compile(r"^([ps])(0|[1-9][0-9]*)$")
_BLOB_DIR_RE = re.compile(r"^[0-9a-f]{64}$")
_TMP_SUFFIX = ".tmp"
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _digest(data) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def _is_store_file(name: str) -> bool:
    return name in ("meta", "state", "cert") or _SLIVER_RE.match(name) is not None


def _fsync_dir(path: Path) -> None:
    # Makes a create/rename/unlink in this directory durable, not just the file's bytes.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


@dataclass
class _Blob:
    files: dict[str, int] = field(default_factory=dict)  # file name -> size on disk
    inflight: int = 0  # writes whose temp file exists but is not yet committed


class SliverStore:
    """Crash-safe store of one node's blobs. See the module docstring for the layout.

    ``capacity_bytes`` (None = unlimited) bounds the on-disk size of all stored files,
    headers included; ``bytes_used()`` is that size.
    """

    def __init__(self, root: Path | str, capacity_bytes: int | None = None):
        if capacity_bytes is not None and capacity_bytes < 0:
            raise ValueError(f"capacity_bytes must be >= 0 or None, got {capacity_bytes}")
        self.root = Path(root)
        self._capacity = capacity_bytes
        self._blobs_dir = self.root / "blobs"
        self._trash_dir = self.root / "trash"
        self._lock = threading.Lock()  # guards the index, byte counters, renames and unlinks
        self._state_lock = threading.Lock()  # serialises read-modify-write of state files
        self._index: dict[str, _Blob] = {}
        self._used = 0
        self._reserved = 0  # bytes of writes in progress, so concurrent puts can't overshoot
        self._closed = False
        try:
            self._open()
        except OSError as exc:
            raise _storage_error(exc, "open the sliver store at", self.root) from exc

    def _open(self) -> None:
        for d in (self.root, self._blobs_dir, self._trash_dir):
            d.mkdir(parents=True, exist_ok=True)
        _fsync_dir(self.root)
        # A crash mid-delete leaves the renamed blob dir in trash: finish the delete.
        for p in self._trash_dir.iterdir():
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
        for d in self._blobs_dir.iterdir():
            if not (d.is_dir() and _BLOB_DIR_RE.match(d.name)):
                log.warning("sliver store: ignoring unexpected entry %s", d)
                continue
            entry = _Blob()
            for f in d.iterdir():
                if f.name.endswith(_TMP_SUFFIX):
                    f.unlink()  # an uncommitted write: its caller was never acknowledged
                elif _is_store_file(f.name) and f.is_file():
                    entry.files[f.name] = f.stat().st_size
                else:
                    log.warning("sliver store: ignoring unexpected file %s", f)
            if entry.files:
                self._index[d.name] = entry
                self._used += sum(entry.files.values())
                _fsync_dir(d)  # make the temp-file removals durable
            elif not any(d.iterdir()):
                d.rmdir()
        _fsync_dir(self._blobs_dir)

    # ---- public API -----------------------------------------------------------------

    @property
    def capacity_bytes(self) -> int | None:
        return self._capacity

    def bytes_used(self) -> int:
        """On-disk bytes of all committed files (content + 36-byte headers)."""
        with self._lock:
            return self._used

    def put_metadata(self, blob_id: bytes, data: bytes) -> None:
        self._write(blob_id, "meta", data)

    def get_metadata(self, blob_id: bytes) -> bytes | None:
        return self._read(blob_id, "meta")

    def put_certificate(self, blob_id: bytes, data: bytes) -> None:
        self._write(blob_id, "cert", data)

    def get_certificate(self, blob_id: bytes) -> bytes | None:
        return self._read(blob_id, "cert")

    def put_sliver(self, blob_id: bytes, shard: int, kind: str, data: bytes) -> None:
        """Store (or replace) the primary or secondary sliver held for ``shard``."""
        self._write(blob_id, _sliver_name(shard, kind), data)

    def get_sliver(self, blob_id: bytes, shard: int, kind: str) -> bytes | None:
        return self._read(blob_id, _sliver_name(shard, kind))

    def has_sliver(self, blob_id: bytes, shard: int, kind: str) -> bool:
        name, key = _sliver_name(shard, kind), _blob_key(blob_id)
        with self._lock:
            entry = self._index.get(key)
            return entry is not None and name in entry.files

    def shards_stored(self, blob_id: bytes) -> dict[int, set[str]]:
        """Shard -> {"primary", "secondary"} subset stored for this blob."""
        key = _blob_key(blob_id)
        out: dict[int, set[str]] = {}
        with self._lock:
            names = list(self._index[key].files) if key in self._index else []
        for name in names:
            if m := _SLIVER_RE.match(name):
                out.setdefault(int(m.group(2)), set()).add(_PREFIX_KIND[m.group(1)])
        return out

    def has_blob(self, blob_id: bytes) -> bool:
        key = _blob_key(blob_id)
        with self._lock:
            return key in self._index and bool(self._index[key].files)

    def list_blobs(self) -> list[bytes]:
        """IDs of all blobs with at least one stored file, sorted."""
        with self._lock:
            return sorted(bytes.fromhex(k) for k, e in self._index.items() if e.files)

    def get_state(self, blob_id: bytes) -> dict[str, Any]:
        """The blob's state dict ({} if none was ever set)."""
        raw = self._read(blob_id, "state")
        return {} if raw is None else json.loads(raw)

    def set_state(self, blob_id: bytes, updates: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``updates`` into the blob's state (JSON-able values); returns the new state.

        Never refused for capacity: state is tiny and must stay updatable on a full node
        (e.g. to mark blobs expired or invalid so they can be deleted).
        """
        with self._state_lock:
            state = self.get_state(blob_id)
            state.update(updates)
            self._write(blob_id, "state", json.dumps(state, sort_keys=True).encode(),
                        enforce_capacity=False)
        return state

    def delete_sliver(self, blob_id: bytes, shard: int, kind: str | None = None) -> bool:
        """Delete one kind, or both (kind=None), of the slivers held for ``shard``."""
        names = [_sliver_name(shard, k) for k in ((kind,) if kind else (PRIMARY, SECONDARY))]
        key = _blob_key(blob_id)
        blob_dir = self._blobs_dir / key
        removed = False
        with self._lock:
            self._check_open()
            entry = self._index.get(key)
            if entry is None:
                return False
            try:
                for name in names:
                    if name in entry.files:
                        try:
                            os.unlink(blob_dir / name)
                        except FileNotFoundError:
                            pass
                        self._used -= entry.files.pop(name)
                        removed = True
                if removed:
                    _fsync_dir(blob_dir)
            except OSError as exc:
                raise _storage_error(exc, "delete a sliver in", blob_dir) from exc
            self._forget_if_empty(key, entry)
        return removed

    def delete_blob(self, blob_id: bytes) -> bool:
        """Remove everything stored for the blob and free its bytes. False if nothing was."""
        key = _blob_key(blob_id)
        src = self._blobs_dir / key
        trash = self._trash_dir / f"{key}.{uuid.uuid4().hex}"
        with self._lock:
            self._check_open()
            entry = self._index.get(key)
            if entry is None:
                return False
            try:
                # One atomic rename: a crash never leaves half a blob visible.
                os.replace(src, trash)
                _fsync_dir(self._blobs_dir)
            except OSError as exc:
                raise _storage_error(exc, "delete", src) from exc
            del self._index[key]  # in-flight writes to this blob now see it gone and drop
            self._used -= sum(entry.files.values())
        try:
            shutil.rmtree(trash)  # slow for big blobs: done outside the lock
        except OSError as exc:
            log.warning("sliver store: could not empty %s (%s); retried at next open", trash, exc)
        return bool(entry.files)

    def close(self) -> None:
        """Refuse further use. Nothing to flush: every acknowledged write is already durable."""
        with self._lock:
            self._closed = True

    def __enter__(self) -> SliverStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ---- internals ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"the sliver store at {self.root} is closed")

    def _forget_if_empty(self, key: str, entry: _Blob) -> None:
        # Caller holds the lock. A blob with no files and no writes in progress isn't stored.
        if self._index.get(key) is entry and not entry.files and entry.inflight == 0:
            del self._index[key]
            try:
                (self._blobs_dir / key).rmdir()
            except OSError:
                pass  # harmless: an empty directory is skipped and removed at next open

    def _write(self, blob_id: bytes, name: str, data: bytes, *, enforce_capacity=True) -> None:
        key = _blob_key(blob_id)
        data = memoryview(data)
        size = HEADER_LEN + data.nbytes
        blob_dir = self._blobs_dir / key
        final = blob_dir / name
        tmp = blob_dir / f"{name}.{uuid.uuid4().hex}{_TMP_SUFFIX}"
        with self._lock:
            self._check_open()
            entry = self._index.get(key)
            old = entry.files.get(name, 0) if entry else 0
            if (enforce_capacity and self._capacity is not None
                    and self._used + self._reserved + size - old > self._capacity):
                raise CapacityExceededError(
                    f"storing {size} bytes at {final} would exceed the store's capacity of "
                    f"{self._capacity} bytes ({self._used} used, {self._reserved} being "
                    "written): delete expired blobs or raise capacity_bytes")
            try:
                if entry is None:
                    blob_dir.mkdir(exist_ok=True)
                    _fsync_dir(self._blobs_dir)
                    entry = self._index[key] = _Blob()
                # Created under the lock so delete_blob's rename sees every temp file.
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                             | getattr(os, "O_CLOEXEC", 0), 0o644)
            except OSError as exc:
                if entry is not None:
                    self._forget_if_empty(key, entry)
                raise _storage_error(exc, "create", tmp) from exc
            entry.inflight += 1
            self._reserved += size
        committed = False
        try:
            try:  # the slow part (write + fsync of a large sliver) runs without the lock
                with os.fdopen(fd, "wb") as f:
                    f.write(_MAGIC)
                    f.write(_digest(data))
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as exc:
                raise _storage_error(exc, "write", final) from exc
            with self._lock:
                if self._index.get(key) is not entry:
                    return  # blob deleted meanwhile: this put is ordered before that delete
                try:
                    os.replace(tmp, final)
                except OSError as exc:
                    raise _storage_error(exc, "commit", final) from exc
                committed = True
                # Move the reservation into _used atomically, or a concurrent put could
                # count these bytes twice and be refused spuriously.
                self._reserved -= size
                self._used += size - entry.files.get(name, 0)
                entry.files[name] = size
                try:
                    _fsync_dir(blob_dir)
                except OSError as exc:
                    # The new file is already visible, so the index keeps it; report anyway.
                    raise _storage_error(exc, "sync directory", blob_dir) from exc
        finally:
            with self._lock:
                entry.inflight -= 1
                if not committed:
                    self._reserved -= size
                    try:
                        os.unlink(tmp)
                    except FileNotFoundError:
                        pass
                    except OSError as exc:
                        log.warning("sliver store: could not remove %s (%s)", tmp, exc)
                    self._forget_if_empty(key, entry)

    def _read(self, blob_id: bytes, name: str) -> bytes | None:
        key = _blob_key(blob_id)
        self._check_open()
        path = self._blobs_dir / key / name
        try:
            with open(path, "rb") as f:
                header = f.read(HEADER_LEN)
                content = f.read()
                st = os.fstat(f.fileno())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _storage_error(exc, "read", path) from exc
        if len(header) < HEADER_LEN or not header.startswith(_MAGIC):
            problem = "bad or truncated header"
        elif _digest(content) != header[len(_MAGIC):]:
            problem = "checksum mismatch"
        else:
            return content
        # Treat as missing (so repair restores it) rather than ever serving bad bytes.
        log.error("sliver store: corrupt file %s (%s): removed; repair will restore it",
                  path, problem)
        self._drop_corrupt(key, name, path, st)
        return None

    def _drop_corrupt(self, key: str, name: str, path: Path, st: os.stat_result) -> None:
        with self._lock:
            entry = self._index.get(key)
            try:
                now = os.stat(path)
                if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                    return  # replaced by a fresh write since we read it: keep that
                os.unlink(path)
                _fsync_dir(path.parent)
            except OSError as exc:
                log.warning("sliver store: could not remove corrupt %s (%s)", path, exc)
                return
            if entry is not None and name in entry.files:
                self._used -= entry.files.pop(name)
                self._forget_if_empty(key, entry)
