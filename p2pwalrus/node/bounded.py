"""Small bounded memories of a node: delete nonces used, per-blob backoff, inconsistency proofs."""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from pathlib import Path

from ..durable import write_atomic
from ..errors import StorageError

logger = logging.getLogger("p2pwalrus.node")

MAX_DELETE_NONCES = 10_000  # deletes taken within the last two epochs; more are refused until older ones age out


class DeleteNonces:
    """Nonces of the deletes this node took, each kept while its delete could still be
    accepted (the epoch it was issued in and the next), in a small file so that a restart
    does not reopen a replay. When full, deletes are refused rather than a nonce forgotten."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.used: dict[str, int] = {}
        try:
            raw = json.loads(self.path.read_text())
            if isinstance(raw, dict):
                self.used = {k: v for k, v in raw.items() if isinstance(k, str) and type(v) is int}
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            logger.warning("delete nonces unreadable (%s): starting empty", exc)

    def use(self, nonce: str, issued: int, now: int) -> str | None:
        """None if `nonce` was not used yet (it is remembered now), else why the delete is refused."""
        self.used = {k: e for k, e in self.used.items() if e >= now - 1}
        if nonce in self.used:
            return "this delete was used already (a replay)"
        if len(self.used) >= MAX_DELETE_NONCES:
            return "too many deletes on this node in the last two epochs: try again in the next epoch"
        self.used[nonce] = issued
        try:
            write_atomic(self.path, json.dumps(self.used).encode(), durable=False)
        except StorageError as exc:
            logger.warning("cannot record a delete nonce: %s", exc)
        return None


class Backoff:
    """Per-blob backoff after failures (a certificate that does not verify or cannot be
    fetched, a repair that fails): the n-th failure in a row waits BASE * 2^(n-1) seconds,
    at most CAP, before the blob is tried again. At most MAX_ENTRIES blobs are remembered
    (the oldest forgotten first), so a flood of bad blob IDs costs bounded memory."""

    BASE = 30.0
    CAP = 3600.0
    MAX_ENTRIES = 10_000

    def __init__(self, base: float = BASE, cap: float = CAP, max_entries: int = MAX_ENTRIES):
        self.base, self.cap, self.max_entries = base, cap, max_entries
        self._entries: OrderedDict[bytes, tuple[int, float]] = OrderedDict()  # blob -> (failures, retry at)

    def ready(self, blob_id: bytes, now: float) -> bool:
        entry = self._entries.get(blob_id)
        return entry is None or now >= entry[1]

    def failed(self, blob_id: bytes, now: float) -> float:
        """Count a failure; returns the seconds until the blob is tried again."""
        failures = self._entries.pop(blob_id, (0, 0.0))[0] + 1
        wait = min(self.cap, self.base * 2 ** min(failures - 1, 30))
        self._entries[blob_id] = (failures, now + wait)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return wait

    def succeeded(self, blob_id: bytes) -> None:
        self._entries.pop(blob_id, None)

    def __len__(self) -> int:
        return len(self._entries)


MAX_PROOFS = 1000
MAX_PROOF_BYTES = 128 << 20


class ProofStore:
    """The inconsistency proofs a node checked, kept so that nodes that missed one can pull
    it: at most MAX_PROOFS and MAX_PROOF_BYTES (the oldest dropped first), each until its
    expiry epoch (the blob's end epoch where the node knows it)."""

    def __init__(self, max_count: int = MAX_PROOFS, max_bytes: int = MAX_PROOF_BYTES):
        self.max_count, self.max_bytes = max_count, max_bytes
        self._items: OrderedDict[bytes, tuple[bytes, int]] = OrderedDict()
        self.nbytes = 0

    def add(self, blob_id: bytes, message: bytes, expires_epoch: int) -> None:
        if blob_id in self._items or len(message) > self.max_bytes:
            return
        self._items[blob_id] = (message, expires_epoch)
        self.nbytes += len(message)
        while len(self._items) > self.max_count or self.nbytes > self.max_bytes:
            _, (old, _) = self._items.popitem(last=False)
            self.nbytes -= len(old)

    def __setitem__(self, blob_id: bytes, message: bytes) -> None:
        """Keep a proof with no expiry of its own (tests make nodes serve one this way)."""
        self.add(blob_id, message, 1 << 62)

    def get(self, blob_id: bytes) -> bytes | None:
        item = self._items.get(blob_id)
        return item[0] if item else None

    def prune(self, current_epoch: int) -> list[bytes]:
        """Drop proofs whose expiry epoch has come; return their blob IDs."""
        gone = [b for b, (_, expires) in self._items.items() if expires <= current_epoch]
        for blob_id in gone:
            self.nbytes -= len(self._items.pop(blob_id)[0])
        return gone

    def __contains__(self, blob_id) -> bool:
        return blob_id in self._items

    def __iter__(self):
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)
