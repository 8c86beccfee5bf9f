"""What a client knows of the decided epoch states: the chain from genesis, verified here.

On a network whose file has a genesis, who holds which shard (and the ledger committee's
weights) is the decided ``EpochState`` of the current epoch.  A client trusts no node for
it: it pulls the links (state, certificate) over ``/p2pwalrus/epoch-chain/1.0.0`` and checks
each against the one before, from the genesis in its network file
(``epoch_state.verify_link``): a node can withhold links, never forge one.
"""

from __future__ import annotations

import logging
from pathlib import Path

import trio
from libp2p.peer.id import ID

from ..core.wal.epoch_map import certificate_views, shard_map_of
from ..core.wal.epoch_state import (
    EpochState,
    StateCertificate,
    genesis_state_from,
    verify_link,
)
from ..durable import write_atomic
from ..errors import ProtocolError, StorageError
from ..p2p import rpc
from ..p2p.chain import MAX_LINKS_PER_REPLY, request_links
from ..core import protocols

logger = logging.getLogger("p2pwalrus.client")

PULL_TIMEOUT = 10.0
MAX_PEERS_ASKED = 4


class EpochView:
    """The decided states this client verified, from genesis on.

    ``cache_dir``: where to keep them between processes (the CLI: beside the client's key).
    States read back from it are this client's own verified ones: only their links by
    digest are checked again, not the signatures, so a command on a network of many
    epochs does not pull and verify the whole chain every time."""

    def __init__(self, genesis, cache_dir: Path | None = None):
        self.genesis = genesis
        self.chain = genesis.hash()
        self.states: list[EpochState] = [genesis_state_from(genesis)]
        self.certificates: list[StateCertificate | None] = []
        self.cache_dir = Path(cache_dir) / self.chain.hex()[:32] if cache_dir is not None else None
        if self.cache_dir is not None:
            self._load_cache()

    def _load_cache(self) -> None:
        try:
            names = sorted(p for p in self.cache_dir.glob("state-*.json"))
        except OSError:
            return
        for path in names:
            try:
                state = EpochState.from_bytes(path.read_bytes())
            except (OSError, ProtocolError) as exc:
                logger.info("epoch cache ends at %s: %s", path.name, exc)
                break
            if state.epoch != self.current.epoch + 1 or state.prev_digest != self.current.digest:
                break  # not the next link of this chain: pulled again from the nodes
            self.states.append(state)
            self.certificates.append(None)

    def _save(self, state: EpochState) -> None:
        if self.cache_dir is None:
            return
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(self.cache_dir / f"state-{state.epoch:010d}.json", state.to_bytes(), durable=False)
        except (OSError, StorageError) as exc:  # a cache that cannot be written only costs a pull next time
            logger.info("cannot cache epoch %d: %s", state.epoch, exc)

    @property
    def current(self) -> EpochState:
        return self.states[-1]

    def state_for(self, epoch: int) -> EpochState | None:
        return self.states[epoch] if 0 <= epoch < len(self.states) else None

    def shard_map(self):
        return shard_map_of(self.current)

    def views(self, cert_epoch: int):
        return certificate_views(self.state_for, self.current, cert_epoch)

    async def pull_from(self, host, peer: str) -> int:
        """Links after ours from ``peer``, each verified; how many were adopted."""
        adopted = 0
        while True:
            with trio.fail_after(PULL_TIMEOUT):
                from ..p2p.host import open_stream

                stream = await open_stream(host, ID.from_base58(peer), [protocols.EPOCH_CHAIN], PULL_TIMEOUT)
                try:
                    got = await request_links(stream, self.current.epoch + 1)
                finally:
                    await rpc.close_quietly(stream)
            for state, cert in got:
                verify_link(self.current, state, cert, self.chain)
                self.states.append(state)
                self.certificates.append(cert)
                self._save(state)
                adopted += 1
            if len(got) < MAX_LINKS_PER_REPLY:
                return adopted

    async def refresh(self, host, peers: list[str], clock_epoch: int) -> EpochState:
        """Pull from the first peers until one gave a link, or our chain reaches the clock's
        epoch (the decision of the clock's epoch may not exist yet: that is no error)."""
        asked = 0
        for peer in peers:
            if asked >= MAX_PEERS_ASKED or self.current.epoch >= clock_epoch:
                break
            if asked and self.current.epoch >= clock_epoch - 1:
                break  # one peer asked and the chain is as far as a change under way allows
            asked += 1
            try:
                await self.pull_from(host, peer)
            except Exception as exc:  # a node that cannot answer, or a link that does not verify
                logger.info("epoch chain from %s: %r", peer, exc)
        return self.current
