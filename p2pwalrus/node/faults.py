"""Fault injection for netlab and tests: a node applies ``DATA_DIR/faults.json`` (a peer
deny-list for partitions, an added delay per exchange) and keeps a set of flags that make it
misbehave on purpose (``"corrupt_slivers"``: it serves damaged slivers).

The file is looked at every ``FAULTS_POLL`` seconds (one wake-up per node and period).
Denied peers are kept disconnected, refused at every stream handler (``gate``), and their
gossip is dropped (``denied_message``); a heal retries every down peer at once.
"""

from __future__ import annotations

import logging
from pathlib import Path

import trio

from ..core import faults as faults_file

logger = logging.getLogger("p2pwalrus.node")

FAULTS_POLL = 2.0  # s


class FaultInjection:
    """One node's injected faults (the node owns it and runs ``run`` in its nursery)."""

    def __init__(self, node, data_dir: Path):
        self.node = node  # the StorageNode: its host, liveness and status change with the faults
        self.path = Path(data_dir) / faults_file.FILE_NAME
        self.flags: set[str] = set()  # misbehaviours switched on by tests ("corrupt_slivers")
        self.deny: set[str] = set()  # peer IDs we act as if partitioned from
        self.delay = 0.0  # s added before each exchange we serve or start
        self._corrupt_from_file = False

    def gate(self, peer: str):
        """None to refuse a denied peer, else the injected delay (seconds)."""
        return None if peer in self.deny else self.delay

    def apply(self, obj: "dict | bytes") -> None:
        """Apply a faults document (faults.json's bytes or object, core/faults.py); ValueError
        if it is malformed."""
        faults = faults_file.parse(obj)
        healed = bool(self.deny - faults.deny)
        self.deny = set(faults.deny) - {self.node.peer_id}
        self.delay = faults.delay
        # The file switches corrupt_slivers on, and off again only if it was the one that did.
        if faults.corrupt_slivers:
            self.flags.add("corrupt_slivers")
        elif self._corrupt_from_file:
            self.flags.discard("corrupt_slivers")
        self._corrupt_from_file = faults.corrupt_slivers
        delay_ms = faults.delay_ms
        host, liveness = self.node.node, self.node.liveness
        if host is not None:
            host.deny = self.deny
        if liveness is not None:
            if healed:
                liveness.retry_down_now()
            liveness.wake()
        logger.info("faults applied: %d peers denied, %d ms delay", len(self.deny), delay_ms)

    def denied_message(self, forwarder, msg) -> bool:
        """Whether a gossip message was sent or forwarded by a denied peer (dropped)."""
        from libp2p.peer.id import ID

        if not self.deny:
            return False
        try:
            sender = ID(msg.from_id).to_base58()
        except Exception:
            sender = ""
        return str(forwarder) in self.deny or sender in self.deny

    async def _disconnect_denied(self) -> None:
        # Their heartbeat links die with the connection: denied peers leave our live set.
        host = self.node.node
        for peer in list(host.connected_peers()):
            if str(peer) in self.deny:
                await host.close_connection(peer)

    async def run(self) -> None:
        """Watch the faults file and keep denied peers disconnected."""
        seen = None
        while True:
            try:
                stamp = self.path.stat().st_mtime_ns
            except FileNotFoundError:
                stamp = None
            if stamp != seen:
                seen = stamp
                try:
                    self.apply(self.path.read_bytes() if stamp is not None else {})
                    self.node.write_status()
                except (ValueError, OSError) as exc:
                    logger.warning("ignoring %s: %s", self.path, exc)
            if self.deny:
                await self._disconnect_denied()
            await trio.sleep(FAULTS_POLL)
