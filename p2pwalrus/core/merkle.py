"""Blake2b-256 Merkle trees as Walrus builds them.

leaf = H(0x00 || data), inner = H(0x01 || left || right); a level of odd length is
padded with 32 zero bytes used as a node hash (not hashed); a single leaf is its own
root. Many trees of the same width are built together, level by level, so the Python
work is one hashlib call per node and no per-node objects beyond the digest.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

DIGEST_LEN = 32
EMPTY_NODE = bytes(DIGEST_LEN)
_blake2b = hashlib.blake2b
# hashlib releases the GIL for inputs of 2 KiB and more: only then do threads pay.
_GIL_FREE_MIN = 2048
_THREADS = max(1, min(4, os.cpu_count() or 1))
_pool: ThreadPoolExecutor | None = None


def h256(data) -> bytes:
    return _blake2b(data, digest_size=DIGEST_LEN).digest()


def leaf_hash(data) -> bytes:
    h = _blake2b(b"\x00", digest_size=DIGEST_LEN)
    h.update(data)
    return h.digest()


def inner_hash(left: bytes, right: bytes) -> bytes:
    return _blake2b(b"\x01" + left + right, digest_size=DIGEST_LEN).digest()


def _thread_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(_THREADS, thread_name_prefix="p2pwalrus-hash")
    return _pool


def _hash_records(buf: np.ndarray, prefix: bytes = b"") -> np.ndarray:
    """Blake2b-256 of `prefix` + each row of a 2-D uint8 array; returns (rows, 32) uint8.

    The prefix is hashed once into a state that each row's hash copies (cheaper than a new
    hash object per row, and no prefixed copy of the rows is made)."""
    rows, width = buf.shape
    out = np.empty((rows, DIGEST_LEN), np.uint8)
    if rows == 0:
        return out
    src = memoryview(np.ascontiguousarray(buf)).cast("B")
    dst = memoryview(out).cast("B")
    base = _blake2b(prefix, digest_size=DIGEST_LEN)

    def work(lo: int, hi: int) -> None:
        copy = base.copy
        o = lo * DIGEST_LEN
        for off in range(lo * width, hi * width, width):  # the hot loop at large n: no arithmetic spared
            h = copy()
            h.update(src[off:off + width])
            dst[o:o + DIGEST_LEN] = h.digest()
            o += DIGEST_LEN

    if width >= _GIL_FREE_MIN and rows >= 2 * _THREADS:
        step = -(-rows // _THREADS)
        futures = [_thread_pool().submit(work, lo, min(rows, lo + step))
                   for lo in range(0, rows, step)]
        for fut in futures:
            fut.result()
    else:
        work(0, rows)
    return out


def leaf_hashes(symbols: np.ndarray, *, threaded: bool = True) -> np.ndarray:
    """Leaf hashes of every symbol: `symbols` is (..., s) uint8, result (..., 32).

    `threaded=False`: in the calling thread only, where the caller's own threads already
    use the cores (a node verifying while nine others do; a reader verifying each sliver
    in its own thread): the pool's hand-offs then cost GIL time for no gain."""
    shape = symbols.shape
    if shape[-1] >= _GIL_FREE_MIN:
        if symbols.strides[-1] != 1:
            symbols = np.ascontiguousarray(symbols)
        # Each symbol as a view, whatever the layout of the rest (a strided view is not copied).
        views = [symbols[index] for index in np.ndindex(*shape[:-1])]
        return _large_leaf_hashes(views, threaded).reshape(shape[:-1] + (DIGEST_LEN,))
    flat = symbols.reshape(-1, shape[-1])
    return _hash_records(flat, b"\x00").reshape(shape[:-1] + (DIGEST_LEN,))


def leaf_hashes_of(arrays: list[np.ndarray], *, threaded: bool = True) -> np.ndarray:
    """Leaf hashes of B arrays of (k, s) symbols, the same shape each: (B, k, 32), without
    stacking them into one array first (a copy of them all)."""
    b, (k, s) = len(arrays), arrays[0].shape
    if s >= _GIL_FREE_MIN:
        return _large_leaf_hashes([a[i] for a in arrays for i in range(k)], threaded).reshape(b, k, DIGEST_LEN)
    return leaf_hashes(np.stack(arrays))


def _large_leaf_hashes(symbols: list, threaded: bool = True) -> np.ndarray:
    """(len, 32) leaf hashes of symbols of 2 KiB or more, each contiguous: hashlib releases the
    GIL for them, so the hashing is spread over the pool's threads (if `threaded`); no copy
    of the data."""
    out = np.empty((len(symbols), DIGEST_LEN), np.uint8)

    def work(lo: int, hi: int) -> None:
        for k in range(lo, hi):
            out[k] = np.frombuffer(leaf_hash(memoryview(symbols[k])), np.uint8)

    rows = len(symbols)
    if not threaded:
        work(0, rows)
        return out
    step = -(-rows // _THREADS) if rows else 1
    futures = [_thread_pool().submit(work, lo, min(rows, lo + step))
               for lo in range(0, rows, step)]
    for fut in futures:
        fut.result()
    return out


def _next_level(level: np.ndarray) -> np.ndarray:
    """One level up for many trees at once: level is (trees, width, 32)."""
    trees, width, _ = level.shape
    if width % 2:
        level = np.concatenate([level, np.zeros((trees, 1, DIGEST_LEN), np.uint8)], axis=1)
        width += 1
    pairs = width // 2
    return _hash_records(level.reshape(trees * pairs, 2 * DIGEST_LEN), b"\x01").reshape(trees, pairs, DIGEST_LEN)


def merkle_roots(leaves: np.ndarray) -> np.ndarray:
    """Roots of many trees of equal width: leaves is (trees, width, 32) leaf hashes."""
    level = np.ascontiguousarray(leaves, dtype=np.uint8)
    if level.shape[1] == 0:
        return np.zeros((level.shape[0], DIGEST_LEN), np.uint8)
    while level.shape[1] > 1:
        level = _next_level(level)
    return level[:, 0, :]


def merkle_root(leaf_hash_list) -> bytes:
    """Root over a sequence of 32-byte leaf hashes."""
    arr = np.frombuffer(b"".join(leaf_hash_list), np.uint8).reshape(1, -1, DIGEST_LEN)
    return merkle_roots(arr)[0].tobytes()


def merkle_proof(leaves: np.ndarray, index: int) -> list[bytes]:
    """Sibling hashes from leaf `index` up to the root; leaves is (width, 32)."""
    width = leaves.shape[0]
    if not 0 <= index < width:
        raise IndexError(f"leaf index {index} out of range for {width} leaves")
    path: list[bytes] = []
    level = np.ascontiguousarray(leaves, dtype=np.uint8).reshape(1, width, DIGEST_LEN)
    while level.shape[1] > 1:
        sibling = index ^ 1
        path.append(level[0, sibling].tobytes() if sibling < level.shape[1] else EMPTY_NODE)
        level = _next_level(level)
        index //= 2
    return path


def proofs_for_index(leaves: np.ndarray, index: int) -> list[list[bytes]]:
    """The proof of leaf `index` in each of many trees: leaves is (trees, width, 32)."""
    trees, width, _ = leaves.shape
    paths: list[list[bytes]] = [[] for _ in range(trees)]
    level = np.ascontiguousarray(leaves, dtype=np.uint8)
    while level.shape[1] > 1:
        sibling = index ^ 1
        for t in range(trees):
            paths[t].append(level[t, sibling].tobytes() if sibling < level.shape[1] else EMPTY_NODE)
        level = _next_level(level)
        index //= 2
    return paths


def root_from_proof(leaf_data, index: int, path: list[bytes]) -> bytes:
    node = leaf_hash(leaf_data)
    for sibling in path:
        node = inner_hash(node, sibling) if index % 2 == 0 else inner_hash(sibling, node)
        index //= 2
    return node


def verify_proof(root: bytes, leaf_data, index: int, path: list[bytes], width: int) -> bool:
    """True if `leaf_data` is leaf `index` of a `width`-leaf tree with this root."""
    if not 0 <= index < width or len(path) != tree_depth(width):
        return False
    if any(len(p) != DIGEST_LEN for p in path):
        return False
    return root_from_proof(leaf_data, index, path) == root


def tree_depth(width: int) -> int:
    depth = 0
    while width > 1:
        width = (width + 1) // 2
        depth += 1
    return depth
