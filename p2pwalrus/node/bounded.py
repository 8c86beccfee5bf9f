"""Small bounded memories of a node: delete nonces already used."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

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
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.used))
            os.replace(tmp, self.path)
        except OSError as exc:
            logger.warning("cannot record a delete nonce: %s", exc)
        return None
