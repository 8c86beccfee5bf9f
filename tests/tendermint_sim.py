"""A deterministic discrete-event simulator for the pure Tendermint machine (tests only).

Every honest node is a real :class:`Tendermint` fed through the real wire
format: each message is signed, encoded, possibly dropped, duplicated,
delayed (so reordered) or cut by a partition, and parsed with signature
checks at the receiver.  Timeouts are events on the same clock.  A node
re-sends :meth:`Tendermint.gossip` every ``gossip_every`` seconds, as the
node service does, which is how messages lost before the heal or the global
stabilisation time (GST) reach everyone after it.

A Byzantine member (:class:`Equivocator`) holds a real key and signs whatever
helps it most: two valid proposals when it proposes, prevotes and precommits
for different values to different peers in every round it hears of, votes for
far-future rounds, and garbage bytes.

All randomness comes from one ``random.Random(seed)``: a run is reproducible
from its seed.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from nacl.signing import SigningKey

from p2pwalrus.core.keys import peer_id_from_public_key
from p2pwalrus.core.wal.agreement import (
    Broadcast,
    Decided,
    InvalidMessageError,
    Proposal,
    ScheduleTimeout,
    Tendermint,
    Timeouts,
    Vote,
    VoteKind,
    parse_message,
    proposer_for,
    sign_proposal,
    sign_vote,
    value_id,
)

CHAIN = bytes(range(32))
HEIGHT = 1


def make_keys(count: int, seed: int = 0) -> list[tuple[str, SigningKey]]:
    rng = random.Random(seed)
    keys = [SigningKey(rng.randbytes(32)) for _ in range(count)]
    return [(peer_id_from_public_key(bytes(k.verify_key)), k) for k in keys]


def signer(key: SigningKey) -> Callable[[bytes], bytes]:
    return lambda data: key.sign(data).signature


def valid_value(v: bytes) -> bool:
    return v.startswith(b"ok:")


@dataclass
class Schedule:
    drop: float = 0.0  # probability a message sent before GST is lost
    dup: float = 0.0  # probability a message is delivered twice
    max_delay: float = 0.2  # before GST a delay is uniform in [0, max_delay * 10]; after, [0, max_delay]
    gst: float = 0.0
    partition: tuple[frozenset[str], ...] | None = None  # sides; messages across are lost ...
    heal: float = 0.0  # ... until this time
    gossip_every: float = 1.0
    horizon: float = 400.0  # simulated seconds
    crashes: int = 0  # crash-restarts of random honest nodes (each restarts from its last snapshot)


@dataclass
class Run:
    decisions: dict[str, Decided] = field(default_factory=dict)
    decided_at: dict[str, float] = field(default_factory=dict)
    proposed: set[bytes] = field(default_factory=set)
    delivered: int = 0
    rejected: int = 0
    crashes: int = 0
    end: float = 0.0
    exhausted: bool = False  # stopped by the event budget, not the horizon


class Equivocator:
    """A Byzantine member: in every round it hears of it proposes three values, one of
    them invalid (when it is the proposer), and for every value it learns of in a round (honest proposals
    included) it prevotes and precommits that value to a random subset of the peers
    and something else to the rest, so that honest nodes see different tallies."""

    def __init__(self, peer: str, key: SigningKey, members: dict[str, int], rng: random.Random):
        self.peer, self.sign, self.members, self.rng = peer, signer(key), members, rng
        self.values = (b"ok:byzantine-A", b"ok:byzantine-B")
        self.done_rounds: set[int] = set()
        self.done_ids: set[tuple[int, bytes | None]] = set()

    def react(self, msg) -> list[tuple[str, bytes]]:
        """Messages (recipient, bytes) in answer to a message it received."""
        out: list[tuple[str, bytes]] = []
        round_ = msg.round
        if round_ > 10_000:
            return out
        others = sorted(p for p in self.members if p != self.peer)
        if round_ not in self.done_rounds:
            self.done_rounds.add(round_)
            if proposer_for(self.members, CHAIN, HEIGHT, round_) == self.peer:
                for i, p in enumerate(others):
                    value = (*self.values, b"invalid: valid() refuses it")[i % 3]
                    out.append((p, sign_proposal(self.sign, self.peer, CHAIN, HEIGHT, round_, value, -1).to_bytes()))
            far = round_ + self.rng.randint(5, 50)
            for p in others:
                out.append((p, sign_vote(self.sign, self.peer, VoteKind.PREVOTE, CHAIN, HEIGHT, far, None).to_bytes()))
                out.append((p, self.rng.randbytes(self.rng.randint(0, 200))))
            ids = [value_id(v) for v in (*self.values, b"invalid: valid() refuses it")] + [None]
        else:
            ids = []
        vid = getattr(msg, "id", None) if isinstance(msg, Proposal) else getattr(msg, "value_id", None)
        ids.append(vid)
        for vid in ids:
            if (round_, vid) in self.done_ids:
                continue
            self.done_ids.add((round_, vid))
            for kind in (VoteKind.PREVOTE, VoteKind.PRECOMMIT):
                for p in others:
                    if self.rng.random() < 0.5:
                        out.append((p, sign_vote(self.sign, self.peer, kind, CHAIN, HEIGHT, round_, vid).to_bytes()))
        return out


class Simulation:
    def __init__(self, weights: list[int], *, byzantine: int | None = None, seed: int = 0,
                 schedule: Schedule | None = None, timeouts: Timeouts | None = None,
                 values: list[bytes] | None = None, valid: Callable[[bytes], bool] = valid_value,
                 keys: list[tuple[str, SigningKey]] | None = None, chain: bytes = CHAIN, height: int = HEIGHT):
        self.rng = random.Random(seed)
        self.schedule = schedule or Schedule()
        self.keys = keys or make_keys(len(weights), seed)
        self.members = {p: w for (p, _), w in zip(self.keys, weights)}
        self.chain, self.height = chain, height
        self.byzantine: Equivocator | None = None
        self.nodes: dict[str, Tendermint] = {}
        self.factories: dict[str, Callable[[], Tendermint]] = {}
        self.disk: dict[str, dict] = {}  # each node's last persisted snapshot
        self.signed: dict[tuple, bytes | None] = {}
        self.down_until: dict[str, float] = {}
        self.run = Run()
        for i, (peer, key) in enumerate(self.keys):
            if i == byzantine:
                self.byzantine = Equivocator(peer, key, self.members, self.rng)
                continue
            value = values[i] if values else b"ok:value-of-%d" % i

            def get_value(value=value):
                self.run.proposed.add(value)
                return value

            def make(peer=peer, key=key, get_value=get_value):
                return Tendermint(chain=chain, height=height, members=self.members, me=peer,
                                  sign=signer(key), get_value=get_value, valid=valid,
                                  timeouts=timeouts or Timeouts(propose=1.0, prevote=0.5,
                                                                precommit=0.5, delta=0.25))

            self.factories[peer] = make
            self.nodes[peer] = make()
        if self.byzantine:
            self.run.proposed.update(self.byzantine.values)
        self.verified: dict[str, dict[bytes, object]] = {p: {} for p in self.members}
        self.queue: list = []
        self.seq = 0
        self.now = 0.0

    # -- network

    def _cut(self, a: str, b: str) -> bool:
        s = self.schedule
        if s.partition is None or self.now >= s.heal:
            return False
        return not any(a in side and b in side for side in s.partition)

    def _push(self, at: float, kind: str, payload) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, self.seq, kind, payload))

    def send(self, src: str, dst: str, data: bytes) -> None:
        s = self.schedule
        if src != dst and self._cut(src, dst):
            return
        before_gst = self.now < s.gst
        if before_gst and self.rng.random() < s.drop:
            return
        copies = 2 if self.rng.random() < s.dup else 1
        for _ in range(copies):
            delay = self.rng.uniform(0, s.max_delay * (10 if before_gst else 1))
            self._push(self.now + delay, "msg", (dst, data))

    def _carry_out(self, peer: str, outputs) -> None:
        self.disk[peer] = self.nodes[peer].snapshot()  # written (fsync) before anything is sent
        for out in outputs:
            if isinstance(out, Broadcast):
                m = out.message
                if isinstance(m, (Proposal, Vote)):  # an honest node never signs two for one slot
                    slot = (peer, type(m).__name__, getattr(m, "kind", 0), m.round)
                    what = m.id if isinstance(m, Proposal) else m.value_id
                    assert self.signed.setdefault(slot, what) == what, f"{peer} signed twice for {slot[1:]}"
                data = out.message.to_bytes()
                for other in self.members:
                    if other != peer:
                        self.send(peer, other, data)
            elif isinstance(out, ScheduleTimeout):
                self._push(self.now + out.delay, "timeout", (peer, out))
            elif isinstance(out, Decided):
                assert peer not in self.run.decisions, "decided twice"
                self.run.decisions[peer] = out
                self.run.decided_at[peer] = self.now

    # -- running

    def _is_down(self, peer: str) -> bool:
        return self.now < self.down_until.get(peer, -1.0)

    def start(self) -> None:
        for _ in range(self.schedule.crashes):
            peer = self.rng.choice(sorted(self.nodes))
            at = self.rng.uniform(0, self.schedule.gst + 20)
            self._push(at, "crash", (peer, self.rng.uniform(0.1, 5.0)))
        for peer, node in self.nodes.items():
            self._carry_out(peer, node.start())
            self._push(self.rng.uniform(0, self.schedule.gossip_every), "gossip", peer)
        if self.byzantine:
            for p, data in self.byzantine.react(sign_vote(self.byzantine.sign, self.byzantine.peer,
                                                          VoteKind.PREVOTE, CHAIN, HEIGHT, 0, None)):
                self.send(self.byzantine.peer, p, data)

    def deliver(self, dst: str, data: bytes) -> None:
        if dst not in self.nodes:  # to the Byzantine member: it reacts to the round it hears of
            try:
                msg = parse_message(data, chain=self.chain, height=self.height, members=self.members)
            except InvalidMessageError:
                return
            for p, out in self.byzantine.react(msg):
                self.send(dst, p, out)
            return
        # A copy already parsed skips the signature check (a verified-message cache, as a node
        # keeps); it is still handed to the machine, which ignores what it already holds.
        msg = self.verified[dst].get(data)
        if msg is None:
            try:
                msg = parse_message(data, chain=self.chain, height=self.height, members=self.members)
            except InvalidMessageError:
                self.run.rejected += 1
                return
            self.verified[dst][data] = msg
        self.run.delivered += 1
        self._carry_out(dst, self.nodes[dst].on_message(msg))

    def step(self) -> bool:
        if not self.queue or self.queue[0][0] > self.schedule.horizon:
            return False
        at, _, kind, payload = heapq.heappop(self.queue)
        self.now = at
        if kind == "msg":
            if not self._is_down(payload[0]):
                self.deliver(*payload)
        elif kind == "timeout":
            peer, t = payload
            if not self._is_down(peer):
                self._carry_out(peer, self.nodes[peer].on_timeout(t))
        elif kind == "crash":  # the node loses everything but its disk, and comes back later
            peer, downtime = payload
            if peer not in self.run.decisions and not self._is_down(peer):
                self.down_until[peer] = self.now + downtime
                self._push(self.now + downtime, "restart", peer)
                self.run.crashes += 1
        elif kind == "restart":
            peer = payload
            node = self.factories[peer]()
            if peer in self.disk:
                node.restore(self.disk[peer])
            self.nodes[peer] = node
            self._carry_out(peer, node.start())
        elif kind == "gossip":
            peer = payload
            for msg in ([] if self._is_down(peer) else self.nodes[peer].gossip()):
                data = msg.to_bytes()
                for other in self.members:
                    if other != peer:
                        self.send(peer, other, data)
            self._push(self.now + self.schedule.gossip_every, "gossip", peer)
        return True

    def run_until(self, done: Callable[[Simulation], bool], max_events: int = 2_000_000) -> Run:
        self.start()
        for _ in range(max_events):
            if done(self) or not self.step():
                break
        else:
            self.run.exhausted = True
        self.run.end = self.now
        return self.run

    def all_decided(self) -> bool:
        return len(self.run.decisions) == len(self.nodes)
