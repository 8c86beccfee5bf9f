"""The wallet's journal: every order it signed on one network, one file per sequence number, written
(temp file, fsync, rename) before the order leaves the process; what a wallet resumes after a crash.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..core.wal.orders import Certificate, InvalidOrderError, SignedOrder
from ..durable import write_atomic

logger = logging.getLogger("p2pwalrus.wallet")


class Journal:
    """The orders this wallet signed on one network, one file per sequence number, each
    written (temp file, fsync, rename) before the order leaves the process."""

    def __init__(self, root: Path, genesis_hash: bytes, address: str):
        self.dir = Path(root) / f"{genesis_hash.hex()[:16]}-{address}"

    def _path(self, seq: int) -> Path:
        return self.dir / f"{seq:012d}.json"

    def save(self, signed: SignedOrder, cert: Certificate | None = None, state: str = "sent") -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        entry = {"state": state, "signed": signed.to_json(), "certificate": cert.to_json() if cert else None}
        write_atomic(self._path(signed.order.sequence), json.dumps(entry).encode())

    def entries(self) -> list[dict]:
        if not self.dir.is_dir():
            return []
        out = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                logger.warning("journal entry %s unreadable: skipped", path)
        return out

    def unfinished(self) -> list[tuple[SignedOrder, Certificate | None]]:
        out = []
        for e in self.entries():
            if e.get("state") in ("sent", "certified"):
                try:
                    cert = Certificate.from_json(e["certificate"]) if e.get("certificate") else None
                    out.append((SignedOrder.from_json(e["signed"]), cert))
                except (InvalidOrderError, KeyError) as exc:
                    logger.warning("journal entry unreadable (%s): skipped", exc)
        return out

    def next_sequence(self) -> int:
        seqs = [e["signed"]["order"]["sequence"] for e in self.entries() if e.get("state") != "abandoned"]
        return max(seqs) + 1 if seqs else 0
