"""The certificate rule (pure core): shards count only where the validator's own map gives
them to their signer; what holders sign binds the labels a delete depends on (issue 13)."""

from __future__ import annotations

import dataclasses

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair

from p2pwalrus.core import certificates as certs
from p2pwalrus.core.certificates import (
    AvailabilityCertificate,
    InvalidCertificateError,
    delete_message,
    quorum,
    relabel_reason,
    sign_confirmation,
    validate_certificate,
)
from p2pwalrus.core.keys import peer_id_from_public_key, sign, verify_signature
from p2pwalrus.core.placement import compute_shard_map

NET = "local"
N = 31
F = (N - 1) // 3
BLOB = bytes(range(32))


def _key(seed: int):
    kp = create_new_key_pair(seed.to_bytes(2, "big") * 16)
    return kp, peer_id_from_public_key(kp.public_key.to_bytes())


KEYS = dict(_key(i + 1)[::-1] for i in range(12))  # peer id -> key pair
PEERS = sorted(KEYS)


def certificate(view, signers=None, *, shards_of=None, members=None, epoch=5, end_epoch=9, deletable=False,
                owner="", sign_as=None):
    """A certificate whose confirmations come from `signers` (default: every holder in `view`),
    each naming `shards_of(peer)` (default: its shards in `view`)."""
    signers = [p for p in view.nodes if view.shards_of(p)] if signers is None else signers
    shards_of = shards_of or view.shards_of
    sign_as = sign_as or {}
    confs = tuple(sign_confirmation(KEYS[p], p, NET, BLOB, epoch, end_epoch, shards_of(p),
                                    **sign_as.get(p, {"deletable": deletable, "owner": owner}))
                  for p in signers if shards_of(p))
    return AvailabilityCertificate(NET, BLOB, N, epoch, end_epoch, tuple(members or view.nodes), confs,
                                   deletable=deletable, owner=owner)


def check(cert, *views, current_epoch=6):
    validate_certificate(cert, network=NET, n_shards=N, views=list(views), current_epoch=current_epoch,
                         max_epochs_ahead=10)


def few_shards(view, limit):
    """Peers of `view` whose shards add up to at most `limit` (greedily, most peers)."""
    picked, total = [], 0
    for p in sorted(view.nodes, key=lambda p: len(view.shards_of(p))):
        if view.shards_of(p) and total + len(view.shards_of(p)) <= limit:
            picked.append(p)
            total += len(view.shards_of(p))
    return picked


def test_an_honest_certificate_is_accepted_in_the_validators_own_view():
    view = compute_shard_map(PEERS[:10], N)
    check(certificate(view), view)


def test_identities_holding_at_most_f_shards_cannot_certify_whatever_member_set_they_write():
    view = compute_shard_map(PEERS[:10], N)  # the validator's own
    attackers = few_shards(view, F)
    assert sum(len(view.shards_of(p)) for p in attackers) <= F
    # They write a member set of themselves alone, whose map gives them every shard.
    theirs = compute_shard_map(attackers, N)
    forged = certificate(theirs, attackers, members=attackers)
    with pytest.raises(InvalidCertificateError, match="in this node's view"):
        check(forged, view)
    # Claiming every shard each, in the validator's member set, counts only what they hold.
    honest = [s for s in range(N) if view.owner(s) not in attackers]
    k = len(attackers)
    forged = certificate(view, attackers,
                         shards_of=lambda p: [*view.shards_of(p), *honest[attackers.index(p)::k]])
    assert len(forged.shards_confirmed) == N
    with pytest.raises(InvalidCertificateError, match=f"covers {sum(len(view.shards_of(p)) for p in attackers)} "):
        check(forged, view)


def test_views_are_judged_one_at_a_time_so_shards_of_two_views_do_not_add_up():
    old, new = compute_shard_map(PEERS[:6], N), compute_shard_map(PEERS[6:], N)
    attackers, in_old, in_new, claimed = [], set(), set(), set()
    for p in sorted(PEERS, key=lambda p: len(old.shards_of(p)) + len(new.shards_of(p))):
        o, w = set(old.shards_of(p)), set(new.shards_of(p))
        if len(in_old | o) <= F and len(in_new | w) <= F and not (o | w) & claimed:
            attackers.append(p)
            in_old, in_new, claimed = in_old | o, in_new | w, claimed | o | w
    assert len(claimed) > F  # more than f in the two views together, at most f in each
    forged = certificate(old, attackers, shards_of=lambda p: sorted({*old.shards_of(p), *new.shards_of(p)}))
    with pytest.raises(InvalidCertificateError, match=f"covers {max(len(in_old), len(in_new))} shards"):
        check(forged, new, old)


def test_a_certificate_written_before_a_join_or_a_leave_is_accepted_by_a_node_that_saw_it():
    writer = compute_shard_map(PEERS[:10], N)
    cert = certificate(writer)
    joined = compute_shard_map(PEERS[:11], N)
    left = compute_shard_map(PEERS[1:10], N)
    moved = sum(writer.owner(s) != joined.owner(s) for s in range(N))
    assert 0 < moved <= F
    check(cert, joined)
    check(cert, left)
    # Written with exactly n - f shards, the same join can leave it short in the new map
    # alone; the map held just before still counts it.
    exact = certificate(writer, shards_of=lambda p: [s for s in writer.shards_of(p) if s < quorum(N)])
    assert any(joined.owner(s) != writer.owner(s) for s in range(quorum(N)))
    with pytest.raises(InvalidCertificateError):
        check(exact, joined)
    check(exact, joined, writer)


def test_a_forged_signature_on_a_counted_confirmation_refuses_the_certificate():
    view = compute_shard_map(PEERS[:10], N)
    cert = certificate(view)
    bad = dataclasses.replace(cert.confirmations[0], signature=bytes(64))
    with pytest.raises(InvalidCertificateError, match="bad signature"):
        check(dataclasses.replace(cert, confirmations=(bad, *cert.confirmations[1:])), view)


def test_cheap_checks_come_before_any_signature(monkeypatch):
    view = compute_shard_map(PEERS[:10], N)
    checked = []
    real = certs.verify_confirmation
    monkeypatch.setattr(certs, "verify_confirmation", lambda *a, **k: checked.append(1) or real(*a, **k))
    attackers = few_shards(view, F)
    for cert in (certificate(view, attackers, shards_of=lambda p: range(N)[:1] if p == attackers[0] else ()),
                 dataclasses.replace(certificate(view), end_epoch=10_000),
                 dataclasses.replace(certificate(view), epoch=99, end_epoch=100),
                 dataclasses.replace(certificate(view), members=("x",) * 10_001)):
        with pytest.raises(InvalidCertificateError):
            check(cert, view)
    assert not checked


def test_epoch_fields_are_bounded_by_the_current_epoch_and_the_network_limit():
    view = compute_shard_map(PEERS[:10], N)
    check(certificate(view, epoch=6, end_epoch=6 + 10), view, current_epoch=6)
    with pytest.raises(InvalidCertificateError, match="epochs ahead"):
        check(certificate(view, epoch=6, end_epoch=6 + 12), view, current_epoch=6)
    with pytest.raises(InvalidCertificateError, match="in the future"):
        check(certificate(view, epoch=8, end_epoch=9), view, current_epoch=6)


def test_what_holders_sign_binds_the_deletable_flag_and_the_owner():
    view = compute_shard_map(PEERS[:10], N)
    owner, stranger = PEERS[10], PEERS[11]
    permanent = certificate(view)
    check(permanent, view)
    # Relabelled by whoever writes the certificate: the holders' signatures no longer match.
    for labels in ({"deletable": True, "owner": stranger}, {"deletable": True, "owner": ""}):
        with pytest.raises(InvalidCertificateError, match="bad signature"):
            check(dataclasses.replace(permanent, **labels), view)
    mine = certificate(view, deletable=True, owner=owner)
    check(mine, view)
    with pytest.raises(InvalidCertificateError, match="bad signature"):
        check(dataclasses.replace(mine, owner=stranger), view)
    # A permanent blob's confirmations do not depend on who stored it.
    check(dataclasses.replace(permanent, owner=stranger), view)


def test_a_later_certificate_cannot_relabel_the_one_held():
    view = compute_shard_map(PEERS[:10], N)
    owner, stranger = PEERS[10], PEERS[11]
    held = certificate(view, deletable=True, owner=owner)
    assert relabel_reason(held, certificate(view, deletable=True, owner=owner, end_epoch=12)) is None
    assert "owner" in relabel_reason(held, certificate(view, deletable=True, owner=stranger, end_epoch=12))
    assert "deletable" in relabel_reason(certificate(view), certificate(view, deletable=True, owner=stranger))
    assert relabel_reason(certificate(view), certificate(view, owner=stranger, end_epoch=12)) is None


def test_a_delete_signature_names_its_epoch_and_nonce():
    owner = PEERS[10]
    sig = sign(KEYS[owner], delete_message(NET, BLOB, 7, b"n" * 16))
    assert verify_signature(owner, delete_message(NET, BLOB, 7, b"n" * 16), sig)
    assert not verify_signature(owner, delete_message(NET, BLOB, 8, b"n" * 16), sig)
    assert not verify_signature(owner, delete_message(NET, BLOB, 7, b"m" * 16), sig)


def test_a_view_held_only_briefly_does_not_count_once_replaced():
    """While a network forms, a node's first views hold few nodes, each owning many shards:
    a map replaced within VIEW_MIN_HELD seconds is not kept as a view."""
    from p2pwalrus.node.certcheck import VIEW_KEEP, VIEW_MIN_HELD, CertChecker

    ids = sorted(peer_id_from_public_key(create_new_key_pair().public_key.to_bytes()) for _ in range(10))
    small, full = compute_shard_map(ids[:2], 10), compute_shard_map(ids, 10)
    brief = CertChecker(net=None)
    brief.set_map(small, now=0.0)
    brief.set_map(full, now=VIEW_MIN_HELD / 2)
    assert brief.views(now=VIEW_MIN_HELD) == [full]
    settled = CertChecker(net=None)
    settled.set_map(small, now=0.0)
    settled.set_map(full, now=VIEW_MIN_HELD + 1)
    assert settled.views(now=VIEW_MIN_HELD + 2) == [full, small]
    assert settled.views(now=VIEW_MIN_HELD + 2 + VIEW_KEEP) == [full]  # and it expires
    settled.set_map(compute_shard_map(ids, 10), now=VIEW_MIN_HELD + 3)  # the same map again: no new view
    assert settled.views(now=VIEW_MIN_HELD + 4) == [full, small]
