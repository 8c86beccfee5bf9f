"""Fault injection for netlab and tests: a node applies ``DATA_DIR/faults.json`` (a peer
deny-list for partitions, an added delay per exchange) and keeps a set of flags that make it
misbehave on purpose (``"corrupt_slivers"``: it serves damaged slivers).

The file is looked at every ``FAULTS_POLL`` seconds (one wake-up per node and period).
Denied peers are kept disconnected, refused at every stream handler (``gate``), and their
gossip is dropped (``denied_message``); a heal retries every down peer at once.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import trio

logger = logging.getLogger("p2pwalrus.node")

FAULTS_POLL = 2.0  # s
FAULTS_FILE = "faults.json"


class FaultInjection:
    """One node's injected faults (the node owns it and runs ``run`` in its nursery)."""

    def __init__(self, node, data_dir: Path):
        self.node = node  # the StorageNode: its host, liveness and status change with the faults
        self.path = Path(data_dir) / FAULTS_FILE
        self.flags: set[str] = set()  # misbehaviours switched on by tests ("corrupt_slivers")
        self.deny: set[str] = set()  # peer IDs we act as if partitioned from
        self.delay = 0.0  # s added before each exchange we serve or start

    def gate(self, peer: str):
        """None to refuse a denied peer, else the injected delay (seconds)."""
        return None if peer in self.deny else self.delay

    def apply(self, obj: dict) -> None:
        """Apply a faults document (the parsed faults.json); ValueError if it is malformed."""
        deny = obj.get("deny", [])
        delay_ms = obj.get("delay_ms", 0)
        if not isinstance(deny, list) or not all(isinstance(p, str) for p in deny):
            raise ValueError("'deny' must be a list of peer IDs")
        if isinstance(delay_ms, bool) or not isinstance(delay_ms, (int, float)) or not 0 <= delay_ms <= 60_000:
            raise ValueError("'delay_ms' must be between 0 and 60000")
        healed = bool(self.deny - set(deny))
        self.deny = set(deny) - {self.node.peer_id}
        self.delay = delay_ms / 1000
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
                with trio.move_on_after(2):
                    try:
                        await host.host.disconnect(peer)
                    except Exception as exc:
                        logger.debug("disconnect %s: %r", peer, exc)

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
                    self.apply(json.loads(self.path.read_text()) if stamp is not None else {})
                    self.node.write_status()
                except (ValueError, OSError) as exc:
                    logger.warning("ignoring %s: %s", self.path, exc)
            if self.deny:
                await self._disconnect_denied()
            await trio.sleep(FAULTS_POLL)
