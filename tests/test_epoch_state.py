"""EpochState: canonical bytes, transitions, certificates, and a chain a newcomer verifies from genesis.

The chain test decides three epoch changes with the real agreement machine in
the simulator (tests/tendermint_sim.py): a node stakes in, one unstakes out,
and honest nodes start from different views of the stakes.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from p2pwalrus.core.wal.agreement import VoteKind, sign_vote
from p2pwalrus.core.wal.epoch_state import (
    SHARD_CAP,
    CommitteeMember,
    EpochState,
    InvalidEpochStateError,
    Prices,
    StateCertificate,
    check_transition,
    genesis_state,
    next_state,
    verify_chain,
)
from p2pwalrus.core.wal.placement_stake import moved_shards
from tests.tendermint_sim import Schedule, Simulation, make_keys, signer

KEYS = dict(make_keys(7, seed=42))
PEERS = sorted(KEYS)
WAL = 10**9


def genesis() -> EpochState:
    return genesis_state("testnet", 16, {p: 100 * WAL for p in PEERS[:4]},
                         prices=Prices(1000, 20), parameters={"epoch_duration_s": 60})


# ---------------------------------------------------------------- the state itself


def test_genesis_places_shards_by_stake_and_pins_the_cap():
    g = genesis()
    assert g.epoch == 0 and g.prev_digest == bytes(32)
    assert sorted(g.weights.values()) == [4, 4, 4, 4]
    assert g.parameter(SHARD_CAP) == 5  # n - 2f - 1 with 4 nodes, 16 shards
    assert g.to_bytes() == genesis().to_bytes()  # deterministic


def test_canonical_bytes_round_trip_and_anything_else_is_refused():
    g = genesis()
    assert EpochState.from_bytes(g.to_bytes()) == g
    obj = json.loads(g.to_bytes())
    with pytest.raises(InvalidEpochStateError, match="canonical"):
        EpochState.from_bytes(json.dumps(obj, indent=1).encode())
    for mutate, reason in [
        (lambda o: o.update(extra=1), "fields"),
        (lambda o: o["committee"][0].update(stake=-1), "stake"),
        (lambda o: o["committee"][0].update(stake=1.5), "stake"),
        (lambda o: o["committee"][0].__setitem__(
            "shards", sorted(o["committee"][0]["shards"] + o["committee"][1]["shards"][:1])), "exactly one"),
        (lambda o: o["committee"].reverse(), "sorted"),
        (lambda o: o.update(prev_digest="11" * 32), "previous"),
        (lambda o: o.update(version=2), "version"),
        (lambda o: o["committee"][0].update(peer_id="QmNotEd25519"), "peer"),
        (lambda o: o["parameters"].update({"Bad-Name": 1}), "parameter names"),
    ]:
        o = json.loads(g.to_bytes())
        mutate(o)
        with pytest.raises(InvalidEpochStateError, match=reason):
            EpochState.from_bytes(json.dumps(o, sort_keys=True, separators=(",", ":")).encode())
    with pytest.raises(InvalidEpochStateError, match="at most"):
        EpochState.from_bytes(b" " * (3 << 20))
    with pytest.raises(InvalidEpochStateError, match="not JSON"):
        EpochState.from_bytes(b"\xff")


def test_a_member_without_stake_cannot_hold_shards():
    with pytest.raises(InvalidEpochStateError, match="without stake"):
        CommitteeMember(PEERS[0], 0, (1,))


def test_transitions_check_epoch_digest_network_and_that_shards_follow_stake():
    g = genesis()
    nxt = next_state(g, {p: 100 * WAL for p in PEERS[:5]})
    check_transition(g, nxt)
    assert PEERS[4] in nxt.stakes and nxt.weights[PEERS[4]] > 0
    bad_shards = list(nxt.committee)
    a, b = bad_shards[0], bad_shards[1]
    bad_shards[0] = dataclasses.replace(a, shards=tuple(sorted(a.shards[1:] + b.shards[:1])))
    bad_shards[1] = dataclasses.replace(b, shards=tuple(sorted(b.shards[1:] + a.shards[:1])))
    cases = [
        (dataclasses.replace(nxt, committee=tuple(bad_shards)), "not those its stakes give"),
        (dataclasses.replace(nxt, epoch=2), "does not follow"),
        (dataclasses.replace(nxt, prev_digest=bytes([1]) * 32), "digest"),
        (dataclasses.replace(nxt, network="othernet"), "network"),
    ]
    for state, reason in cases:
        with pytest.raises(InvalidEpochStateError, match=reason):
            check_transition(g, state)


def test_unstaking_to_zero_leaves_the_committee_and_hands_its_shards_over():
    g = genesis()
    leaver = PEERS[0]
    nxt = next_state(g, {p: (0 if p == leaver else 100 * WAL) for p in PEERS[:4]})
    assert leaver not in nxt.stakes
    assert moved_shards(g.shards_by_node, nxt.shards_by_node) == set(g.shards_by_node[leaver])


# ---------------------------------------------------------------- deciding a chain


def decide(prev: EpochState, views: dict[str, dict[str, int]], seed: int, chain: bytes,
           schedule: Schedule | None = None) -> tuple[EpochState, StateCertificate]:
    """One epoch change: prev's committee runs the agreement; each member proposes its view."""
    members = sorted(prev.weights)
    keys = [(p, KEYS[p]) for p in members]
    values = [next_state(prev, views.get(p, prev.stakes)).to_bytes() for p in members]

    def valid(v: bytes) -> bool:
        check_transition(prev, EpochState.from_bytes(v))  # raises (= not valid) otherwise
        return True

    sim = Simulation([prev.weights[p] for p in members], seed=seed, keys=keys, values=values, valid=valid,
                     chain=chain, height=prev.epoch + 1, schedule=schedule or Schedule(drop=0.2, dup=0.2, gst=5))
    run = sim.run_until(Simulation.all_decided)
    assert sim.all_decided()
    decided = {d.value for d in run.decisions.values()}
    assert len(decided) == 1
    d = next(iter(run.decisions.values()))
    state = EpochState.from_bytes(d.value)
    return state, StateCertificate.from_precommits(state.epoch, d.round, state.digest, d.precommits)


def test_three_decided_epochs_chain_to_genesis_and_a_newcomer_verifies_them():
    g = genesis()
    chain = g.digest
    base = {p: 100 * WAL for p in PEERS[:4]}
    # Epoch 1: PEERS[4] stakes in; one member has not seen it yet (either view is valid).
    s1, c1 = decide(g, {p: base | {PEERS[4]: 100 * WAL} for p in PEERS[1:4]}, seed=1, chain=chain)
    # Epoch 2: PEERS[0] unstakes out.
    view2 = dict(s1.stakes) | {PEERS[0]: 0}
    s2, c2 = decide(s1, {p: view2 for p in s1.stakes}, seed=2, chain=chain)
    assert PEERS[0] not in s2.stakes
    # Epoch 3: stakes shift; PEERS[5] stakes in.
    view3 = dict(s2.stakes) | {PEERS[1]: 300 * WAL, PEERS[5]: 50 * WAL}
    s3, c3 = decide(s2, {p: view3 for p in s2.stakes}, seed=3, chain=chain)
    links = [(s1, c1), (s2, c2), (s3, c3)]
    # The newcomer gets everything as bytes from someone it does not trust.
    wire = [(EpochState.from_bytes(s.to_bytes()), StateCertificate.from_bytes(c.to_bytes())) for s, c in links]
    assert verify_chain(chain, EpochState.from_bytes(g.to_bytes()), wire) == s3
    assert s3.epoch == 3 and s3.prev_digest == s2.digest
    assert s3.weights[PEERS[1]] > s3.weights[PEERS[2]]


def test_a_chain_is_refused_for_a_wrong_genesis_a_short_certificate_a_stranger_or_another_network():
    g = genesis()
    chain = g.digest
    s1, c1 = decide(g, {}, seed=4, chain=chain, schedule=Schedule())
    verify_chain(chain, g, [(s1, c1)])
    with pytest.raises(InvalidEpochStateError, match="pinned genesis"):
        verify_chain(bytes(32), g, [(s1, c1)])
    members = sorted(g.weights)
    # Precommits by two of four members (8 of 16 shards): no quorum.
    two = tuple(sorted((p, sign_vote(signer(KEYS[p]), p, VoteKind.PRECOMMIT, chain, 1, c1.round,
                                     s1.digest).signature) for p in members[:2]))
    with pytest.raises(InvalidEpochStateError, match="not a quorum"):
        verify_chain(chain, g, [(s1, dataclasses.replace(c1, signatures=two))])
    # A stranger's precommit does not count, even added to a quorum.
    stranger = PEERS[6]
    extra = tuple(sorted(c1.signatures + ((stranger, sign_vote(signer(KEYS[stranger]), stranger,
                                                                  VoteKind.PRECOMMIT, chain, 1, c1.round,
                                                                  s1.digest).signature),)))
    with pytest.raises(InvalidEpochStateError, match="not in the committee"):
        verify_chain(chain, g, [(s1, dataclasses.replace(c1, signatures=extra))])
    # Signatures made for another network (another genesis) do not verify here.
    other = genesis_state("othernet", 16, {p: 100 * WAL for p in PEERS[:4]})
    o1, oc1 = decide(other, {}, seed=5, chain=other.digest, schedule=Schedule())
    with pytest.raises(InvalidEpochStateError):
        verify_chain(chain, g, [(o1, oc1)])
    forged = dataclasses.replace(oc1, digest=s1.digest)
    with pytest.raises(InvalidEpochStateError, match="bad signature"):
        verify_chain(chain, g, [(s1, forged)])
    # A certificate for another state, a skipped epoch.
    s1b = next_state(g, {p: 100 * WAL for p in PEERS[:5]})
    with pytest.raises(InvalidEpochStateError, match="another state"):
        verify_chain(chain, g, [(s1b, c1)])
    with pytest.raises(InvalidEpochStateError, match="does not follow"):
        verify_chain(chain, g, [(s1, c1), (s1, c1)])


def test_certificates_round_trip_and_refuse_junk():
    g = genesis()
    s1, c1 = decide(g, {}, seed=6, chain=g.digest, schedule=Schedule())
    assert StateCertificate.from_bytes(c1.to_bytes()) == c1
    for junk in (b"[]", b"{}", b'{"digest":"00","epoch":1,"round":0,"signatures":[]}', b"\xff" * 10):
        with pytest.raises(InvalidEpochStateError):
            StateCertificate.from_bytes(junk)


def test_a_ledger_genesis_read_by_attribute_gives_the_same_epoch_zero_and_its_hash_can_be_the_chain_id():
    from types import SimpleNamespace

    from p2pwalrus.core.wal.epoch_state import genesis_state_from

    ledger_genesis = SimpleNamespace(
        network="testnet", n_shards=16, storage_price=1000, write_price=20,
        committee=tuple(SimpleNamespace(peer_id=p, stake=100 * WAL) for p in PEERS[:4]),
        parameters=(("epoch_duration_s", 60),))
    g = genesis_state_from(ledger_genesis)
    assert g == genesis()
    ledger_hash = bytes([7]) * 32
    s1, c1 = decide(g, {}, seed=8, chain=ledger_hash, schedule=Schedule())
    assert verify_chain(g.digest, g, [(s1, c1)], chain=ledger_hash) == s1
    with pytest.raises(InvalidEpochStateError, match="bad signature"):
        verify_chain(g.digest, g, [(s1, c1)])
