"""Large arrays that are used again instead of allocated afresh (a store's and a read's biggest).

Why: encoding a 64 MiB blob at 66 shards fills 150 MB of arrays that outlive the encoding
(the rows' extension and the recovery rows' primary slivers, sent from where they lie). From
the heap, the next encoding seldom finds that space again in one piece: a read and the
network stack's allocations in between split it, and the heap grows into fresh pages. In
`p2pwalrus daemon`, after 1 and 16 MiB blobs, the next three 64 MiB encodings faulted in 38,000,
27,000 and 16,000 pages, at about 10 us each on this machine's virtual CPUs (the hypervisor
takes back memory the guest frees, so touching it again is a fault on the host too): 0.15-0.44
s of system time in 0.57-0.85 s encodings that take 0.37 s warm. Buffers kept here are never
freed between uses, so nothing splits them and their pages stay faulted in.

How: an array is a view of a buffer (a numpy array) kept in a list; the buffer is free again
once no array uses it, i.e. its reference count is back to the list's own (every numpy view
holds the array that owns its memory). Free buffers beyond `keep` bytes are dropped when a
buffer is made; `clear()` drops them all (the daemon's idle trim). An array under `min_bytes`
or over `max_bytes` comes from numpy as usual: a long-running gateway keeps at most `keep`.
"""

from __future__ import annotations

import sys
import threading

import numpy as np


class ScratchPool:
    def __init__(self, keep: int = 256 << 20, min_bytes: int = 4 << 20, max_bytes: int = 256 << 20):
        self.keep = keep
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        self._buffers: list[np.ndarray] = []
        self._lock = threading.Lock()
        self.made = 0  # buffers made (a test's view of reuse)

    def empty(self, shape: tuple[int, ...]) -> np.ndarray:
        """An uninitialised uint8 array of `shape` (like np.empty), from a free buffer if one fits."""
        nbytes = int(np.prod(shape))
        if not self.min_bytes <= nbytes <= self.max_bytes:
            return np.empty(shape, np.uint8)
        with self._lock:
            free = self._free_buffers()
            fits = [b for b in free if b.size >= nbytes]
            if fits:
                chosen = min(fits, key=len)
            else:
                chosen = np.empty(nbytes, np.uint8)
                self._buffers.append(chosen)
                self.made += 1
                self._trim(free)
            return chosen[:nbytes].reshape(shape)

    def clear(self) -> int:
        """Drop every free buffer; returns their bytes."""
        with self._lock:
            return self._trim(self._free_buffers(), keep=0)

    def held_bytes(self) -> int:
        with self._lock:
            return sum(b.size for b in self._buffers)

    def _free_buffers(self) -> list[np.ndarray]:
        # Referenced by the list, the loop variable and getrefcount's argument only: no array
        # (nor view of one) uses it.
        return [b for b in self._buffers if sys.getrefcount(b) == 3]

    def _trim(self, free: list[np.ndarray], keep: int | None = None) -> int:
        """Drop free buffers, largest first, until at most `keep` bytes of them remain."""
        keep = self.keep if keep is None else keep
        total = sum(b.size for b in free)
        given = 0
        for b in sorted(free, key=len, reverse=True):
            if total <= keep:
                break
            self._buffers = [x for x in self._buffers if x is not b]  # (== on arrays compares elements)
            total -= b.size
            given += b.size
        return given


# Stores (the encoder's arrays, the padded blob) and reads (the rows fetched) each have their
# own: a read's buffer still held when the next store starts (the bench's store, read, store)
# must not make that store allocate afresh, nor a store a read.
POOL = ScratchPool()
READS = ScratchPool()
