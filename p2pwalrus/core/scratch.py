"""Large arrays that are used again instead of allocated afresh (the encoder's biggest ones).

Why: encoding a 64 MiB blob at 66 shards fills 150 MB of arrays that outlive the encoding
(the rows' extension and the recovery rows' primary slivers, sent from where they lie). From
the heap, the next encoding seldom finds that space again in one piece: a read and the
network stack's allocations in between split it, and the heap grows into fresh pages. In
`p2pwalrus daemon`, after 1 and 16 MiB blobs, the next three 64 MiB encodings faulted in 38,000,
27,000 and 16,000 pages, at about 10 us each on this machine's virtual CPUs (the hypervisor
takes back memory the guest frees, so touching it again is a fault on the host too): 0.15-0.44
s of system time in 0.57-0.85 s encodings that take 0.37 s warm. Anonymous maps kept here stay
whole and faulted in.

How: an array is a view of an anonymous map kept in a list; the map is free again once no
array uses it, i.e. its reference count is back to the list's own (a numpy view holds its
buffer's owner, the map). Free maps beyond `keep` bytes are closed when a map is made;
`clear()` gives them all back (the daemon's idle trim). An array under `min_bytes` or over
`max_bytes` comes from numpy as usual: a long-running gateway keeps at most `keep` bytes.
"""

from __future__ import annotations

import mmap
import sys
import threading

import numpy as np


class ScratchPool:
    def __init__(self, keep: int = 256 << 20, min_bytes: int = 4 << 20, max_bytes: int = 256 << 20):
        self.keep = keep
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        self._maps: list[mmap.mmap] = []
        self._lock = threading.Lock()
        self.made = 0  # maps created (a test's and a benchmark's view of reuse)

    def empty(self, shape: tuple[int, ...]) -> np.ndarray:
        """An uninitialised uint8 array of `shape` (like np.empty), from a free map if one fits."""
        nbytes = int(np.prod(shape))
        if not self.min_bytes <= nbytes <= self.max_bytes:
            return np.empty(shape, np.uint8)
        with self._lock:
            free = self._free_maps()
            fits = [mm for mm in free if len(mm) >= nbytes]
            if fits:
                chosen = min(fits, key=len)
            else:
                chosen = mmap.mmap(-1, nbytes)
                self._maps.append(chosen)
                self.made += 1
                self._trim(free)
            return np.frombuffer(chosen, np.uint8, nbytes).reshape(shape)

    def clear(self) -> int:
        """Close every free map; returns the bytes given back."""
        with self._lock:
            return self._trim(self._free_maps(), keep=0)

    def held_bytes(self) -> int:
        with self._lock:
            return sum(len(mm) for mm in self._maps)

    def _free_maps(self) -> list[mmap.mmap]:
        # Referenced by the list, the loop variable and getrefcount's argument only: no array
        # (nor view of one) uses it.
        return [mm for mm in self._maps if sys.getrefcount(mm) == 3]

    def _trim(self, free: list[mmap.mmap], keep: int | None = None) -> int:
        """Close free maps, largest first, until at most `keep` bytes of them remain."""
        keep = self.keep if keep is None else keep
        total = sum(len(mm) for mm in free)
        given = 0
        for mm in sorted(free, key=len, reverse=True):
            if total <= keep:
                break
            self._maps.remove(mm)
            total -= len(mm)
            given += len(mm)
            mm.close()
        return given


POOL = ScratchPool()
