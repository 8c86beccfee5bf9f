"""Epoch changes on a storage node's clock: :class:`EpochRunner` starts one agreement
(node/epoch_agreement.py's EpochService, over node/epoch_transport.py's wire) at the start of
every epoch and catches up on the decided chain from peers. The agreement's names are
re-exported here, where they have always been imported from.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import trio

from ..core.wal.agreement import Timeouts
from ..core.wal.epoch_state import InvalidEpochStateError, EpochState, next_state
from .epoch_agreement import (  # noqa: F401  (re-exported)
    EARLY_MESSAGES, INBOX_DEPTH, PULL_TIMEOUT, EpochChange, EpochService, load_chain,
)
from .epoch_transport import (  # noqa: F401  (re-exported)
    HANDLER_TIMEOUT, MAX_BATCH, OUTBOX_DEPTH, SEND_TIMEOUT, STREAM_LIFETIME,
)

logger = logging.getLogger("p2pwalrus.epochs")

OBSERVER_RETRY = 2.0  # a node outside the committee asks again this often until the change is decided



class EpochRunner:
    """Epoch changes on a :class:`~p2pwalrus.node.service.StorageNode`: one agreement at the
    start of every epoch of the network's clock (``genesis_time + e * epoch_length``).

    Every node of a network whose file has a genesis runs one (:func:`attach_epochs_from_network`,
    from ``StorageNode``); ``attach_epochs(node, genesis)`` does it by hand.  It rides on the
    node's ``extra_services`` hook.  The decided chain on disk is loaded (and verified) at
    once, so the ledger and the shard map start from the latest decided state before the
    node serves anything.  ``propose(current)`` makes this node's proposal (default: the
    stakes its ledger confirmed, or the same stakes without a ledger); ``check_value(state)``
    is the node's own part of ``valid(v)`` (default: the proposal's stakes are those its
    ledger confirmed).  A node that was down, or joins later, pulls the decided chain from
    the committee and verifies it from genesis.  ``on_adopt`` hooks run at every decided
    (or learnt) state: the node's shard map and the ledger's committee follow them.
    """

    def __init__(self, storage_node, genesis: EpochState, *, chain: bytes | None = None,
                 propose: Callable[[EpochState], EpochState] | None = None,
                 check_value: Callable[[EpochState], None] | None = None,
                 timeouts: Timeouts | None = None, gossip_every: float = 1.0):
        self.storage_node = storage_node
        self.genesis = genesis
        self.chain = chain if chain is not None else genesis.digest
        self.propose = propose or (lambda current: next_state(current, current.stakes))
        self.check_value = check_value
        self.timeouts = timeouts
        self.gossip_every = gossip_every
        self.service: EpochService | None = None
        self.started = trio.Event()
        self.state_dir = storage_node.data_dir / "epochs"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.states: list[EpochState] = [genesis] + [st for st, _ in load_chain(self.state_dir, genesis, self.chain)]
        self.on_adopt: list[Callable[[EpochState], None]] = []
        self.changes: list[dict] = []  # {"epoch", "seconds", "round"} of the changes this node took part in
        storage_node.extra_services.append(lambda node, nursery: nursery.start_soon(self._run))

    @property
    def current(self) -> EpochState:
        return self.states[-1]

    def state_for(self, epoch: int) -> EpochState | None:
        """The decided state of ``epoch``, if this node knows it."""
        return self.states[epoch] if 0 <= epoch < len(self.states) else None

    def _adopted(self, state: EpochState) -> None:
        if state.epoch == len(self.states):
            self.states.append(state)
        for hook in list(self.on_adopt):
            hook(state)

    async def _catch_up(self, svc: EpochService) -> int:
        """Pull decided states from peers until one has helped; how many adopted.

        The current committee first, then every other live node (a node that was out of the
        committee for a while, say): each link is verified, so asking anyone is safe."""
        before = svc.current.epoch
        node = self.storage_node
        live = set(node.members.live.peer_ids()) if node.members is not None else set()
        peers = sorted(svc.current.weights) + sorted(live - set(svc.current.weights))
        for peer in peers:
            if peer == svc.peer_id or peer in svc.node.deny:
                continue
            try:
                await svc.pull_chain(peer)
            except Exception as exc:  # dial errors come in many library types; a bad link is refused
                logger.info("chain pull from %s failed: %s", peer, exc)
            if svc.current.epoch > before:
                break
        return svc.current.epoch - before

    async def _run(self) -> None:
        node = self.storage_node
        svc = EpochService(node.node, node.keypair, self.genesis, chain=self.chain, timeouts=self.timeouts,
                           gossip_every=self.gossip_every, limits=node.peer_limits,
                           state_dir=self.state_dir, check_value=self.check_value)
        svc.on_adopt.append(self._adopted)
        async with trio.open_nursery() as nursery:
            await nursery.start(svc.run)
            self.service = svc
            self.started.set()
            while True:
                if node.net.current_epoch() > svc.current.epoch + 1:
                    await self._catch_up(svc)  # epochs went by without us: learn them, verified
                nxt = svc.current.epoch + 1
                delay = node.net.epoch_start(nxt) - time.time()
                if delay > 0:
                    await trio.sleep(delay)  # the network's clock says when an epoch ends
                prev = svc.current
                if prev.epoch >= nxt:
                    # Decided while this node slept (it learnt the state from the others): its
                    # proposal for the epoch after waits for that epoch's start, as everyone's.
                    continue
                if svc.peer_id not in prev.weights:
                    # Not in the committee: nothing to vote; learn the decision from those who are.
                    if not await self._catch_up(svc):
                        await trio.sleep(OBSERVER_RETRY)  # the committee has not decided yet
                    continue
                t0 = time.monotonic()
                proposal = self.propose(prev)
                peers = sorted(set(prev.weights) | set(proposal.stakes))
                change = await svc.change_epoch(lambda: self.propose(prev), peers)
                # Figures for netlab: how long the agreement took, and when it ended after the epoch began.
                self.changes = [*self.changes[-99:], {
                    "epoch": change.state.epoch, "round": change.round,
                    "seconds": round(time.monotonic() - t0, 3),
                    "after_start": round(time.time() - node.net.epoch_start(nxt), 3)}]
                write = getattr(node, "write_status", None)
                if write is not None:
                    write()  # node.json: netlab reads the figures there


def attach_epochs(storage_node, genesis: EpochState, **kwargs) -> EpochRunner:
    """Run epoch changes on ``storage_node`` (see :class:`EpochRunner`)."""
    runner = EpochRunner(storage_node, genesis, **kwargs)
    use = getattr(storage_node, "use_epochs", None)
    if use is not None:
        use(runner)
    else:
        storage_node.epochs = runner
    return runner


def attach_epochs_from_network(storage_node) -> EpochRunner:
    """Epochs on a node of a network with a genesis: the chain ID is the genesis hash."""
    from ..core.wal.epoch_state import genesis_state_from

    genesis = storage_node.net.genesis
    return attach_epochs(storage_node, genesis_state_from(genesis), chain=genesis.hash())


__all__ = ["EpochChange", "EpochRunner", "EpochService",
           "InvalidEpochStateError", "attach_epochs", "attach_epochs_from_network", "load_chain"]
