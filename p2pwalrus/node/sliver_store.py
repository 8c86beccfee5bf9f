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

See node/sliver_format.py for the files' headers and checksums.

Durability: a node killed at any instant loses no acknowledged write, and sees every file
whole (the old one or the new one, never a mix). One write (``put_*``): write a temp file
in the same directory, fsync it, rename it over the final name, fsync the directory.
A group commit (``put_slivers``, one per store request) does the same for all of its files
at once: every temp file is written and fsynced (concurrently, one thread per file, which
lets the file system's journal commit them together instead of one journal commit per
fsync), and only when every fsync has returned are they renamed, one by one, and the
directory fsynced once. Until that last fsync returns a crash may keep any subset of the
renames, but each kept rename is of a complete, fsynced file, so every visible file is
whole; a lost rename leaves the previous file (or none) and a temp file that open removes.
``put_slivers`` returns only after the directory fsync, and the node signs its storage
confirmation only after that, so nothing it has confirmed can be lost. Temp files and
trash are removed at open. Hex (not base64url) names stay distinct on case-insensitive
file systems.

Measured on the project's 2-core VM (ext4, 10 files of a 40-shard 16 MiB store request):
per-file write+fsync+rename+directory fsync 11-162 ms depending on the disk's load; all
fsyncs then one directory fsync, sequentially, 9-105 ms; the same with the writes and
fsyncs in threads 6-37 ms; all slivers in one file 5-26 ms. One file per request would
need an index inside the blob directory and rewriting it to delete or repair one sliver,
for little more than threads give, so the layout keeps one file per sliver.

Over 400 lines on purpose: SliverStore is one job, since its index, byte counters and
group commit change together under one lock (the file format is in sliver_format.py).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The same directory fsync as every crash-safe write of the package: a create, rename or
# unlink in the directory becomes durable, not just the file's bytes. (durable.write_atomic
# is not used for the files themselves: a store write needs a unique O_EXCL temp name that
# delete_blob's rename can see, a checksummed header, and one directory fsync per group.)
from p2pwalrus.durable import fsync_dir as _fsync_dir
from p2pwalrus.errors import CapacityExceededError, StorageError

from .sliver_format import (  # noqa: F401  (re-exported: the store's public names)
    _BLOB_DIR_RE, _MAGIC2, _PREFIX_KIND, _SLIVER_RE, _TMP_SUFFIX, HEADER2_LEN,
    HEADER_LEN, PRIMARY, SECONDARY, SymbolLeaves, _blob_key, _check, _io_pool, _is_store_file,
    _Pending, _sliver_name, _storage_error, _write_and_sync,
)

log = logging.getLogger(__name__)


@dataclass
class _Blob:
    files: dict[str, int] = field(default_factory=dict)  # file name -> size on disk
    inflight: int = 0  # writes whose temp file exists but is not yet committed


# Bytes of recently stored primary slivers kept in memory per store (SliverStore._recent).
RECENT_BYTES = 32 << 20

class SliverStore:
    """Crash-safe store of one node's blobs. See the module docstring for the layout.

    ``capacity_bytes`` (None = unlimited) bounds the on-disk size of all stored files,
    headers included; ``bytes_used()`` is that size.
    """

    def __init__(self, root: Path | str, capacity_bytes: int | None = None, recent_bytes: int = 0):
        if capacity_bytes is not None and capacity_bytes < 0:
            raise ValueError(f"capacity_bytes must be >= 0 or None, got {capacity_bytes}")
        self.root = Path(root)
        # Up to `recent_bytes` (a node: RECENT_BYTES) of the primary slivers of the latest store
        # requests, as they were verified and written, with their file's size and mtime: a read
        # right after a store is served from here while the file is unchanged. Sliver files are
        # written with O_DIRECT (sliver_format.py), so the page cache no longer holds them.
        self._recent: OrderedDict[tuple[str, str], tuple[bytes, tuple[int, int]]] = OrderedDict()
        self._recent_bytes = 0
        self._recent_cap = recent_bytes
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

    def put_certificate(self, blob_id: bytes, data: bytes, *,
                        update_state: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None) -> bool:
        """Store the blob's certificate; with ``update_state(current state)``, its returned
        updates are merged into the blob's state in the same group commit (one fsync round
        for both files and one for the directory, instead of two commits in a row).
        Returns False, storing nothing, if the blob was deleted meanwhile."""
        files = [_Pending("cert", memoryview(data).cast("B"))]
        return self._commit_with_state(blob_id, files, update_state)

    def _commit_with_state(self, blob_id: bytes, files: list,
                           update_state: Callable[[dict[str, Any]], Mapping[str, Any]] | None) -> bool:
        """Commit ``files``, with the blob's state updated by ``update_state`` in the same commit."""
        if update_state is None:
            return self._commit(blob_id, files)
        with self._state_lock:  # held to the commit, or a concurrent set_state could be lost
            state = self.get_state(blob_id)
            state.update(update_state(dict(state)))
            raw = json.dumps(state, sort_keys=True).encode()
            files.append(_Pending("state", memoryview(raw), None, enforce_capacity=False))
            return self._commit(blob_id, files)

    def get_certificate(self, blob_id: bytes) -> bytes | None:
        return self._read(blob_id, "cert")

    def put_sliver(self, blob_id: bytes, shard: int, kind: str, data: bytes) -> None:
        """Store (or replace) the primary or secondary sliver held for ``shard``."""
        self._write(blob_id, _sliver_name(shard, kind), data)

    def put_slivers(
        self,
        blob_id: bytes,
        slivers: Sequence[tuple[int, str, bytes, SymbolLeaves | None]],
        *,
        metadata: bytes | None = None,
        update_state: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None,
        remember: Collection[int] | None = None,
    ) -> bool:
        """Store a store request's slivers in one group commit: all durable when this returns.

        ``slivers``: (shard, kind, data, leaves) with ``leaves`` the SymbolLeaves of ``data``
        if the caller has them (the file is then checksummed over them, see the module
        docstring), else None. ``metadata`` is written too unless the blob's is stored
        already; ``update_state(current state)`` returns updates merged into the blob's
        state in the same commit. Returns False, storing nothing, if the blob was deleted
        meanwhile. Capacity is checked for the whole request at once (state excepted).
        ``remember``: the shards whose primary slivers are kept in memory for reads (see
        recent_bytes); None: every primary sliver of the request.
        """
        files = [_Pending(_sliver_name(shard, kind), memoryview(data).cast("B"), leaves)
                 for shard, kind, data, leaves in slivers]
        if len({f.name for f in files}) != len(files):
            raise ValueError("put_slivers got the same sliver twice")
        if not files:
            return True
        # Read (not just looked up), so that a damaged metadata file is dropped and rewritten.
        if metadata is not None and self._read(blob_id, "meta") is None:
            files.insert(0, _Pending("meta", memoryview(metadata).cast("B")))
        if not self._commit_with_state(blob_id, files, update_state):
            return False
        if self._recent_cap:
            kept = None if remember is None else {_sliver_name(shard, PRIMARY) for shard in remember}
            self._remember_primaries(blob_id, [f for f in files if kept is None or f.name in kept])
        return True

    def _remember_primaries(self, blob_id: bytes, files: list[_Pending]) -> None:
        key = _blob_key(blob_id)
        with self._lock:
            if key not in self._index:  # deleted since
                return
            for f in files:
                if f.name.startswith("p") and _SLIVER_RE.match(f.name) and f.data.nbytes <= self._recent_cap:
                    try:
                        st = os.stat(self._blobs_dir / key / f.name)
                    except OSError:
                        continue
                    # The received bytes themselves where the file is all of them (no copy).
                    obj = f.data.obj
                    data = obj if type(obj) is bytes and len(obj) == f.data.nbytes else f.data.tobytes()
                    self._remember(key, f.name, data, (st.st_size, st.st_mtime_ns))

    def get_sliver(self, blob_id: bytes, shard: int, kind: str) -> bytes | None:
        name = _sliver_name(shard, kind)
        if self._recent:
            key = _blob_key(blob_id)
            with self._lock:
                found = self._recent.get((key, name))
            if found is not None:
                data, stamp = found
                try:
                    st = os.stat(self._blobs_dir / key / name)
                except OSError:
                    st = None
                if st is not None and (st.st_size, st.st_mtime_ns) == stamp:
                    return data
                with self._lock:  # the file changed (or went): the disk decides, as for any file
                    self._forget(key, name)
        return self._read(blob_id, name)

    def _remember(self, key: str, name: str, data: bytes, stamp: tuple[int, int]) -> None:
        """Keep `data` as the content of `name` (under self._lock), within the cap."""
        self._forget(key, name)
        self._recent[(key, name)] = (data, stamp)
        self._recent_bytes += len(data)
        while self._recent_bytes > self._recent_cap:
            _, (old, _) = self._recent.popitem(last=False)
            self._recent_bytes -= len(old)

    def _forget(self, key: str, name: str | None = None) -> None:
        """Drop a file's (or, name None, a whole blob's) recent content (under self._lock)."""
        names = [name] if name is not None else [n for k, n in self._recent if k == key]
        for n in names:
            old = self._recent.pop((key, n), None)
            if old is not None:
                self._recent_bytes -= len(old[0])

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
            if (entry := self._open_entry(key)) is None:
                return False
            try:
                for name in names:
                    self._forget(key, name)
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
            if (entry := self._open_entry(key)) is None:
                return False
            try:
                # One atomic rename: a crash never leaves half a blob visible.
                os.replace(src, trash)
                _fsync_dir(self._blobs_dir)
            except OSError as exc:
                raise _storage_error(exc, "delete", src) from exc
            del self._index[key]  # in-flight writes to this blob now see it gone and drop
            self._forget(key)
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

    def _open_entry(self, key: str) -> _Blob | None:
        # Caller holds the lock. The blob's index entry, refusing use of a closed store.
        self._check_open()
        return self._index.get(key)

    def _forget_if_empty(self, key: str, entry: _Blob) -> None:
        # Caller holds the lock. A blob with no files and no writes in progress isn't stored.
        if self._index.get(key) is entry and not entry.files and entry.inflight == 0:
            del self._index[key]
            try:
                (self._blobs_dir / key).rmdir()
            except OSError:
                pass  # harmless: an empty directory is skipped and removed at next open

    def _write(self, blob_id: bytes, name: str, data: bytes, *, enforce_capacity=True) -> None:
        self._commit(blob_id, [_Pending(name, memoryview(data).cast("B"), None, enforce_capacity)])

    def _commit(self, blob_id: bytes, files: list[_Pending]) -> bool:
        """Write ``files`` of one blob as one group commit; False if the blob was deleted
        meanwhile (the writes are then ordered before that delete and dropped).

        Each file goes to its own temp file; with more than one file, the temp files are
        written and fsynced concurrently in a pool of _IO_THREADS threads (so the file
        system's journal commits them together), then all are renamed over their final
        names and the directory is fsynced once. Only then does this return. See the
        module docstring.
        """
        key = _blob_key(blob_id)
        blob_dir = self._blobs_dir / key
        for f in files:
            f.size = f.header_len + f.data.nbytes
            f.tmp = blob_dir / f"{f.name}.{uuid.uuid4().hex}{_TMP_SUFFIX}"
        total = sum(f.size for f in files)
        with self._lock:
            self._check_open()
            entry = self._index.get(key)
            grow = sum(f.size - (entry.files.get(f.name, 0) if entry else 0)
                       for f in files if f.enforce_capacity)
            if (self._capacity is not None and any(f.enforce_capacity for f in files)
                    and self._used + self._reserved + grow > self._capacity):
                final = blob_dir / files[0].name if len(files) == 1 else blob_dir
                raise CapacityExceededError(
                    f"storing {total} bytes at {final} would exceed the store's capacity of "
                    f"{self._capacity} bytes ({self._used} used, {self._reserved} being "
                    "written): delete expired blobs or raise capacity_bytes")
            try:
                if entry is None:
                    blob_dir.mkdir(exist_ok=True)
                    _fsync_dir(self._blobs_dir)
                    entry = self._index[key] = _Blob()
                # Created under the lock so delete_blob's rename sees every temp file.
                for f in files:
                    f.fd = os.open(f.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                                   | getattr(os, "O_CLOEXEC", 0), 0o644)
                    f.created = True
            except OSError as exc:
                failed = next((f.tmp for f in files if not f.created), blob_dir)
                self._discard(files)
                if entry is not None:
                    self._forget_if_empty(key, entry)
                raise _storage_error(exc, "create", failed) from exc
            entry.inflight += 1
            self._reserved += total
        renamed: list[_Pending] = []
        try:
            # The slow part (checksum, write, fsync of large slivers) runs without the lock.
            if len(files) == 1:
                _write_and_sync(files[0], blob_dir)
            else:
                errors = [fut.exception() for fut in
                          [_io_pool().submit(_write_and_sync, f, blob_dir) for f in files]]
                if err := next((e for e in errors if e is not None), None):
                    raise err
            with self._lock:
                if self._index.get(key) is not entry:
                    return False  # blob deleted meanwhile: this put is ordered before that delete
                try:
                    for f in files:
                        os.replace(f.tmp, blob_dir / f.name)
                        renamed.append(f)
                finally:
                    # Move the reservations of what is now visible into _used atomically, or
                    # a concurrent put could count these bytes twice and be refused spuriously.
                    for f in renamed:
                        self._reserved -= f.size
                        self._used += f.size - entry.files.get(f.name, 0)
                        entry.files[f.name] = f.size
                    if renamed:
                        try:
                            _fsync_dir(blob_dir)
                        except OSError as exc:
                            if len(renamed) == len(files):
                                # The new files are already visible, so the index keeps them.
                                raise _storage_error(exc, "sync directory", blob_dir) from exc
                            log.error("sliver store: cannot sync %s: %s", blob_dir, exc)
            return True
        except OSError as exc:
            failed = next((f for f in files if f not in renamed), files[-1])
            raise _storage_error(exc, "commit", blob_dir / failed.name) from exc
        finally:
            with self._lock:
                entry.inflight -= 1
                left = [f for f in files if f not in renamed]
                self._reserved -= sum(f.size for f in left)
                self._discard(left)
                self._forget_if_empty(key, entry)

    @staticmethod
    def _discard(files: list[_Pending]) -> None:
        """Close and remove the temp files of writes that were not committed."""
        for f in files:
            if f.fd is not None:
                try:
                    os.close(f.fd)
                except OSError:
                    pass
                f.fd = None
            if f.created:
                f.created = False
                try:
                    os.unlink(f.tmp)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    log.warning("sliver store: could not remove %s (%s)", f.tmp, exc)

    def _read(self, blob_id: bytes, name: str) -> bytes | None:
        key = _blob_key(blob_id)
        self._check_open()
        path = self._blobs_dir / key / name
        try:
            with open(path, "rb") as f:
                header = f.read(HEADER_LEN)
                if header.startswith(_MAGIC2):
                    header += f.read(HEADER2_LEN - HEADER_LEN)
                content = f.read()
                st = os.fstat(f.fileno())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _storage_error(exc, "read", path) from exc
        problem = _check(header, content)
        if problem is None:
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
