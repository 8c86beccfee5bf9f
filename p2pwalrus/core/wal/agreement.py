"""Tendermint's consensus, Algorithm 1, as a pure state machine (no I/O, no clock).

Buchman, Kwon, Milosevic, "The latest gossip on BFT consensus" (arXiv
1807.04938), Algorithm 1, for one height: the committee of epoch ``e``
decides one value, the ``EpochState`` of epoch ``e + 1``.  Line numbers in
the comments below are the paper's.

Inputs are parsed messages (:func:`parse_message` checks the format, the
network, the height, that the sender is a committee member and its Ed25519
signature, so an invalid message never reaches the machine) and timeout
events the driver scheduled; outputs are :class:`Broadcast` (send to every
member, this node included: the machine already counted its own message),
:class:`ScheduleTimeout` and, once, :class:`Decided`.  Signing is a pure
function handed in by the caller (the node's key); nothing here reads a clock
or a socket, so a simulator drives it step by step (tests/test_agreement.py).

Weights: each member weighs its shard count in epoch ``e``; with ``n`` the
total, a quorum ("2f + 1") is weight ``w`` with ``3w >= 2n + 1`` (Walrus's
``is_quorum_for_n_shards``), and "f + 1" (the round skip of line 55) is weight
``>= f + 1`` with ``f = (n - 1) // 3``: more than any Byzantine weight the
protocol tolerates.  A member with no shard may vote; its vote weighs nothing.

Proposer: round robin over members of non-zero weight, sorted by peer ID,
starting at an offset derived from the chain and the height: every honest
member proposes once every ``N`` rounds, which is what liveness needs.

Bounded memory against a Byzantine sender: per (sender, kind, round) the
first vote is kept, and a second one only for a value some rule can use (nil,
the value of that round's proposal, or of a proposal naming that round as its
valid round); at most :data:`MAX_PROPOSALS_PER_ROUND` proposals per round,
and only from that round's proposer; only rounds up to ``round +
ROUND_WINDOW``; for rounds beyond that only each sender's highest round is
remembered (enough for line 55's round skip).  An equivocator's vote counts
for every value it names (a quorum for a value is what it is, whoever signed
twice) but its sender once in the "2f + 1 of anything" of lines 34 and 47.

Messages lost in the network are made up for by :meth:`Tendermint.gossip`,
which the driver re-sends periodically (the current and the previous round,
and the proof behind ``validValue``): the paper assumes gossip that eventually
delivers every message after the global stabilisation time.  A decision
travels as one :class:`Commit` (the proposal and quorum precommits).

Crash recovery: the machine never signs a second proposal or vote for a
round (it re-sends the one it signed), and :meth:`Tendermint.snapshot` /
:meth:`Tendermint.restore` carry the locks, the valid value with the prevotes
that justify it, and the messages it signed in the last two rounds across a
restart; the driver persists the snapshot before any output leaves.

The messages, quorum rules, proposer and outputs live in :mod:`.agreement_messages` (every
name importable here); this module is the machine alone, kept whole (about 380 lines)
because its rules, lines 11-65 of the paper, act on one shared state and read as one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ...errors import InvalidMessageError  # noqa: F401  (defined in errors.py; importable from here)
from .agreement_messages import (  # noqa: F401  (importable from agreement, as before the split)
    MAX_VALUE_SIZE, MAX_ROUND, MAX_HEIGHT, ROUND_WINDOW, MAX_PROPOSALS_PER_ROUND, NIL, MAX_MEMBERS,
    MAX_MESSAGE_SIZE, value_id, is_quorum, is_skip_weight, VoteKind, proposal_signing_bytes,
    vote_signing_bytes, Proposal, Vote, Commit, Message, Signer, sign_proposal, sign_vote, parse_message,
    message_height, Step, Broadcast, ScheduleTimeout, Decided, Output, Timeouts, proposer_for
)

__all__ = [
    "Broadcast",
    "Commit",
    "Decided",
    "InvalidMessageError",
    "MAX_MESSAGE_SIZE",
    "MAX_VALUE_SIZE",
    "NIL",
    "Proposal",
    "ScheduleTimeout",
    "Step",
    "Tendermint",
    "Timeouts",
    "Vote",
    "VoteKind",
    "is_quorum",
    "is_skip_weight",
    "message_height",
    "parse_message",
    "proposer_for",
    "sign_proposal",
    "sign_vote",
    "value_id",
    "vote_signing_bytes",
]


# ---------------------------------------------------------------- the machine


class Tendermint:
    """One height of Algorithm 1 for one committee member (or an observer: ``me=None``).

    ``get_value()`` is the value this node proposes (line 18); ``valid(v)`` is
    the paper's ``valid``, pure and deterministic (e.g. "a well-formed next
    EpochState").  ``acceptable(v)``, optional, is this node's own view of a value
    (the stakes its ledger confirmed, say), which may change as the node learns: it is asked
    only of fresh proposals (line 22), never of a value a quorum has vouched for.  Call
    :meth:`start` once, then feed :meth:`on_message` and :meth:`on_timeout`; each returns
    the outputs to carry out, in order.
    """

    def __init__(
        self,
        *,
        chain: bytes,
        height: int,
        members: Mapping[str, int],
        me: str | None,
        sign: Signer | None,
        get_value: Callable[[], bytes],
        valid: Callable[[bytes], bool],
        acceptable: Callable[[bytes], bool] | None = None,
        timeouts: Timeouts = Timeouts(),
    ) -> None:
        if not members or any(type(w) is not int or w < 0 for w in members.values()):
            raise ValueError("members must map peer IDs to non-negative integer weights")
        self.chain = chain
        self.height = height
        self.members = dict(members)
        self.total = sum(self.members.values())
        if self.total < 1:
            raise ValueError("the committee has no weight")
        if me is not None and (me not in self.members or sign is None):
            raise ValueError("a participant must be a member and have a signer")
        self.me = me
        self._sign = sign
        self._get_value = get_value
        self._valid_fn = valid
        self._acceptable_fn = acceptable
        self.timeouts = timeouts
        # Algorithm 1, lines 2-8
        self.round = 0
        self.step = Step.PROPOSE
        self.locked_value: bytes | None = None
        self.locked_round = -1
        self.valid_value: bytes | None = None
        self.valid_round = -1
        self.decision: Decided | None = None
        # message log
        self._proposals: dict[int, dict[bytes, Proposal]] = {}
        self._votes: dict[tuple[VoteKind, int], dict[str, dict[bytes | None, Vote]]] = {}
        self._tally: dict[tuple[VoteKind, int], dict[bytes | None, int]] = {}
        self._any: dict[tuple[VoteKind, int], int] = {}
        self._highest_round: dict[str, int] = {}
        self._valid_cache: dict[bytes, bool] = {}
        self._acceptable_cache: dict[bytes, bool] = {}
        self._once: set[tuple[int, int]] = set()  # (line, round) of "for the first time" rules
        self._out: list[Output] = []
        self._started = False
        self._commit_proposal: Proposal | None = None
        self._own: dict[tuple[int, int], Message] = {}  # (0 proposal | vote kind, round) -> what this node signed
        self.equivocations = 0

    # -- public API

    def proposer(self, round_: int) -> str:
        return proposer_for(self.members, self.chain, self.height, round_)

    def start(self) -> list[Output]:
        """Line 10: ``upon start do StartRound(0)`` (or the round a restored snapshot was in)."""
        if self._started:
            return []
        self._started = True
        self._start_round(self.round)
        # After a restart, the steps already taken in this round stay taken.
        for kind, step in ((VoteKind.PREVOTE, Step.PREVOTE), (VoteKind.PRECOMMIT, Step.PRECOMMIT)):
            if (int(kind), self.round) in self._own:
                self.step = max(self.step, step)
        if self.step == Step.PREVOTE:
            self._schedule(Step.PREVOTE)  # what would have fired it may not come again
        self._evaluate()
        return self._flush()

    # -- crash recovery (Tendermint's write-ahead log, reduced to what safety needs)

    def snapshot(self) -> dict:
        """What must survive a crash so that a restarted node never signs a second message for
        a (round, kind) nor forgets its lock: persist it (fsync) before sending any output."""
        return {
            "height": self.height,
            "round": self.round,
            "locked_round": self.locked_round,
            "locked_value": self.locked_value.hex() if self.locked_value is not None else None,
            "valid_round": self.valid_round,
            "valid_value": self.valid_value.hex() if self.valid_value is not None else None,
            # Rounds never go back, so what was signed in earlier rounds cannot be signed again;
            # the previous round's are kept for peers still in it (see gossip()).
            "own": [m.to_bytes().hex() for (_, r), m in sorted(self._own.items()) if r >= self.round - 1],
            # The prevotes that justify validValue (its proof of lock): without them no one,
            # after restarts, could show line 28 its quorum, and the locked nodes would never
            # prevote again for the value they are locked on.
            "pol": [v.to_bytes().hex() for v in self._pol()],
        }

    def _pol(self) -> list[Vote]:
        if self.valid_value is None:
            return []
        vid = value_id(self.valid_value)
        return [m[vid] for m in self._votes.get((VoteKind.PREVOTE, self.valid_round), {}).values() if vid in m]

    def restore(self, snap: dict) -> None:
        """Load a :meth:`snapshot` (from this node's own disk) before :meth:`start`."""
        if self._started:
            raise ValueError("restore before start")
        if snap.get("height") != self.height:
            return  # a snapshot of another epoch change: nothing of it applies
        own = [parse_message(bytes.fromhex(h), chain=self.chain, height=self.height, members=self.members)
               for h in snap["own"]]
        if any(m.sender != self.me for m in own):
            raise ValueError("a snapshot holds messages this node did not sign")
        self.round = int(snap["round"])
        self.locked_round = int(snap["locked_round"])
        self.locked_value = bytes.fromhex(snap["locked_value"]) if snap["locked_value"] is not None else None
        self.valid_round = int(snap["valid_round"])
        self.valid_value = bytes.fromhex(snap["valid_value"]) if snap["valid_value"] is not None else None
        for m in own:
            key = (0, m.round) if isinstance(m, Proposal) else (int(m.kind), m.round)
            self._own[key] = m
            self._store(m)
        for h in snap.get("pol", ()):
            vote = parse_message(bytes.fromhex(h), chain=self.chain, height=self.height, members=self.members)
            if isinstance(vote, Vote) and vote.kind == VoteKind.PREVOTE:
                self._store(vote)

    def on_message(self, msg: Message) -> list[Output]:
        """A message parsed by :func:`parse_message` (another height or chain is ignored)."""
        if msg.chain != self.chain or msg.height != self.height or msg.sender not in self.members:
            return []
        if self.decision is not None:
            return []
        if isinstance(msg, Commit):
            self._on_commit(msg)
        elif self._store(msg) and self._started:
            self._evaluate()
        return self._flush()

    def _on_commit(self, commit: Commit) -> None:
        """Line 49 on a bundle: the proposer's proposal and quorum precommits for it."""
        prop = commit.proposal
        if prop.sender != self.proposer(prop.round):
            return
        senders = {v.sender for v in commit.precommits}
        if not senders <= self.members.keys():
            return
        if is_quorum(sum(self.members[p] for p in senders), self.total) and self._valid(prop):
            self._commit_proposal = prop
            self.decision = Decided(prop.value, prop.round, commit.precommits)
            self._out.append(self.decision)

    def on_timeout(self, t: ScheduleTimeout) -> list[Output]:
        """Lines 57-66: a timeout the driver scheduled has expired."""
        if self.decision is None and t.height == self.height and t.round == self.round:
            if t.step == Step.PROPOSE and self.step == Step.PROPOSE:
                self._vote(VoteKind.PREVOTE, None)
                self.step = Step.PREVOTE
            elif t.step == Step.PREVOTE and self.step == Step.PREVOTE:
                self._vote(VoteKind.PRECOMMIT, None)
                self.step = Step.PRECOMMIT
            elif t.step == Step.PRECOMMIT:
                self._start_round(self.round + 1)
            self._evaluate()
        return self._flush()

    def gossip(self) -> list[Message]:
        """Messages to re-send so that peers that lost some catch up.

        Decided: the decision's proposal and precommits (enough for line 49
        anywhere).  Otherwise: every message held for the current and the
        previous round, and the proposal and prevotes behind ``validValue``
        (enough for line 28).
        """
        if self.decision is not None:
            return [self.commit()]
        out: list[Message] = []
        # The previous round too: a peer still in it may lack what moved this node on (its
        # precommit, say) and, with fewer than f + 1 ahead of it, cannot skip.
        rounds = {self.round, self.round - 1} - {-1} | ({self.valid_round} if self.valid_round >= 0 else set())
        for r in sorted(rounds):
            out.extend(self._proposals.get(r, {}).values())
            for kind in (VoteKind.PREVOTE, VoteKind.PRECOMMIT):
                for mine in self._votes.get((kind, r), {}).values():
                    out.extend(mine.values())
        return out

    def commit(self) -> Commit:
        """The decision as one relayable message (only once decided)."""
        if self.decision is None:
            raise ValueError("not decided")
        d = self.decision
        prop = self._proposal_with_id(d.round, d.value_id) or self._commit_proposal
        return Commit(prop, d.precommits)

    def votes(self, kind: VoteKind, round_: int) -> list[Vote]:
        """Every vote held for (kind, round), equivocations included."""
        return [v for mine in self._votes.get((kind, round_), {}).values() for v in mine.values()]

    # -- message log

    def _store(self, msg: Message) -> bool:
        r = msg.round
        if r > self._highest_round.get(msg.sender, -1):
            self._highest_round[msg.sender] = r
        if r > self.round + ROUND_WINDOW:
            return True  # only the sender's round counts (line 55)
        if isinstance(msg, Proposal):
            if msg.sender != self.proposer(r):
                return False
            held = self._proposals.setdefault(r, {})
            if msg.id in held:
                return False
            if len(held) >= MAX_PROPOSALS_PER_ROUND:
                self.equivocations += 1
                return False
            if held:
                self.equivocations += 1
            held[msg.id] = msg
            return True
        key = (msg.kind, r)
        by_sender = self._votes.setdefault(key, {})
        mine = by_sender.setdefault(msg.sender, {})
        if msg.value_id in mine:
            return False
        w = self.members[msg.sender]
        if mine:
            # An equivocation. Its vote counts for its value (a quorum for a value is what it
            # is, whoever signed twice) if the rules can use it: nil, or the value of a
            # proposal of this round, or of a later proposal naming this round as its valid
            # round. Others are dropped (a flood of made-up IDs costs nothing); one that becomes
            # usable later comes again with the gossip of the peers that use it.
            self.equivocations += 1
            if msg.value_id is not None and not self._usable(r, msg.value_id):
                return False
        else:
            self._any[key] = self._any.get(key, 0) + w  # the sender counts once in "2f + 1 of anything"
        mine[msg.value_id] = msg
        tally = self._tally.setdefault(key, {})
        tally[msg.value_id] = tally.get(msg.value_id, 0) + w
        return True

    def _usable(self, round_: int, vid: bytes) -> bool:
        """Can a rule use a vote of ``round_`` for ``vid``?  Lines 36/44/49 look at votes for
        the proposal of their own round, line 28 at votes of a proposal's valid round."""
        if self.valid_value is not None and self.valid_round == round_ and vid == value_id(self.valid_value):
            return True  # the proof of lock a restored node keeps
        if vid in self._proposals.get(round_, {}):
            return True
        return any(p.valid_round == round_ and p.id == vid for props in self._proposals.values() for p in props.values())

    def _weight(self, kind: VoteKind, round_: int, vid: bytes | None) -> int:
        return self._tally.get((kind, round_), {}).get(vid, 0)

    def _proposal_with_id(self, round_: int, vid: bytes) -> Proposal | None:
        return self._proposals.get(round_, {}).get(vid)

    def _valid(self, prop: Proposal) -> bool:
        return self._judge(self._valid_fn, self._valid_cache, prop)

    def _acceptable(self, prop: Proposal) -> bool:
        """Valid, and this node's own view accepts it: asked only of a fresh proposal (line 22).

        A value a quorum prevoted was accepted by f + 1 honest members; asking a node's view
        again there (lines 28, 36, 49) would stall the height for good once that view moved
        on: the locked members re-propose their valid value in every round, and nobody whose
        view changed would ever prevote it."""
        if not self._valid(prop):
            return False
        if self._acceptable_fn is None:
            return True
        return self._judge(self._acceptable_fn, self._acceptable_cache, prop)

    @staticmethod
    def _judge(fn: Callable[[bytes], bool], cache: dict[bytes, bool], prop: Proposal) -> bool:
        ok = cache.get(prop.id)
        if ok is None:
            try:
                ok = bool(fn(prop.value))
            except Exception:  # a judge that raises on garbage means "no"
                ok = False
            cache[prop.id] = ok
        return ok

    def forget_judgements(self) -> None:
        """This node's view changed (``acceptable`` may answer otherwise): ask it again."""
        self._acceptable_cache.clear()

    # -- actions

    def _emit(self, msg: Message) -> None:
        self._out.append(Broadcast(msg))
        self._store(msg)  # a broadcast reaches its sender too

    def _vote(self, kind: VoteKind, vid: bytes | None) -> None:
        if self.me is None:
            return
        mine = self._own.get((int(kind), self.round))
        if mine is not None:  # signed before a restart: send that one again, never a second
            self._emit(mine)
            return
        vote = sign_vote(self._sign, self.me, kind, self.chain, self.height, self.round, vid)
        self._own[(int(kind), self.round)] = vote
        self._emit(vote)

    def _schedule(self, step: Step) -> None:
        self._out.append(ScheduleTimeout(step, self.height, self.round, self.timeouts.of(step, self.round)))

    def _start_round(self, round_: int) -> None:
        """Lines 11-21."""
        self.round = round_
        self.step = Step.PROPOSE
        if self.me is not None and self.proposer(round_) == self.me:
            prop = self._own.get((0, round_))
            if prop is None:
                if self.valid_value is not None:
                    proposal = self.valid_value
                else:
                    proposal = bytes(self._get_value())
                prop = sign_proposal(self._sign, self.me, self.chain, self.height, round_, proposal,
                                     self.valid_round)
                self._own[(0, round_)] = prop
            self._emit(prop)
        else:
            self._schedule(Step.PROPOSE)

    def _flush(self) -> list[Output]:
        out, self._out = self._out, []
        return out

    # -- the upon rules, evaluated until none fires

    def _evaluate(self) -> None:
        while self.decision is None and self._fire_one():
            pass

    def _fire_one(self) -> bool:
        total = self.total
        # Line 49: a decision, from any round.
        for r, props in self._proposals.items():
            for vid, prop in props.items():
                if is_quorum(self._weight(VoteKind.PRECOMMIT, r, vid), total) and self._valid(prop):
                    pcs = tuple(m[vid] for m in self._votes[(VoteKind.PRECOMMIT, r)].values() if vid in m)
                    self.decision = Decided(prop.value, r, pcs)
                    self._out.append(self.decision)
                    return True
        # Line 55: f + 1 weight of senders in a later round: skip to the highest such round.
        ahead = sorted(((r, self.members[p]) for p, r in self._highest_round.items() if r > self.round),
                       reverse=True)
        acc = 0
        for r, w in ahead:
            acc += w
            if is_skip_weight(acc, total):
                self._start_round(r)
                return True
        r = self.round
        props = self._proposals.get(r, {})
        if self.step == Step.PROPOSE:
            for prop in props.values():
                vr = prop.valid_round
                if vr == -1:  # line 22
                    ok = self._acceptable(prop) and (self.locked_round == -1 or self.locked_value == prop.value)
                elif vr < r and is_quorum(self._weight(VoteKind.PREVOTE, vr, prop.id), total):  # line 28
                    ok = self._valid(prop) and (self.locked_round <= vr or self.locked_value == prop.value)
                else:
                    continue
                self._vote(VoteKind.PREVOTE, prop.id if ok else None)
                self.step = Step.PREVOTE
                return True
        # Line 34
        if (self.step == Step.PREVOTE and (34, r) not in self._once
                and is_quorum(self._any.get((VoteKind.PREVOTE, r), 0), total)):
            self._once.add((34, r))
            self._schedule(Step.PREVOTE)
            return True
        # Line 36
        if self.step >= Step.PREVOTE and (36, r) not in self._once:
            for prop in props.values():
                if is_quorum(self._weight(VoteKind.PREVOTE, r, prop.id), total) and self._valid(prop):
                    self._once.add((36, r))
                    if self.step == Step.PREVOTE:
                        self.locked_value, self.locked_round = prop.value, r
                        self._vote(VoteKind.PRECOMMIT, prop.id)
                        self.step = Step.PRECOMMIT
                    self.valid_value, self.valid_round = prop.value, r
                    return True
        # Line 44
        if self.step == Step.PREVOTE and is_quorum(self._weight(VoteKind.PREVOTE, r, None), total):
            self._vote(VoteKind.PRECOMMIT, None)
            self.step = Step.PRECOMMIT
            return True
        # Line 47
        if (47, r) not in self._once and is_quorum(self._any.get((VoteKind.PRECOMMIT, r), 0), total):
            self._once.add((47, r))
            self._schedule(Step.PRECOMMIT)
            return True
        return False
