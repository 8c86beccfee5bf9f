"""Epoch changes over libp2p: one Tendermint instance per epoch among the committee (trio).

The pure machine (:mod:`p2pwalrus.core.wal.agreement`) decides; this service
carries its messages and timeouts (the wire: batches, outboxes and senders, is in
node/epoch_transport.py; the runner on the network's clock in node/epoch_service.py).
Timeouts are trio timers in the instance's nursery (``trio.sleep`` for the delay the
machine asked for); the machine itself is only touched from one task, which takes
inputs from a memory channel. Messages for the next height that arrive before this
node starts that change are kept (a bounded number) and fed to the instance when it
starts.
A peer still in an epoch change that this node has finished gets the decision (the
``Commit`` message) in answer to its next message: a node cut off by a partition
completes the change as soon as it hears from one that decided.

A node outside the committee of epoch ``e`` follows the change as an
observer (it votes nothing; it decides on a ``Commit``).

Durable state (``state_dir``): every decided link (state and certificate) is
written crash-safely (temp file, fsync, rename, directory fsync) and verified
again at start; the agreement's snapshot (locks and the messages this node
signed) is written before any message of it leaves, so a node restarted in
the middle of a change neither signs a second vote for a round nor forgets its
lock (Tendermint's write-ahead log, reduced to what safety needs).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from collections.abc import Callable
from dataclasses import dataclass, field

import trio
from libp2p.peer.id import ID

from ..core.keys import sign
from ..core.wal.agreement import (
    Broadcast,
    Commit,
    Decided,
    InvalidMessageError,
    ScheduleTimeout,
    Tendermint,
    Timeouts,
    message_height,
    parse_message,
)
from ..core.wal.epoch_state import EpochState, StateCertificate, check_transition, verify_link
from ..durable import write_atomic
from ..errors import ProtocolError
from ..p2p import rpc
from ..core.wal.messages import ChainReply, ChainRequest
from ..p2p.chain import MAX_LINKS_PER_REPLY, request_links
from ..p2p.framing import encode_frames
from ..core import protocols
from .epoch_transport import _EpochTransport

logger = logging.getLogger("p2pwalrus.epochs")

PULL_TIMEOUT = 20.0  # one chain pull from one peer
EARLY_MESSAGES = 256  # messages for the next height kept before this node starts it
INBOX_DEPTH = 1024



@dataclass
class EpochChange:
    """The outcome of one epoch change: the decided state and its certificate."""

    state: EpochState
    certificate: StateCertificate
    round: int

@dataclass
class _Instance:
    machine: Tendermint
    height: int
    members: dict[str, int]
    inbox_send: trio.MemorySendChannel
    inbox_recv: trio.MemoryReceiveChannel
    decided: trio.Event = field(default_factory=trio.Event)


class EpochService(_EpochTransport):
    """Runs the committee's epoch changes for one node.

    ``node`` is a running :class:`~p2pwalrus.p2p.host.NodeHost` (its ``deny``
    set is honoured both ways: netlab's partitions); ``keypair`` the node's
    libp2p identity; ``genesis`` the epoch-0 state, whose digest is the chain
    ID every consensus message signs.
    """

    def __init__(self, node, keypair, genesis: EpochState, *, chain: bytes | None = None,
                 timeouts: Timeouts | None = None, gossip_every: float = 1.0,
                 limits: rpc.PeerLimits | None = None, state_dir: Path | None = None,
                 check_value: Callable[[EpochState], None] | None = None):
        self.node = node
        self.keypair = keypair
        self.peer_id = str(node.peer_id)
        # The chain ID every precommit signs: the genesis hash of the network file when the
        # caller has one (the ledger's), else the genesis state's digest.
        self.chain = chain if chain is not None else genesis.digest
        self.genesis = genesis
        self.current = genesis
        self.links: list[tuple[EpochState, StateCertificate]] = []
        self.commits: dict[int, Commit] = {}  # height -> decision proof, answered to laggards
        self.timeouts = timeouts or Timeouts(propose=3.0, prevote=1.0, precommit=1.0, delta=0.5)
        self.gossip_every = gossip_every
        self.limits = limits
        self._instance: _Instance | None = None
        self._early: list[bytes] = []
        self._outboxes: dict[str, trio.MemorySendChannel] = {}  # one sender task per peer, for the service's life
        self._nursery: trio.Nursery | None = None
        self.changed = trio.Event()  # set (and replaced) at every decided epoch
        # Durable state (None: memory only): the decided chain, and the agreement's snapshot,
        # written (fsync) before any message leaves so a restart never signs twice.
        self.state_dir = Path(state_dir) if state_dir is not None else None
        if self.state_dir is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._load_links()
        self.progress = trio.Event()  # set (and replaced) after every input the machine took
        # The node's own judgement of a fresh proposal beyond the transition rules (the stakes
        # its ledger confirmed): the machine's ``acceptable``, never asked of a value a quorum
        # vouched for (prevotes, or a decision proof), which a lagging ledger must not refuse.
        self.check_value = check_value
        self.on_adopt: list[Callable[[EpochState], None]] = []  # called with every adopted state
        self.counters = {"received": 0, "rejected": 0, "sent": 0, "send_failed": 0, "dropped": 0}

    # -- the chain, for nodes that missed epoch changes (and newcomers)

    async def _handle_chain(self, stream, peer: str) -> None:
        first = ChainRequest.from_json(await rpc.recv_json(stream)).first
        links = [link for link in self.links if link[0].epoch >= first][:MAX_LINKS_PER_REPLY]
        await rpc.send_json(stream, ChainReply(len(links)).to_json())
        await stream.write(encode_frames([b for state, cert in links for b in (state.to_bytes(), cert.to_bytes())]))

    async def pull_chain(self, peer: str) -> int:
        """Fetch decided states after ours from ``peer``, verify each link against the
        previous state (the genesis digest anchors the first), adopt them; how many."""
        adopted = 0
        while True:
            with trio.fail_after(PULL_TIMEOUT):
                stream = await self.node.open_stream(ID.from_base58(peer), [protocols.EPOCH_CHAIN])
                try:
                    got = await request_links(stream, self.current.epoch + 1)
                finally:
                    await rpc.close_quietly(stream)
            for state, cert in got:
                if self._instance is not None and self._instance.height <= state.epoch:
                    return adopted  # an agreement is under way here: it decides (or is told) itself
                verify_link(self.current, state, cert, self.chain)
                await self._write(f"link-{state.epoch:010d}.json",
                                  {"state": state.to_bytes().hex(), "cert": cert.to_bytes().hex()})
                self._adopt(state, cert)
                adopted += 1
            if len(got) < MAX_LINKS_PER_REPLY:
                return adopted

    def _adopt(self, state: EpochState, cert: StateCertificate) -> None:
        self.links.append((state, cert))
        self.current = state
        self._early = [d for d in self._early if message_height(d) == state.epoch + 1]
        done, self.changed = self.changed, trio.Event()
        done.set()
        for hook in list(self.on_adopt):
            try:
                hook(state)
            except Exception:  # a hook's failure must not undo the adoption
                logger.exception("epoch %d adopted, but a hook failed", state.epoch)

    def forget_validity(self) -> None:
        """The node's view changed (its ledger applied a certificate): judge fresh proposals
        again rather than from the machine's cache."""
        machine = self.machine
        if machine is not None:
            machine.forget_judgements()

    def _take(self, data: bytes, peer: str) -> None:
        """One message from ``peer``: to the instance of its height, or answered with a decision."""
        self.counters["received"] += 1
        height = message_height(data)
        inst = self._instance
        if height is None:
            raise ProtocolError("not a consensus message")
        if height in self.commits and not (inst is not None and inst.height == height):
            # A peer still in an epoch change this node finished: answer with the decision.
            self._send(peer, self.commits[height].to_bytes())
            return
        if inst is not None and height == inst.height:
            try:
                msg = parse_message(data, chain=self.chain, height=height, members=inst.members)
            except InvalidMessageError:
                self.counters["rejected"] += 1
                raise
            try:
                inst.inbox_send.send_nowait(("msg", msg))
            except trio.WouldBlock:
                self.counters["dropped"] += 1
            return
        if height <= self.current.epoch:
            return  # a change this node learnt from the chain (no Commit to answer with): others will
        if height == self.current.epoch + 1:
            if len(self._early) < EARLY_MESSAGES:
                self._early.append(bytes(data))  # parsed when the instance exists
            return
        raise ProtocolError(f"no epoch change at height {height} here (at epoch {self.current.epoch})")

    # -- durable state

    def _load_links(self) -> None:
        """The decided chain from disk, each link verified again; a bad or missing one ends it."""
        self.links = load_chain(self.state_dir, self.genesis, self.chain)
        if self.links:
            self.current = self.links[-1][0]

    async def _write(self, name: str, obj) -> None:
        if self.state_dir is not None:
            await trio.to_thread.run_sync(write_atomic, self.state_dir / name, json.dumps(obj).encode())

    def _read_snapshot(self, height: int) -> dict | None:
        if self.state_dir is None:
            return None
        try:
            snap = json.loads((self.state_dir / "agreement.json").read_bytes())
        except (OSError, ValueError):
            return None
        return snap if isinstance(snap, dict) and snap.get("height") == height else None

    # -- one epoch change

    def valid_next(self, data: bytes) -> bool:
        """``valid(v)``: a well-formed state that can follow the current one."""
        check_transition(self.current, EpochState.from_bytes(data))
        return True

    def acceptable_next(self, data: bytes) -> bool:
        """``acceptable(v)``: this node's own check of a fresh proposal (``check_value``)."""
        if self.check_value is not None:
            self.check_value(EpochState.from_bytes(data))
        return True

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve the protocol and own the per-peer senders until cancelled (start it in the
        node's nursery, then call :meth:`change_epoch` once per epoch)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.register()
            try:
                task_status.started(self)
                await trio.sleep_forever()
            finally:
                self._nursery = None
                self._outboxes.clear()

    async def change_epoch(self, proposal: EpochState | Callable[[], EpochState],
                           peers: list[str] | None = None) -> EpochChange:
        """Run the agreement for epoch ``current.epoch + 1`` until it decides; adopt the result.

        ``proposal``: what this node proposes when it is a round's proposer (a
        state or a function making one).  ``peers``: who gets this node's
        messages (default: the current committee; add the next committee's
        newcomers so they learn the decision).  Needs :meth:`run` running.
        """
        if self._nursery is None:
            raise RuntimeError("EpochService.run is not running")
        prev = self.current
        height = prev.epoch + 1
        members = dict(prev.weights)
        me = self.peer_id if self.peer_id in members else None

        def get_value() -> bytes:
            value = proposal() if callable(proposal) else proposal
            return value.to_bytes()

        machine = Tendermint(chain=self.chain, height=height, members=members, me=me,
                             sign=(lambda data: sign(self.keypair, data)), get_value=get_value,
                             valid=self.valid_next, acceptable=self.acceptable_next, timeouts=self.timeouts)
        snap = self._read_snapshot(height)
        if snap is not None and me is not None:
            machine.restore(snap)  # a restart mid-change: same locks, same signed messages
        send, recv = trio.open_memory_channel(INBOX_DEPTH)
        inst = _Instance(machine, height, members, send, recv)
        targets = sorted(set(peers or members) - {self.peer_id})
        self._instance = inst
        try:
            early, self._early = self._early, []
            for data in early:
                try:
                    send.send_nowait(("msg", parse_message(data, chain=self.chain, height=height, members=members)))
                except (InvalidMessageError, trio.WouldBlock):
                    self.counters["rejected"] += 1
            decision = await self._drive(inst, targets)
        finally:
            self._instance = None
        state = EpochState.from_bytes(decision.value)
        cert = StateCertificate.from_precommits(height, decision.round, state.digest, decision.precommits)
        verify_link(prev, state, cert, self.chain)  # what a newcomer will check, checked here first
        commit = machine.commit()
        self.commits[height] = commit
        await self._write(f"link-{height:010d}.json", {"state": state.to_bytes().hex(), "cert": cert.to_bytes().hex()})
        self._broadcast(targets, commit.to_bytes())  # once more: the others may still need it
        self._adopt(state, cert)
        logger.info("epoch %d decided in round %d: %d members", height, decision.round, len(state.committee))
        return EpochChange(state, cert, decision.round)

    async def _drive(self, inst: _Instance, targets: list[str]) -> Decided:
        machine = inst.machine
        decision: list[Decided] = []
        async with trio.open_nursery() as nursery:  # timers and gossip of this instance only

            written: list[dict] = [{}]

            async def carry_out(outputs) -> None:
                snap = machine.snapshot()
                if snap != written[0]:  # a lock, a valid value or a signed message: on disk first
                    await self._write("agreement.json", snap)
                    written[0] = snap
                for out in outputs:
                    if isinstance(out, Broadcast):
                        self._broadcast(targets, out.message.to_bytes())
                    elif isinstance(out, ScheduleTimeout):
                        nursery.start_soon(self._timer, inst, out)
                    elif isinstance(out, Decided):
                        decision.append(out)

            async def gossip_loop() -> None:
                while True:
                    await trio.sleep(self.gossip_every)
                    for msg in machine.gossip():
                        self._broadcast(targets, msg.to_bytes())

            nursery.start_soon(gossip_loop)
            await carry_out(machine.start())
            while not decision:
                kind, item = await inst.inbox_recv.receive()
                if kind == "msg":
                    await carry_out(machine.on_message(item))
                else:
                    await carry_out(machine.on_timeout(item))
                done, self.progress = self.progress, trio.Event()
                done.set()
            nursery.cancel_scope.cancel()
        return decision[0]

    async def _timer(self, inst: _Instance, t: ScheduleTimeout) -> None:
        await trio.sleep(t.delay if math.isfinite(t.delay) else 0)
        try:
            inst.inbox_send.send_nowait(("timeout", t))
        except (trio.WouldBlock, trio.ClosedResourceError):
            pass

    @property
    def machine(self) -> Tendermint | None:
        """The agreement machine of the epoch change under way (None between changes)."""
        inst = self._instance
        return inst.machine if inst is not None else None

    @property
    def round(self) -> int | None:
        """The round of the epoch change under way (None between changes)."""
        inst = self._instance
        return inst.machine.round if inst is not None else None

    # -- for newcomers

    def chain_links(self) -> list[tuple[EpochState, StateCertificate]]:
        return list(self.links)


def load_chain(state_dir: Path, genesis: EpochState, chain: bytes) -> list[tuple[EpochState, StateCertificate]]:
    """The decided links on disk under ``state_dir``, each verified from ``genesis`` again; a
    bad or missing one ends the chain there (the rest is pulled from peers)."""
    links: list[tuple[EpochState, StateCertificate]] = []
    current = genesis
    for path in sorted(Path(state_dir).glob("link-*.json")):
        try:
            obj = json.loads(path.read_bytes())
            state = EpochState.from_bytes(bytes.fromhex(obj["state"]))
            cert = StateCertificate.from_bytes(bytes.fromhex(obj["cert"]))
            verify_link(current, state, cert, chain)
        except (OSError, ValueError, KeyError, TypeError, ProtocolError) as exc:
            logger.warning("epoch chain on disk ends before %s: %s", path.name, exc)
            break
        links.append((state, cert))
        current = state
    return links
