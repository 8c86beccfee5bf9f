"""Liveness: the pure rules (core/liveness.py, LiveSet down marks) and heartbeat links
between real nodes on loopback (node/liveness.py)."""

from __future__ import annotations

import time

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import create_new_key_pair

from p2pwalrus.core.keys import peer_id_from_public_key
from p2pwalrus.core.liveness import (
    Beat,
    DownReport,
    InvalidLivenessMessage,
    SignedDownReport,
    sign_down_report,
    watch_targets,
)
from p2pwalrus.core.records import LiveSet, NodeRecord, sign_record

NET = "local"


def _keypair():
    kp = create_new_key_pair()
    return kp, peer_id_from_public_key(kp.public_key.to_bytes())


def _record(kp, pid, seq, now=None, lifetime=3600.0):
    now = time.time() if now is None else now
    return sign_record(kp, NodeRecord(NET, pid, ("/ip4/127.0.0.1/tcp/1",), 0, "t", now, now + lifetime, seq))


def test_beat_round_trips_and_malformed_beats_are_refused():
    beat = Beat(7, b"m" * 16, b"c" * 16)
    assert Beat.from_frame(beat.to_frame()) == beat and beat.watching
    unwatched = Beat(7, b"m" * 16, b"c" * 16, watching=False)
    assert Beat.from_frame(unwatched.to_frame()) == unwatched
    frame = beat.to_frame()
    for bad in (frame[:-1], frame + b"x", b"\x01" + frame[1:], b"", frame[:-1] + b"\x02"):
        with pytest.raises(InvalidLivenessMessage):
            Beat.from_frame(bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_down_report_parser_refuses_garbage_without_crashing(data):
    try:
        SignedDownReport.from_bytes(data, network=NET, now=time.time(), max_age=120)
    except InvalidLivenessMessage:
        pass


def test_down_report_is_checked_for_signature_network_and_age():
    kp, reporter = _keypair()
    _, subject = _keypair()
    now = time.time()
    signed = sign_down_report(kp, DownReport(NET, reporter, subject, 5, now))
    parsed = SignedDownReport.from_bytes(signed.to_bytes(), network=NET, now=now, max_age=120)
    assert parsed.report == signed.report
    with pytest.raises(InvalidLivenessMessage, match="another network"):
        SignedDownReport.from_bytes(signed.to_bytes(), network="other", now=now, max_age=120)
    with pytest.raises(InvalidLivenessMessage, match="too old"):
        SignedDownReport.from_bytes(signed.to_bytes(), network=NET, now=now + 500, max_age=120)
    forged = bytearray(signed.to_bytes())
    forged[-3] ^= 1  # inside the JSON body: no longer what was signed (or not canonical)
    with pytest.raises(InvalidLivenessMessage):
        SignedDownReport.from_bytes(bytes(forged), network=NET, now=now, max_age=120)
    other_kp, _ = _keypair()
    wrong_signer = sign_down_report(other_kp, DownReport(NET, reporter, subject, 5, now))
    with pytest.raises(InvalidLivenessMessage, match="signature"):
        SignedDownReport.from_bytes(wrong_signer.to_bytes(), network=NET, now=now, max_age=120)
    with pytest.raises(InvalidLivenessMessage):
        DownReport(NET, reporter, reporter, 1, now)


def test_a_down_mark_refuses_the_same_record_but_not_a_newer_one_or_a_direct_one():
    kp, pid = _keypair()
    live = LiveSet(ttl=3600)
    now = time.time()
    first = _record(kp, pid, 1, now)
    assert live.offer(first, now) is not None
    assert live.mark_down(pid).kind.value == "left"
    assert pid not in live and live.is_down(pid)
    assert live.offer(first, now) is None  # pulled late from a peer that still lists it: stays down
    assert live.offer(first, now, direct=True) is not None  # it answered us itself: up
    live.mark_down(pid)
    assert live.offer(_record(kp, pid, 2, now), now) is not None  # restarted: a newer record
    assert not live.is_down(pid)


def test_live_set_digest_names_the_members_and_their_records():
    kp_a, a = _keypair()
    kp_b, b = _keypair()
    now = time.time()
    x, y = LiveSet(3600), LiveSet(3600)
    for s in (x, y):
        s.offer(_record(kp_a, a, 1, now), now)
    assert x.digest() == y.digest()
    x.offer(_record(kp_b, b, 1, now), now)
    assert x.digest() != y.digest()
    y.offer(_record(kp_b, b, 1, now), now)
    assert x.digest() == y.digest()
    y.offer(_record(kp_b, b, 2, now), now)
    assert x.digest() != y.digest()


def test_watch_targets_are_everyone_in_a_small_network_and_symmetric_ring_neighbours_in_a_large_one():
    ids = [f"peer{i:03d}" for i in range(40)]
    assert watch_targets(ids[0], ids[:10], watch_all_up_to=16, neighbours=8) == set(ids[1:10])
    watchers = {p: 0 for p in ids}
    for me in ids:
        targets = watch_targets(me, ids, watch_all_up_to=16, neighbours=8)
        assert len(targets) == 8 and me not in targets
        for t in targets:
            assert me in watch_targets(t, ids, watch_all_up_to=16, neighbours=8)  # one link serves both
            watchers[t] += 1
    assert set(watchers.values()) == {8}


# --- real nodes ------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_difference_still_there_at_the_next_beat_is_pulled_once_per_pair_of_digests():
    """Anti-entropy by digest: a pull when a peer's digest differs from ours on two beats in a
    row, even when its digest changed in between (nodes joining all the time), and not again
    for a pair of digests already pulled for."""
    from p2pwalrus.node.liveness import Liveness, _Link

    pulls = []

    class Nursery:
        def start_soon(self, fn, *args):
            pulls.append(fn)
            live._pulling.clear()  # (as if the pull had ended)

    live = Liveness.__new__(Liveness)  # only _compare's state: its counters, nursery, pulls running
    live.counters, live._nursery, live._pulling = {"pulls_by_digest": 0}, Nursery(), set()
    link = _Link("peer", None, True)
    ours = b"L" * 16

    def beat(remote, local=ours):
        live._compare(link, "members", remote, local, pull=None)

    beat(b"A" * 16)
    assert not pulls  # gossip usually closes a gap within a beat
    beat(b"B" * 16)  # the peer's view moved, ours still differs: pull
    assert len(pulls) == 1
    beat(b"B" * 16)  # the same pair again: not pulled for twice
    assert len(pulls) == 1
    beat(b"B" * 16, local=b"M" * 16)  # our view changed, still different: a new pair
    assert len(pulls) == 2
    beat(ours)  # agreement ends the mismatch
    beat(b"C" * 16)
    assert len(pulls) == 2 and live.counters["pulls_by_digest"] == 2
    live._pulling.add("members")  # one pull at a time: none while another runs
    beat(b"D" * 16)
    assert len(pulls) == 2

    async def busy_peer():
        raise trio.TooSlowError

    live._pulling.clear()
    other = _Link("other", None, True)
    for _ in range(2):
        live._compare(other, "members", b"E" * 16, ours, busy_peer)
    assert len(pulls) == 3
    live._compare(other, "members", b"E" * 16, ours, busy_peer)
    assert len(pulls) == 3  # pulled for already (the pull has not ended yet)
    await pulls[-1]()  # it fails: the same pair may be pulled for again at the next beat
    live._compare(other, "members", b"E" * 16, ours, busy_peer)
    assert len(pulls) == 4


async def test_a_report_is_checked_after_a_random_wait_unless_its_subject_refuted_it_meanwhile(autojump_clock):
    """Every node that receives a down report checks it by dialling the subject; spread over
    ``check_spread`` seconds, and skipped once the subject signed a newer record, the checks
    of a live subject no longer come all at once from every node."""
    from types import SimpleNamespace

    from p2pwalrus.node.liveness import Liveness, LivenessConfig

    kp, pid = _keypair()
    live = Liveness.__new__(Liveness)  # only _check's state; its dial is recorded, not made
    live.config = LivenessConfig(check_spread=3.0)
    live.members = SimpleNamespace(live=LiveSet(3600.0, 100))
    live.links, live._opening, live._checking = {}, set(), set()
    dials = []

    async def open_link(peer):
        dials.append((peer, trio.current_time()))
        return True

    live._open_link = open_link
    live.members.live.offer(_record(kp, pid, 1), time.time())
    t0 = trio.current_time()
    await live._check(pid, 1, live.config.check_spread)
    assert [p for p, _ in dials] == [pid] and 0 <= dials[0][1] - t0 <= 3.0

    async with trio.open_nursery() as nursery:
        nursery.start_soon(live._check, pid, 1, live.config.check_spread)
        live.members.live.offer(_record(kp, pid, 2), time.time())  # the subject's refutation
    assert len(dials) == 1  # not dialled again


async def test_a_killed_node_leaves_every_live_set_in_seconds_and_a_restarted_one_comes_back(tmp_path):
    from netlab.inprocess import Cluster, test_network

    net = test_network(10)
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            cluster = Cluster(net, tmp_path, nursery)
            for _ in range(5):
                await cluster.start()
            await cluster.wait_converged(60)
            victim = cluster.slots[3]
            victim_id = victim.node.peer_id
            others = [s.node for s in cluster.slots if s is not victim]
            t0 = trio.current_time()
            await cluster.kill(3)

            async def gone():
                return not any(victim_id in n.members.live for n in others)

            await cluster.wait_until(gone, 60)
            took = trio.current_time() - t0
            # A killed process's connections close at once; well under the 15 s silence bound.
            assert took < net.timings.heartbeat_timeout, took
            # Its watchers saw their links end; a node without a link yet learnt it from a
            # watcher's report (and checked it).
            assert any(n.liveness.counters["links_lost"] for n in others)
            assert all(n.liveness.counters["links_lost"] or n.liveness.counters["down_reports_received"] for n in others)
            t1 = trio.current_time()
            await cluster.start(3)
            await cluster.wait_converged(60)
            assert trio.current_time() - t1 < 30
            nursery.cancel_scope.cancel()


async def test_a_record_gossip_missed_is_pushed_on_along_the_links_and_a_forged_one_ends_the_link(tmp_path):
    """A record a node learnt by a pull (gossip missed it there) reaches every node along the
    heartbeat links at once, not a ring hop per two beats: here beats come once a minute, so
    nothing but the relay can carry it. A relayed record our clock refuses is dropped; a
    forged one ends the link (its sender should have checked it)."""
    from netlab.inprocess import Cluster, test_network
    from p2pwalrus.core.liveness import relay_frame
    from p2pwalrus.p2p.framing import write_frame

    def ring_of_links(node):  # each node links with 2 ring neighbours; no beat within the test
        node.liveness_overrides.update(interval=60.0, dead_after=120.0, watch_all_up_to=2, neighbours=2)

    net = test_network(10)
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            cluster = Cluster(net, tmp_path, nursery, configure=ring_of_links)
            for _ in range(5):
                await cluster.start()
            await cluster.wait_converged(60)
            nodes = cluster.alive()
            while not all(len(n.liveness.links) >= 2 for n in nodes):
                await trio.sleep(0.05)  # links open on upkeep rounds: no event to wait for

            kp, pid = _keypair()
            stranger = _record(kp, pid, 1)
            nodes[0].members.accept(stranger)  # known to node 0 alone (as if gossip reached only it)
            assert await nodes[-1].members.pull_from(nodes[0].node.peer_id) == 1
            with trio.fail_after(20):  # a beat would come after 48-72 s
                while not all(pid in n.members.live for n in nodes):
                    await trio.sleep(0.05)
            assert nodes[-1].liveness.counters["records_relayed"] >= 1

            # Hostile frames on a link, sent from one end's side of it.
            sender = nodes[0]
            peer, link = next(iter(sender.liveness.links.items()))
            receiver = next(n for n in nodes if str(n.node.peer_id) == peer)
            kp2, pid2 = _keypair()
            await write_frame(link.stream, relay_frame(_record(kp2, pid2, 1, now=time.time() - 7200).to_bytes()))
            kp3, pid3 = _keypair()
            await write_frame(link.stream, relay_frame(_record(kp3, pid3, 1).to_bytes()))
            while pid3 not in receiver.members.live:  # the stale record was dropped, the link kept
                await trio.sleep(0.05)
            assert pid2 not in receiver.members.live
            forged = bytearray(_record(kp3, pid3, 2).to_bytes())
            forged[5] ^= 1  # a bit of the signature
            their_end = receiver.liveness.links[str(sender.node.peer_id)]
            await write_frame(link.stream, relay_frame(bytes(forged)))
            while not their_end.closed:  # (the sender may open a new link: a new one)
                await trio.sleep(0.05)
            assert receiver.members.live.get(pid3).record.seq == 1
            nursery.cancel_scope.cancel()
