"""A node's checks of certificates against its own view of the network, off the event loop.

The views are the node's own shard maps: the current one and those it replaced within
VIEW_KEEP seconds (at most MAX_VIEWS) after holding them VIEW_MIN_HELD seconds or more, so
that a certificate written just before a join or a leave that this node has already seen
still counts. A view held only briefly does not count: while a network forms, or while a
node briefly sees few peers, a handful of nodes own most shards in it, and nodes holding at
most `f` shards of the settled map would find `n - f` there (see core/certificates.py for the rule and
its tolerance). The map is computed once per membership change, never from a certificate's
member set. Signatures are checked in a worker thread, at most CHECK_THREADS at once, so a
flood of certificates queues instead of taking the loop or every worker thread.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections import OrderedDict

import trio

from ..core.certificates import AvailabilityCertificate, InvalidCertificateError, validate_certificate
from ..core.placement import ShardMap

VIEW_KEEP = 600.0  # s a replaced shard map still counts as a view
VIEW_MIN_HELD = 30.0  # s a shard map must have been current to count once replaced
MAX_VIEWS = 4
CHECK_THREADS = 2
REJECTED_MEMORY = 4096  # digests of certificates refused, so a repeated one costs a hash


class CertChecker:
    def __init__(self, net):
        self.net = net
        self._current: ShardMap | None = None
        self._current_since = 0.0
        self._replaced: list[tuple[ShardMap, float]] = []  # newest first, with when replaced
        self._rejected: OrderedDict[bytes, str] = OrderedDict()  # shared with the worker threads
        self._lock = threading.Lock()
        self._limiter = trio.CapacityLimiter(CHECK_THREADS)
        # On a network with epochs: cert epoch -> the decided committees' maps to judge it by
        # (core/wal/epoch_map.py), in place of the live-set maps of the last minutes.
        self.epoch_views = None

    def set_map(self, shard_map: ShardMap, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self._current is not None and self._current.digest() == shard_map.digest():
            return
        if self._current is not None and now - self._current_since >= VIEW_MIN_HELD:
            self._replaced.insert(0, (self._current, now))
            del self._replaced[MAX_VIEWS - 1:]
        self._current, self._current_since = shard_map, now
        with self._lock:
            self._rejected.clear()  # a new view may judge them otherwise

    def views(self, now: float | None = None) -> list[ShardMap]:
        now = time.monotonic() if now is None else now
        old = [m for m, at in self._replaced if now - at <= VIEW_KEEP]
        return ([self._current] if self._current is not None else []) + old

    def signers_unknown(self, cert: AvailabilityCertificate) -> bool:
        """Whether some confirming peer is not in the current view (a member we may not know yet)."""
        live = set(self._current.nodes) if self._current is not None else set()
        return any(c.peer_id not in live for c in cert.confirmations)

    async def check(self, cert: AvailabilityCertificate, *, need: int | None = None) -> None:
        """Raise InvalidCertificateError unless the certificate holds in this node's views
        (with `need` shards instead of n - f: see recertify.py)."""
        if len(cert.confirmations) > self.net.n_shards:  # before any work: at most one per shard
            raise InvalidCertificateError(f"{len(cert.confirmations)} confirmations for {self.net.n_shards} shards")
        views = self.epoch_views(cert.epoch) if self.epoch_views is not None else self.views()
        check = functools.partial(self._check, cert, views, self.net.current_epoch(), need)
        await trio.to_thread.run_sync(check, limiter=self._limiter)

    def _check(self, cert: AvailabilityCertificate, views: list[ShardMap], current_epoch: int,
               need: int | None) -> None:
        # In a worker thread: the key (a hash of the whole certificate) costs as much as a parse.
        key = hashlib.blake2b(cert.to_bytes() + str(need).encode(), digest_size=16).digest()
        with self._lock:
            reason = self._rejected.get(key)
        if reason is not None:
            raise InvalidCertificateError(reason)
        try:
            validate_certificate(cert, network=self.net.name, n_shards=self.net.n_shards, views=views,
                                 current_epoch=current_epoch, max_epochs_ahead=self.net.max_epochs_ahead, need=need)
        except InvalidCertificateError as exc:
            with self._lock:
                self._rejected[key] = exc.reason
                while len(self._rejected) > REJECTED_MEMORY:
                    self._rejected.popitem(last=False)
            raise
