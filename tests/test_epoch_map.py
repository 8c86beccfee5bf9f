"""Shard maps from decided epoch states, and certificates judged by the committee of their
epoch (pure): what every honest node that holds the chain computes alike."""

from __future__ import annotations

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair

from p2pwalrus.core.certificates import (
    AvailabilityCertificate,
    InvalidCertificateError,
    sign_confirmation,
    validate_certificate,
)
from p2pwalrus.core.keys import peer_id_from_public_key
from p2pwalrus.core.wal.epoch_map import certificate_views, shard_map_of
from p2pwalrus.core.wal.epoch_state import genesis_state, next_state

NET = "epnet"
N = 10
BLOB = bytes(range(32))
WAL = 10**9


def _key(seed: int):
    kp = create_new_key_pair(seed.to_bytes(2, "big") * 16)
    return peer_id_from_public_key(kp.public_key.to_bytes()), kp


KEYS = dict(_key(i + 1) for i in range(8))
PEERS = sorted(KEYS)
MEMBERS, NEWCOMERS = PEERS[:4], PEERS[4:]


def chain():
    """Epoch 0: four members; 1: two newcomers staked in; 2: the first two members unstaked."""
    s0 = genesis_state(NET, N, {p: 100 * WAL for p in MEMBERS})
    s1 = next_state(s0, {p: 100 * WAL for p in MEMBERS + NEWCOMERS[:2]})
    s2 = next_state(s1, {p: 100 * WAL for p in MEMBERS[2:] + NEWCOMERS[:2]})
    return [s0, s1, s2]


def cert_from(state, epoch: int, signers=None, shards_of=None):
    smap = shard_map_of(state)
    signers = signers or [p for p in smap.nodes if smap.shards_of(p)]
    shards_of = shards_of or smap.shards_of
    confs = tuple(sign_confirmation(KEYS[p], p, NET, BLOB, epoch, epoch + 50, shards_of(p)) for p in signers)
    return AvailabilityCertificate(NET, BLOB, N, epoch, epoch + 50, tuple(smap.nodes), confs)


def check(cert, views, current_epoch=2):
    validate_certificate(cert, network=NET, n_shards=N, views=views, current_epoch=current_epoch,
                         max_epochs_ahead=100)


def test_the_map_of_a_state_is_its_assignment_and_a_member_without_stake_holds_nothing():
    states = chain()
    for state in states:
        smap = shard_map_of(state)
        assert smap.owners == state.owners and set(smap.nodes) == set(state.stakes)
        assert sum(len(smap.shards_of(p)) for p in smap.nodes) == N
    assert not shard_map_of(states[2]).shards_of(MEMBERS[0])  # unstaked: no shards, not in the map


def test_a_certificate_stays_valid_after_its_shards_moved_twice():
    states = chain()
    state_for = {s.epoch: s for s in states}.get
    old = cert_from(states[0], 0)  # signed by the holders of epoch 0, two of whom left since
    views = certificate_views(state_for, states[2], old.epoch)
    check(old, views)
    # Judged by today's map alone, it would be short: the shards moved.
    with pytest.raises(InvalidCertificateError):
        check(old, [shard_map_of(states[2])])


def test_identities_outside_a_decided_committee_certify_nothing_whatever_they_claim():
    states = chain()
    state_for = {s.epoch: s for s in states}.get
    # Newcomers 2 and 3 never had stake: they claim every shard between them, at epoch 2.
    claims = {NEWCOMERS[2]: tuple(range(0, 5)), NEWCOMERS[3]: tuple(range(5, 10))}
    forged = cert_from(states[2], 2, signers=list(claims), shards_of=claims.get)
    with pytest.raises(InvalidCertificateError):
        check(forged, certificate_views(state_for, states[2], forged.epoch))
    # Members holding at most f shards in every decided map cannot reach n - f either.
    f = (N - 1) // 3
    smap = shard_map_of(states[2])
    few = [p for p in smap.nodes if smap.shards_of(p)][:1]
    assert len(smap.shards_of(few[0])) <= f
    with pytest.raises(InvalidCertificateError):
        check(cert_from(states[2], 2, signers=few), certificate_views(state_for, states[2], 2))
