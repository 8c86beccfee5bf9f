"""A node's ledger on disk: account state and the certificates it applied (crash-safe).

Layout under ``DATA_DIR/ledger/``:

- ``state.json``: the whole account state (``Ledger.to_json``) with a checksum, replaced
  atomically (temp file, fsync, rename, directory fsync) after every change. A vote is
  handed out only once the pending order it promises is in this file.
- ``certs/<sender>/<sequence>.json``: every certificate applied here, written the same way
  *before* the state that applies it. After a crash between the two, the certificate is
  on disk and the state does not show it: ``load`` applies it again (at most one).

One file for all accounts keeps every change atomic (a transfer touches two accounts);
it is rewritten whole, which is cheap for the thousands of accounts a testnet has (a log
with snapshots would be the next step for millions).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from ..core.wal.genesis import Genesis
from ..core.wal.ledger import Applied, Ledger
from ..core.wal.orders import Certificate, InvalidOrderError
from ..durable import write_atomic
from ..errors import StorageError

__all__ = ["LedgerStore", "write_atomic"]

_ADDRESS = re.compile(r"[1-9A-HJ-NP-Za-km-z]{1,64}")  # base58 peer ID text
_SEQ_FILE = re.compile(r"^(\d{1,20})\.json$")
MAX_CERT_FILE = 1 << 20


class LedgerStore:
    def __init__(self, root: Path, genesis: Genesis):
        self.root = Path(root)
        self.genesis = genesis
        self.certs_dir = self.root / "certs"
        try:
            self.certs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {self.certs_dir}: {exc.strerror or exc}") from None

    @property
    def state_path(self) -> Path:
        return self.root / "state.json"

    # --- state ---

    def load_state(self) -> Ledger:
        """The saved state, or genesis's for a new node. A damaged file stops the node: starting
        again from genesis would forget the votes it gave, and it could sign twice."""
        try:
            raw = self.state_path.read_bytes()
        except FileNotFoundError:
            return Ledger.from_genesis(self.genesis)
        except OSError as exc:
            raise StorageError(f"cannot read {self.state_path}: {exc.strerror or exc}") from None
        try:
            doc = json.loads(raw)
            body = json.dumps(doc["state"], sort_keys=True, separators=(",", ":")).encode()
            if hashlib.blake2b(body, digest_size=16).hexdigest() != doc["checksum"]:
                raise ValueError("checksum does not match")
            return Ledger.from_json(doc["state"], self.genesis)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise StorageError(f"the ledger state {self.state_path} is damaged ({exc}); this node cannot vote "
                               "safely without it: restore it, or move the ledger directory away to rejoin as "
                               "a new node") from None

    def state_bytes(self, ledger: Ledger) -> bytes:
        """What ``save_state`` writes (built on the event loop, written in a thread)."""
        state = ledger.to_json()
        body = json.dumps(state, sort_keys=True, separators=(",", ":")).encode()
        return json.dumps({"checksum": hashlib.blake2b(body, digest_size=16).hexdigest(), "state": state},
                          sort_keys=True, separators=(",", ":")).encode()

    def save_state(self, data: bytes) -> None:
        write_atomic(self.state_path, data)

    # --- certificates ---

    def _cert_path(self, sender: str, sequence: int) -> Path:
        if not _ADDRESS.fullmatch(sender) or not 0 <= sequence < 1 << 64:  # never a path out of certs/
            raise ValueError("not an account address and sequence")
        return self.certs_dir / sender / f"{sequence:012d}.json"

    def put_certificate(self, cert: Certificate) -> None:
        order = cert.order
        path = self._cert_path(order.sender, order.sequence)
        if path.exists():
            return
        try:
            path.parent.mkdir(exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {path.parent}: {exc.strerror or exc}") from None
        write_atomic(path, json.dumps(cert.to_json(), separators=(",", ":")).encode())

    def get_certificate(self, sender: str, sequence: int) -> bytes | None:
        try:
            path = self._cert_path(sender, sequence)
            if path.stat().st_size > MAX_CERT_FILE:
                return None
            return path.read_bytes()
        except (OSError, ValueError):  # ValueError: a sender name no file can have
            return None

    def scan(self):
        """(sender, sequence, certificate bytes) of every certificate on disk, by sender and sequence."""
        for sender_dir in sorted(self.certs_dir.iterdir()):
            if not sender_dir.is_dir():
                continue
            seqs = sorted(int(m[1]) for m in map(_SEQ_FILE.match, os.listdir(sender_dir)) if m)
            for seq in seqs:
                raw = self.get_certificate(sender_dir.name, seq)
                if raw is not None:
                    yield sender_dir.name, seq, raw

    def load(self, committee_for) -> tuple[Ledger, list[Certificate], int]:
        """The state after a restart: the saved state, plus the certificate a crash left on
        disk unapplied (written before the state that applies it). Returns the ledger, every
        certificate on disk (to index) and how many were applied again."""
        ledger = self.load_state()
        certs, replayed = [], 0
        for sender, seq, raw in self.scan():
            try:
                cert = Certificate.from_json(json.loads(raw))
            except (ValueError, InvalidOrderError):
                continue  # unreadable: anti-entropy pulls it again
            acct = ledger.account(sender)
            if seq >= (acct.next_sequence if acct else 0):
                committee = committee_for(cert.order.epoch)
                if committee is not None and isinstance(ledger.apply(cert, committee), Applied):
                    replayed += 1
            certs.append(cert)
        if replayed:
            self.save_state(self.state_bytes(ledger))
        return ledger, certs, replayed
