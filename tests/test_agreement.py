"""Tendermint (Algorithm 1) as a pure machine: messages, agreement, validity, partitions.

The property tests run many instances through the deterministic simulator of
tests/tendermint_sim.py over random schedules: drops, duplicates, reordering,
partitions, crash-restarts of honest nodes from their last snapshot, and one
Byzantine member of four that equivocates.  Examples per
test: ``P2PWALRUS_PROPERTY_EXAMPLES`` (default 40; e.g. 1000 on demand).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from p2pwalrus.core.wal.agreement import (
    MAX_MESSAGE_SIZE,
    Commit,
    InvalidMessageError,
    Proposal,
    Tendermint,
    Vote,
    VoteKind,
    is_quorum,
    is_skip_weight,
    parse_message,
    proposer_for,
    sign_proposal,
    sign_vote,
    value_id,
)
from tests.tendermint_sim import CHAIN, HEIGHT, Schedule, Simulation, make_keys, signer, valid_value

EXAMPLES = int(os.environ.get("P2PWALRUS_PROPERTY_EXAMPLES", "40"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
# A few seconds per property test at the default count; more examples, more time.
pytestmark = pytest.mark.timeout(max(300, EXAMPLES))

KEYS = make_keys(4, seed=1)
MEMBERS = {p: 1 for p, _ in KEYS}


def _f(total: int) -> int:
    return (total - 1) // 3


# ---------------------------------------------------------------- quorums


def test_quorum_is_n_minus_f_shards_and_skip_is_f_plus_one():
    for n in range(1, 200):
        f = _f(n)
        q = min(w for w in range(n + 1) if is_quorum(w, n))
        assert q == n - f if n % 3 == 1 else 3 * q >= 2 * n + 1 > 3 * (q - 1)
        assert 2 * q - n > f  # two quorums share more than f: an honest member
        assert min(w for w in range(n + 1) if is_skip_weight(w, n)) == f + 1


# ---------------------------------------------------------------- messages


def test_messages_round_trip_through_bytes():
    (p0, k0) = KEYS[0]
    prop = sign_proposal(signer(k0), p0, CHAIN, HEIGHT, 3, b"ok:v", 1)
    vote = sign_vote(signer(k0), p0, VoteKind.PRECOMMIT, CHAIN, HEIGHT, 3, prop.id)
    nil = sign_vote(signer(k0), p0, VoteKind.PREVOTE, CHAIN, HEIGHT, 2, None)
    for msg in (prop, vote, nil):
        assert parse_message(msg.to_bytes(), chain=CHAIN, height=HEIGHT, members=MEMBERS) == msg


def test_parse_refuses_other_network_height_stranger_forgery_and_junk():
    (p0, k0), (p1, k1) = KEYS[0], KEYS[1]
    vote = sign_vote(signer(k0), p0, VoteKind.PREVOTE, CHAIN, HEIGHT, 0, value_id(b"ok:x"))
    data = vote.to_bytes()

    def refused(data, **kw):
        args = dict(chain=CHAIN, height=HEIGHT, members=MEMBERS) | kw
        with pytest.raises(InvalidMessageError) as err:
            parse_message(data, **args)
        return err.value.reason

    assert "another network" in refused(data, chain=bytes(32))
    assert "height" in refused(data, height=HEIGHT + 1)
    assert "not a committee member" in refused(data, members={p1: 1})
    forged = bytearray(data)
    forged[1:33] = bytes(k1.verify_key)  # claims p1 signed it
    assert "bad signature" in refused(bytes(forged))
    flipped = bytearray(data)
    flipped[-1] ^= 1
    assert "bad signature" in refused(bytes(flipped))
    assert "truncated" in refused(data[:50])
    assert "fixed size" in refused(data + b"\x00")
    assert "unknown message type" in refused(b"\x09" + data[1:])
    assert "larger than" in refused(b"\x01" + bytes(MAX_MESSAGE_SIZE))
    nil_with_id = bytearray(data)
    nil_with_id[97 + 1 + 32 + 8 + 4] = 0  # has-value flag cleared, ID left in place
    assert "nil flag" in refused(bytes(nil_with_id))


def test_messages_validate_at_construction():
    (p0, _) = KEYS[0]
    with pytest.raises(InvalidMessageError):
        Proposal(CHAIN, HEIGHT, 2, b"ok", 2, p0, bytes(64))  # valid round must be below the round
    with pytest.raises(InvalidMessageError):
        Vote(VoteKind.PREVOTE, CHAIN, HEIGHT, -1, None, p0, bytes(64))
    with pytest.raises(InvalidMessageError):
        Vote(VoteKind.PREVOTE, CHAIN, HEIGHT, 0, b"short", p0, bytes(64))
    with pytest.raises(InvalidMessageError):
        Vote(VoteKind.PREVOTE, CHAIN, HEIGHT, 0, None, "not-a-peer", bytes(64))


def _commit(round_: int, value: bytes, signers) -> Commit:
    proposer = proposer_for(MEMBERS, CHAIN, HEIGHT, round_)
    key = dict(KEYS)[proposer]
    prop = sign_proposal(signer(key), proposer, CHAIN, HEIGHT, round_, value, -1)
    votes = tuple(sign_vote(signer(k), p, VoteKind.PRECOMMIT, CHAIN, HEIGHT, round_, prop.id) for p, k in signers)
    return Commit(prop, votes)


def test_a_commit_alone_lets_a_node_that_missed_everything_decide():
    commit = _commit(2, b"ok:decided", KEYS[:3])
    parsed = parse_message(commit.to_bytes(), chain=CHAIN, height=HEIGHT, members=MEMBERS)
    assert parsed == commit
    node = Tendermint(chain=CHAIN, height=HEIGHT, members=MEMBERS, me=KEYS[3][0], sign=signer(KEYS[3][1]),
                      get_value=lambda: b"ok:mine", valid=valid_value)
    node.start()
    out = node.on_message(parsed)
    assert node.decision is not None and node.decision.value == b"ok:decided"
    assert node.decision in out
    assert node.gossip() == [commit]  # and it relays the proof
    assert node.on_message(parsed) == []  # decides once


def test_a_commit_short_of_a_quorum_or_for_an_invalid_value_decides_nothing():
    short = _commit(1, b"ok:v", KEYS[:2])
    with pytest.raises(InvalidMessageError, match="quorum"):
        parse_message(short.to_bytes(), chain=CHAIN, height=HEIGHT, members=MEMBERS)
    node = Tendermint(chain=CHAIN, height=HEIGHT, members=MEMBERS, me=KEYS[3][0], sign=signer(KEYS[3][1]),
                      get_value=lambda: b"ok:mine", valid=valid_value)
    node.start()
    node.on_message(short)  # even handed over unparsed
    bad = _commit(1, b"invalid", KEYS[:3])
    node.on_message(bad)
    assert node.decision is None


# ---------------------------------------------------------------- single runs


def test_four_honest_nodes_on_a_clean_network_decide_the_first_proposal_in_round_zero():
    sim = Simulation([1, 1, 1, 1], seed=3)
    run = sim.run_until(Simulation.all_decided)
    assert len(run.decisions) == 4
    assert {d.round for d in run.decisions.values()} == {0}
    first = proposer_for(sim.members, CHAIN, HEIGHT, 0)
    assert {d.value for d in run.decisions.values()} == {sim.nodes[first]._get_value()}


def test_a_byzantine_member_alone_cannot_make_honest_nodes_skip_rounds():
    # It sends votes for far-future rounds: weight 1 of 4 is not f + 1.
    sim = Simulation([1, 1, 1, 1], byzantine=0, seed=5)
    run = sim.run_until(Simulation.all_decided)
    assert len(run.decisions) == 3
    assert max(d.round for d in run.decisions.values()) < 5


def _agreement_and_validity(sim: Simulation, run) -> None:
    values = {d.value for d in run.decisions.values()}
    assert len(values) <= 1, f"honest nodes decided differently: {values}"
    for d in run.decisions.values():
        assert valid_value(d.value), "decided an invalid value"
        assert d.value in run.proposed, "decided a value nobody proposed"
        weight = sum(sim.members[v.sender] for v in d.precommits)
        assert is_quorum(weight, sum(sim.members.values()))
        assert all(v.value_id == d.value_id and v.round == d.round for v in d.precommits)


# ---------------------------------------------------------------- properties


@st.composite
def schedules(draw):
    return Schedule(
        drop=draw(st.sampled_from([0.0, 0.1, 0.3, 0.6])),
        dup=draw(st.sampled_from([0.0, 0.2, 0.5])),
        max_delay=draw(st.sampled_from([0.05, 0.2, 0.6])),
        gst=draw(st.sampled_from([0.0, 5.0, 30.0])),
        gossip_every=1.0,
        horizon=600.0,
        crashes=draw(st.sampled_from([0, 0, 2, 6])),
    )


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), schedule=schedules(), byzantine=st.sampled_from([None, 0, 1, 2, 3]))
def test_honest_deciders_agree_on_a_valid_value_under_random_schedules_crashes_and_one_equivocator(
        seed, schedule, byzantine):
    sim = Simulation([1, 1, 1, 1], byzantine=byzantine, seed=seed, schedule=schedule)
    run = sim.run_until(Simulation.all_decided)
    _agreement_and_validity(sim, run)
    assert sim.all_decided(), f"no decision by t={run.end:.0f}s after GST at {schedule.gst}s" + (
        " (event budget spent)" if run.exhausted else "")


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), schedule=schedules(),
       weights=st.lists(st.integers(1, 6), min_size=4, max_size=7))
def test_agreement_holds_with_shard_weights_and_a_byzantine_of_at_most_f(seed, schedule, weights):
    total = sum(weights)
    # The heaviest member whose weight is at most f turns Byzantine (if any is light enough).
    light = [i for i, w in enumerate(weights) if w <= _f(total)]
    byzantine = max(light, key=lambda i: weights[i]) if light else None
    sim = Simulation(weights, byzantine=byzantine, seed=seed, schedule=schedule)
    run = sim.run_until(Simulation.all_decided)
    _agreement_and_validity(sim, run)
    assert sim.all_decided(), f"no decision by t={run.end:.0f}s" + (" (event budget spent)" if run.exhausted else "")


@st.composite
def stalling_partitions(draw):
    """Four to six members with weights, split into two sides neither of which is a quorum."""
    weights = draw(st.lists(st.integers(1, 4), min_size=4, max_size=6))
    order = draw(st.permutations(range(len(weights))))
    side, load = [False] * len(weights), [0, 0]
    for i in order:  # each member to the lighter side: neither side comes near two thirds
        s = load[1] < load[0]
        side[i] = s
        load[s] += weights[i]
    total = sum(weights)
    assume(not is_quorum(load[0], total) and not is_quorum(load[1], total))
    return weights, side


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), case=stalling_partitions(), heal=st.sampled_from([20.0, 60.0]),
       drop=st.sampled_from([0.0, 0.3]))
def test_a_partition_with_no_side_holding_n_minus_f_stalls_until_the_heal_then_decides(seed, case, heal, drop):
    weights, side = case
    keys = make_keys(len(weights), seed)
    sides = (frozenset(p for (p, _), s in zip(keys, side) if s), frozenset(p for (p, _), s in zip(keys, side) if not s))
    schedule = Schedule(drop=drop, gst=heal, partition=sides, heal=heal, horizon=heal + 600)
    sim = Simulation(weights, seed=seed, schedule=schedule, keys=keys)
    run = sim.run_until(Simulation.all_decided)
    assert all(t >= heal for t in run.decided_at.values()), "a side without a quorum decided"
    _agreement_and_validity(sim, run)
    assert sim.all_decided(), f"no decision {run.end - heal:.0f}s after the heal"


def test_a_side_holding_n_minus_f_decides_during_the_partition_and_the_other_follows_after_heal():
    keys = make_keys(4, 11)
    big, small = frozenset(p for p, _ in keys[:3]), frozenset([keys[3][0]])
    schedule = Schedule(partition=(big, small), heal=50.0, horizon=300)
    sim = Simulation([1, 1, 1, 1], seed=11, schedule=schedule, keys=keys)
    run = sim.run_until(Simulation.all_decided)
    assert all(run.decided_at[p] < 50.0 for p in big)
    assert run.decided_at[keys[3][0]] >= 50.0
    _agreement_and_validity(sim, run)
    assert sim.all_decided()


# ---------------------------------------------------------------- locks, step by step


def _broadcast_votes(out, kind):
    from p2pwalrus.core.wal.agreement import Broadcast
    return [o.message for o in out if isinstance(o, Broadcast) and isinstance(o.message, Vote)
            and o.message.kind == kind]


def test_a_node_locked_on_a_value_prevotes_nil_for_another_and_reproposes_its_valid_value():
    from p2pwalrus.core.wal.agreement import ScheduleTimeout, Step
    keys = dict(KEYS)
    p0 = proposer_for(MEMBERS, CHAIN, HEIGHT, 0)
    p1 = proposer_for(MEMBERS, CHAIN, HEIGHT, 1)
    me = next(p for p in MEMBERS if p not in (p0, p1))
    others = [p for p in MEMBERS if p != me]
    node = Tendermint(chain=CHAIN, height=HEIGHT, members=MEMBERS, me=me, sign=signer(keys[me]),
                      get_value=lambda: b"ok:mine", valid=valid_value)
    node.start()
    v = sign_proposal(signer(keys[p0]), p0, CHAIN, HEIGHT, 0, b"ok:v", -1)
    out = node.on_message(v)
    assert [m.value_id for m in _broadcast_votes(out, VoteKind.PREVOTE)] == [v.id]
    for p in others[:2]:  # with its own, a quorum of prevotes for v: lock v, precommit v
        out = node.on_message(sign_vote(signer(keys[p]), p, VoteKind.PREVOTE, CHAIN, HEIGHT, 0, v.id))
    assert [m.value_id for m in _broadcast_votes(out, VoteKind.PRECOMMIT)] == [v.id]
    assert (node.locked_value, node.locked_round, node.valid_round) == (b"ok:v", 0, 0)
    for p in others[:2]:  # the others precommit nil: no decision, round 0 times out
        out = node.on_message(sign_vote(signer(keys[p]), p, VoteKind.PRECOMMIT, CHAIN, HEIGHT, 0, None))
    timeout = next(o for o in out if isinstance(o, ScheduleTimeout) and o.step == Step.PRECOMMIT)
    node.on_timeout(timeout)
    assert node.round == 1 and node.decision is None
    w = sign_proposal(signer(keys[p1]), p1, CHAIN, HEIGHT, 1, b"ok:w", -1)
    out = node.on_message(w)
    assert [m.value_id for m in _broadcast_votes(out, VoteKind.PREVOTE)] == [None]  # line 22: locked on v
    # Line 28: w re-proposed with a valid round, but no quorum of prevotes for w in that round: no vote.
    # (A fresh node at round 1 with a log of round 0 prevotes for v does vote for v re-proposed.)
    fresh = Tendermint(chain=CHAIN, height=HEIGHT, members=MEMBERS, me=me, sign=signer(keys[me]),
                       get_value=lambda: b"ok:mine", valid=valid_value)
    for p in others[:3]:
        fresh.on_message(sign_vote(signer(keys[p]), p, VoteKind.PREVOTE, CHAIN, HEIGHT, 0, v.id))
    fresh.on_message(sign_vote(signer(keys[others[0]]), others[0], VoteKind.PRECOMMIT, CHAIN, HEIGHT, 1, None))
    fresh.on_message(sign_vote(signer(keys[others[1]]), others[1], VoteKind.PRECOMMIT, CHAIN, HEIGHT, 1, None))
    fresh.start()
    assert fresh.round == 1  # line 55: f + 1 members are in round 1
    again = sign_proposal(signer(keys[p1]), p1, CHAIN, HEIGHT, 1, b"ok:v", 0)
    out = fresh.on_message(again)
    assert [m.value_id for m in _broadcast_votes(out, VoteKind.PREVOTE)] == [v.id]
    # And the locked node, when it proposes, proposes its valid value with its valid round.
    r = next(r for r in range(2, 10) if proposer_for(MEMBERS, CHAIN, HEIGHT, r) == me)
    for p in others[:2]:  # f + 1 members in round r: skip there (line 55)
        node.on_message(sign_vote(signer(keys[p]), p, VoteKind.PREVOTE, CHAIN, HEIGHT, r, None))
    assert node.round == r, node.round
    mine = [m for m in node.gossip() if isinstance(m, Proposal) and m.sender == me]
    assert [(m.value, m.valid_round) for m in mine] == [(b"ok:v", 0)]


def test_a_value_a_quorum_prevoted_is_prevoted_again_though_the_nodes_own_view_moved_on():
    """``acceptable`` (the node's ledger, say) judges fresh proposals only: once a quorum
    prevoted v, v re-proposed with that valid round gets this node's prevote even after its
    view stopped accepting v. Asking the view again there stalled epoch changes for good: the
    locked members re-propose v in every round, and a member whose ledger had meanwhile
    applied an unstake refused v in every round."""
    from p2pwalrus.core.wal.agreement import ScheduleTimeout, Step
    keys = dict(KEYS)
    p0 = proposer_for(MEMBERS, CHAIN, HEIGHT, 0)
    p1 = proposer_for(MEMBERS, CHAIN, HEIGHT, 1)
    me = next(p for p in MEMBERS if p not in (p0, p1))
    others = [p for p in MEMBERS if p != me]
    view = {b"ok:v"}  # what this node's view accepts, for now
    asked = []

    def acceptable(value: bytes) -> bool:
        asked.append(value)
        return value in view

    node = Tendermint(chain=CHAIN, height=HEIGHT, members=MEMBERS, me=me, sign=signer(keys[me]),
                      get_value=lambda: b"ok:mine", valid=valid_value, acceptable=acceptable)
    node.start()
    v = sign_proposal(signer(keys[p0]), p0, CHAIN, HEIGHT, 0, b"ok:v", -1)
    out = node.on_message(v)
    assert [m.value_id for m in _broadcast_votes(out, VoteKind.PREVOTE)] == [v.id]
    for p in others[:2]:  # a quorum of prevotes for v: lock v, precommit v
        out = node.on_message(sign_vote(signer(keys[p]), p, VoteKind.PREVOTE, CHAIN, HEIGHT, 0, v.id))
    assert node.locked_value == b"ok:v"
    for p in others[:2]:  # the others' precommits are nil (they came late): round 0 times out
        out = node.on_message(sign_vote(signer(keys[p]), p, VoteKind.PRECOMMIT, CHAIN, HEIGHT, 0, None))
    node.on_timeout(next(o for o in out if isinstance(o, ScheduleTimeout) and o.step == Step.PRECOMMIT))
    assert node.round == 1
    view.clear()  # the node's ledger applied a certificate: v's stakes are no longer its own
    node.forget_judgements()
    asked.clear()
    again = sign_proposal(signer(keys[p1]), p1, CHAIN, HEIGHT, 1, b"ok:v", 0)
    out = node.on_message(again)
    assert [m.value_id for m in _broadcast_votes(out, VoteKind.PREVOTE)] == [v.id]
    assert asked == []  # vouched for by a quorum: the view is not asked
    for p in others[:2]:  # and it decides v
        node.on_message(sign_vote(signer(keys[p]), p, VoteKind.PREVOTE, CHAIN, HEIGHT, 1, v.id))
    for p in others[:2]:
        node.on_message(sign_vote(signer(keys[p]), p, VoteKind.PRECOMMIT, CHAIN, HEIGHT, 1, v.id))
    assert node.decision is not None and node.decision.value == b"ok:v"
    # A fresh proposal is still the view's to judge: a second node, same view, refuses w.
    other = Tendermint(chain=CHAIN, height=HEIGHT, members=MEMBERS, me=me, sign=signer(keys[me]),
                       get_value=lambda: b"ok:mine", valid=valid_value, acceptable=acceptable)
    other.start()
    out = other.on_message(sign_proposal(signer(keys[p0]), p0, CHAIN, HEIGHT, 0, b"ok:w", -1))
    assert [m.value_id for m in _broadcast_votes(out, VoteKind.PREVOTE)] == [None]
    assert asked == [b"ok:w"]


def test_a_node_restored_from_its_snapshot_resends_what_it_signed_and_keeps_its_lock():
    keys = dict(KEYS)
    p0 = proposer_for(MEMBERS, CHAIN, HEIGHT, 0)
    me = next(p for p in MEMBERS if p != p0)
    others = [p for p in MEMBERS if p != me]

    def fresh():
        return Tendermint(chain=CHAIN, height=HEIGHT, members=MEMBERS, me=me, sign=signer(keys[me]),
                          get_value=lambda: b"ok:mine", valid=valid_value)

    node = fresh()
    node.start()
    v = sign_proposal(signer(keys[p0]), p0, CHAIN, HEIGHT, 0, b"ok:v", -1)
    node.on_message(v)
    for p in others[:2]:
        node.on_message(sign_vote(signer(keys[p]), p, VoteKind.PREVOTE, CHAIN, HEIGHT, 0, v.id))
    assert node.locked_value == b"ok:v"
    snap = node.snapshot()
    signed = {(type(m).__name__, getattr(m, "kind", 0)): m for m in node.gossip() if m.sender == me}
    # The crash: a new machine from the snapshot alone.
    again = fresh()
    again.restore(snap)
    out = again.start()
    assert (again.round, again.step, again.locked_value, again.locked_round) == (0, 2, b"ok:v", 0)
    # A conflicting proposal for round 0 (an equivocating proposer) gets no second prevote.
    w = sign_proposal(signer(keys[p0]), p0, CHAIN, HEIGHT, 0, b"ok:w", -1)
    out += again.on_message(w)
    resent = _broadcast_votes(out, VoteKind.PREVOTE) + _broadcast_votes(out, VoteKind.PRECOMMIT)
    assert all(m == signed[(type(m).__name__, m.kind)] for m in resent)
    assert {m.sender for m in again.votes(VoteKind.PREVOTE, 0)} >= {me}
    assert [m.value_id for m in again.votes(VoteKind.PREVOTE, 0) if m.sender == me] == [v.id]
