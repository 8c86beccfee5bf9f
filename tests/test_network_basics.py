"""Network basics: identity, signatures, framing, host, membership (loopback only, each test bounded)."""

from __future__ import annotations

import os
import time
from contextlib import AsyncExitStack

import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamEOF
from nacl.signing import VerifyKey

from p2pwalrus.core.keys import public_key_from_peer_id, sign, verify_signature
from p2pwalrus.core.records import (
    ChangeKind,
    InvalidRecordError,
    LiveSet,
    NodeRecord,
    SignedNodeRecord,
    sign_record,
)
from p2pwalrus.errors import ProtocolError
from p2pwalrus.p2p.framing import (
    encode_uvarint,
    iter_frame_chunks,
    read_frame,
    read_frame_into_buffer,
    write_frame,
)
from p2pwalrus.p2p.host import open_host
from p2pwalrus.p2p.identity import IDENTITY_FILE, load_or_create_identity, peer_id_of
from p2pwalrus.node.membership import Membership, MembershipConfig, open_membership

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
NET = "testnet"


def _record(keypair, *, network=NET, now=1000.0, lifetime=30.0, seq=1, capacity=7) -> NodeRecord:
    pid = str(peer_id_of(keypair))
    return NodeRecord(
        network=network,
        peer_id=pid,
        addrs=(f"/ip4/127.0.0.1/tcp/4001/p2p/{pid}",),
        capacity=capacity,
        version="0.1.0",
        issued_at=now,
        expires_at=now + lifetime,
        seq=seq,
    )


# --- identity and signatures ------------------------------------------------------


def test_identity_is_created_once_with_private_mode(tmp_path):
    first = load_or_create_identity(tmp_path / "node")
    again = load_or_create_identity(tmp_path / "node")
    assert str(peer_id_of(first)) == str(peer_id_of(again))
    assert str(peer_id_of(first)).startswith("12D3KooW")
    assert os.stat(tmp_path / "node" / IDENTITY_FILE).st_mode & 0o777 == 0o600
    assert not [p for p in os.listdir(tmp_path / "node") if p != IDENTITY_FILE]  # no temp file left


def test_libp2p_signature_verifies_with_pynacl_from_peer_id_alone():
    keypair = create_new_key_pair()
    pid = str(peer_id_of(keypair))
    message = b"storage confirmation bytes"
    signature = sign(keypair, message)
    assert len(signature) == 64
    assert signature == keypair.private_key.sign(message)
    # pynacl alone, key taken from the peer ID string
    VerifyKey(public_key_from_peer_id(pid)).verify(message, signature)
    assert verify_signature(pid, message, signature)
    assert not verify_signature(pid, message + b"!", signature)
    assert not verify_signature(str(peer_id_of(create_new_key_pair())), message, signature)
    assert not verify_signature("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", message, signature)  # hashed (RSA-style) ID
    assert not verify_signature("not a peer id", message, signature)
    assert not verify_signature(pid, message, signature[:63])


# --- framing ----------------------------------------------------------------------


class ScriptedStream:
    """A stand-in INetStream that serves fixed bytes, a few at a time, and records reads."""

    def __init__(self, data: bytes, max_read: int = 3):
        self.data, self.pos, self.max_read, self.requested = data, 0, max_read, []

    async def read(self, n: int = -1) -> bytes:
        self.requested.append(n)
        if self.pos >= len(self.data):
            raise StreamEOF("end")
        chunk = self.data[self.pos : self.pos + min(n, self.max_read)]
        self.pos += len(chunk)
        return chunk


async def test_oversized_frame_is_refused_before_allocation():
    with trio.fail_after(5):
        header = encode_uvarint(1 << 40)  # a terabyte, then nothing
        stream = ScriptedStream(header + b"x" * 100)
        with pytest.raises(ProtocolError, match="limit"):
            await read_frame(stream, max_size=1 << 20)
        assert stream.pos <= len(header)  # stopped inside the length: no payload read, nothing allocated
        assert max(stream.requested) == 1
        for reader in (read_frame_into_buffer,):
            with pytest.raises(ProtocolError):
                await reader(ScriptedStream(encode_uvarint(2_000_001)), 2_000_000)
        with pytest.raises(ProtocolError):
            async for _ in iter_frame_chunks(ScriptedStream(encode_uvarint(65)), 64):
                pass


async def test_short_reads_are_reassembled_and_eof_mid_frame_is_a_protocol_error():
    with trio.fail_after(5):
        payload = bytes(range(256)) * 40
        assert await read_frame(ScriptedStream(encode_uvarint(len(payload)) + payload), 1 << 20) == payload
        assert await read_frame_into_buffer(ScriptedStream(encode_uvarint(len(payload)) + payload), 1 << 20) == payload
        with pytest.raises(ProtocolError, match="ended"):
            await read_frame(ScriptedStream(encode_uvarint(100) + b"short"), 1 << 20)
        with pytest.raises(ProtocolError):
            await read_frame(ScriptedStream(b"\x80\x80"), 1 << 20)  # EOF inside the varint


async def test_a_frame_read_into_a_buffer_must_fill_it_exactly():
    from p2pwalrus.p2p.framing import read_frame_into

    with trio.fail_after(5):
        payload = os.urandom(5000)
        buf = bytearray(5000)
        got = await read_frame_into(ScriptedStream(encode_uvarint(5000) + payload, max_read=777), memoryview(buf))
        assert bytes(buf) == payload and bytes(got) == payload
        for announced in (4999, 5001, 1 << 40):  # shorter, longer, absurd: refused before a payload byte
            stream = ScriptedStream(encode_uvarint(announced) + payload)
            with pytest.raises(ProtocolError):
                await read_frame_into(stream, memoryview(bytearray(5000)))
            assert stream.pos <= len(encode_uvarint(announced))
        with pytest.raises(ProtocolError, match="ended"):
            await read_frame_into(ScriptedStream(encode_uvarint(5000) + payload[:10]), memoryview(buf))


async def test_frame_reader_serves_many_small_frames_from_few_reads_with_the_same_checks():
    from p2pwalrus.p2p.framing import FrameReader, encode_frames

    with trio.fail_after(5):
        frames = [bytes([i]) * (i * 7 % 300) for i in range(100)] + [b""]
        stream = ScriptedStream(encode_frames(frames), max_read=1 << 20)
        reader = FrameReader(stream)
        got = [await reader.read_frame(300) for _ in frames]
        assert got == frames
        assert len(stream.requested) == 1  # one read for all 101 frames (read_frame: about 300)
        # split anywhere: frames and lengths straddling reads are reassembled
        split = ScriptedStream(encode_frames(frames), max_read=5)
        reader = FrameReader(split)
        assert [await reader.read_frame(300) for _ in frames] == frames
        # an oversized length is refused once its bytes are in, before the payload is read
        big = ScriptedStream(encode_uvarint(1 << 40) + b"x" * 100_000, max_read=3)
        with pytest.raises(ProtocolError, match="limit"):
            await FrameReader(big, chunk=3).read_frame(4096)
        assert big.pos <= 6
        with pytest.raises(ProtocolError, match="ended"):
            await FrameReader(ScriptedStream(encode_uvarint(100) + b"short")).read_frame(4096)
        with pytest.raises(ProtocolError):
            await FrameReader(ScriptedStream(b"\x80\x80")).read_frame(4096)  # EOF inside the varint
        with pytest.raises(ProtocolError, match="non-minimal"):
            await FrameReader(ScriptedStream(b"\x85\x00" + b"x" * 5)).read_frame(4096)


async def test_two_hosts_exchange_framed_messages():
    proto = TProtocol("/p2pwalrus/test-echo/1.0.0")
    big = os.urandom(3 * 1024 * 1024 + 5)
    with trio.fail_after(20):
        async with open_host(create_new_key_pair(), LOOPBACK, []) as a:

            async def echo(stream):
                try:
                    while True:
                        frame = await read_frame(stream, 8 << 20)
                        if frame == b"bye":
                            break
                        await write_frame(stream, frame[::-1])
                finally:
                    await stream.close()

            a.host.set_stream_handler(proto, echo)
            async with open_host(create_new_key_pair(), LOOPBACK, a.listen_addrs()) as b:
                assert a.peer_id in b.connected_peers()
                stream = await b.host.new_stream(a.peer_id, [proto])
                for msg in (b"hello", b"", big):
                    await write_frame(stream, msg)
                    assert await read_frame(stream, 8 << 20) == msg[::-1]
                await write_frame(stream, b"bye")
                await stream.close()


async def test_idle_connections_above_the_high_watermark_are_closed_but_not_busy_or_mesh_ones():
    """py-libp2p never prunes a connection that has a stream, and GossipSub keeps one on each:
    without our trim, every peer a node ever called stayed connected (N^2 connections)."""
    from dataclasses import replace

    from p2pwalrus.p2p.host import HostTimings

    proto = TProtocol("/p2pwalrus/test-hold/1.0.0")
    # the auto-connector's target is (1 + 2) // 2 = 1 connection; no grace period
    hub_timings = replace(HostTimings(), low_watermark=1, high_watermark=2, min_connections=1,
                          trim_grace=0.0, trim_interval=3600.0)
    with trio.fail_after(30):
        async with AsyncExitStack() as stack:
            hub = await stack.enter_async_context(open_host(create_new_key_pair(), LOOPBACK, [], timings=hub_timings))
            released = trio.Event()

            async def hold(stream):
                await released.wait()
                await stream.close()

            spokes = []
            for _ in range(4):
                spoke = await stack.enter_async_context(open_host(create_new_key_pair(), LOOPBACK, hub.listen_addrs()))
                spoke.host.set_stream_handler(proto, hold)
                spokes.append(spoke)
            assert {s.peer_id for s in spokes} <= set(hub.connected_peers())
            busy = await hub.open_stream(spokes[0].peer_id, [proto])  # an exchange in flight
            await hub.pubsub.subscribe("trim-test")
            await spokes[1].pubsub.subscribe("trim-test")
            while spokes[1].peer_id not in hub.gossipsub.mesh.get("trim-test", ()):
                await trio.sleep(0.05)  # grafted on a heartbeat: no event to wait for
            assert hub.choose_peer([str(s.peer_id) for s in spokes] + ["not-connected"], explore=0.0) != "not-connected"

            closed = await hub.trim_connections()

            assert closed == 2
            assert set(hub.connected_peers()) == {spokes[0].peer_id, spokes[1].peer_id}
            assert await hub.trim_connections() == 0  # at the high watermark: nothing more to close
            released.set()
            await busy.close()


async def test_oversized_frame_from_a_real_peer_is_refused():
    proto = TProtocol("/p2pwalrus/test-limit/1.0.0")
    outcome: list[Exception] = []
    done = trio.Event()
    with trio.fail_after(20):
        async with open_host(create_new_key_pair(), LOOPBACK, []) as a:

            async def handler(stream):
                try:
                    await read_frame(stream, 1024)
                except ProtocolError as exc:
                    outcome.append(exc)
                    await stream.reset()
                done.set()

            a.host.set_stream_handler(proto, handler)
            async with open_host(create_new_key_pair(), LOOPBACK, a.listen_addrs()) as b:
                stream = await b.host.new_stream(a.peer_id, [proto])
                await stream.write(encode_uvarint(100 * 1024 * 1024))
                await done.wait()
                assert outcome and "limit" in str(outcome[0])


# --- records and the live set -------------------------------------------------------


def test_record_validation_rejects_bad_signature_wrong_network_expired_oversized():
    keypair, other = create_new_key_pair(), create_new_key_pair()
    good = sign_record(keypair, _record(keypair)).to_bytes()
    assert SignedNodeRecord.from_bytes(good, network=NET, now=1010.0).record.capacity == 7

    tampered = good.replace(b'"capacity":7', b'"capacity":9')
    forged = bytearray(good)
    forged[1:65] = other.private_key.sign(good[65:])  # signed, but not by the record's peer
    cases = {
        "bad signature": (tampered, 1010.0),
        "bad signature ": (bytes(forged), 1010.0),
        "network": (good, 1010.0, "othernet"),
        "expired": (good, 1031.0),
        "future": (sign_record(keypair, _record(keypair, now=5000.0)).to_bytes(), 1010.0),
        "bytes": (good + b" " * 5000, 1010.0),
        "canonical": (good[:65] + good[65:].replace(b":", b": ", 1), 1010.0),
        "format": (b"\x02" + good[1:], 1010.0),
    }
    for reason, (data, now, *net) in cases.items():
        with pytest.raises(InvalidRecordError, match=reason.strip()):
            SignedNodeRecord.from_bytes(data, network=net[0] if net else NET, now=now)
    with pytest.raises(ValueError):
        sign_record(other, _record(keypair))  # a key can only sign its own record


def test_liveset_drops_a_node_after_ttl_without_refresh():
    a, b = create_new_key_pair(), create_new_key_pair()
    live = LiveSet(ttl=10.0)
    ra = sign_record(a, _record(a, now=1000.0, lifetime=60.0, seq=1))
    rb = sign_record(b, _record(b, now=1000.0, lifetime=60.0, seq=1))
    assert live.offer(ra, now=1000.0).kind is ChangeKind.JOINED
    assert live.offer(rb, now=1000.0).kind is ChangeKind.JOINED
    assert live.offer(ra, now=1001.0) is None  # a repeat is not a refresh
    assert live.next_deadline() == 1010.0
    # b refreshes at t=1008 with a newer record; a does not
    assert live.offer(sign_record(b, _record(b, now=1008.0, lifetime=60.0, seq=2)), now=1008.0) is None
    assert live.expire(now=1009.9) == []
    left = live.expire(now=1010.0)
    assert [(c.kind, c.peer_id) for c in left] == [(ChangeKind.LEFT, ra.peer_id)]
    assert live.peer_ids() == [rb.peer_id]
    # an older record of b is ignored; a record's own expiry also ends membership
    assert live.offer(rb, now=1011.0) is None
    short = sign_record(a, _record(a, now=1011.0, lifetime=2.0, seq=5))
    assert live.offer(short, now=1011.0).kind is ChangeKind.JOINED
    assert [c.peer_id for c in live.expire(now=1013.0)] == [short.peer_id]
    changed = live.offer(sign_record(b, _record(b, now=1015.0, seq=3, capacity=99)), now=1015.0)
    assert changed.kind is ChangeKind.UPDATED and changed.record.capacity == 99


def test_liveset_counts_a_record_from_its_signing_so_a_late_copy_cannot_revive_a_dead_node():
    a = create_new_key_pair()
    live = LiveSet(ttl=10.0)
    last = sign_record(a, _record(a, now=1000.0, lifetime=60.0, seq=7))
    assert live.offer(last, now=1000.0).kind is ChangeKind.JOINED
    assert [c.peer_id for c in live.expire(now=1010.0)] == [last.peer_id]
    # The same last record, pulled later from a peer that still holds it, is stale.
    assert live.offer(last, now=1012.0) is None
    # One pulled 4 s after it was signed lives only the 6 s left of its TTL.
    fresh = sign_record(a, _record(a, now=1020.0, lifetime=60.0, seq=8))
    assert live.offer(fresh, now=1024.0).kind is ChangeKind.JOINED
    assert live.next_deadline() == 1030.0


def test_liveset_digest_and_ids_follow_every_change():
    """The digest and the sorted IDs are kept between changes (every heartbeat asks for them):
    each change gives the digest a fresh set of the same content has."""
    keys = [create_new_key_pair() for _ in range(3)]
    live = LiveSet(ttl=100.0)

    def fresh_digest() -> bytes:
        copy = LiveSet(ttl=100.0)
        for p in live.peer_ids():
            copy.offer(live.get(p), now=1000.0)
        return copy.digest()

    seen = {live.digest()}
    for i, k in enumerate(keys):
        live.offer(sign_record(k, _record(k, now=1000.0, lifetime=60.0, seq=1)), now=1000.0)
        assert live.digest() == fresh_digest() and live.peer_ids() == sorted(live.peer_ids())
        seen.add(live.digest())
    newer = sign_record(keys[0], _record(keys[0], now=1000.0, lifetime=60.0, seq=2))
    assert live.offer(newer, now=1000.0) is None  # same addresses: no change event, but a new seq
    assert live.digest() == fresh_digest() and live.digest() not in seen
    seen.add(live.digest())
    live.mark_down(str(peer_id_of(keys[1])))
    assert live.digest() == fresh_digest() and live.digest() not in seen
    assert str(peer_id_of(keys[1])) not in live.peer_ids() and len(live.peer_ids()) == 2
    ids = live.peer_ids()
    ids.clear()  # a caller's list is its own
    assert len(live.peer_ids()) == 2


def test_membership_checks_a_records_signature_once_and_its_expiry_every_time():
    keypair = create_new_key_pair()
    members = Membership(None, keypair, MembershipConfig(network=NET))
    good = sign_record(keypair, _record(keypair)).to_bytes()
    first = members.validate_bytes(good, now=1010.0)
    assert members.validate_bytes(bytearray(good), now=1011.0) is first  # no second check
    with pytest.raises(InvalidRecordError, match="expired"):
        members.validate_bytes(good, now=1031.0)
    with pytest.raises(InvalidRecordError, match="bad signature"):
        members.validate_bytes(good.replace(b'"capacity":7', b'"capacity":9'), now=1010.0)


# --- multi-node ---------------------------------------------------------------------


async def _wait_until(predicate, events) -> None:
    """Wait, on membership change events (no polling), until predicate() holds."""
    while True:
        # Take the events before checking, with no checkpoint in between: an event fetched
        # inside the waiting task could be the one that replaced a change we then never see.
        current = [get_event() for get_event in events]
        if predicate():
            return
        async with trio.open_nursery() as nursery:
            for event in current:

                async def wake(event=event):
                    await event.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(wake)


async def test_a_node_record_is_put_in_the_dht_and_found_by_another_node():
    cfg = MembershipConfig(network=NET, publish_interval=60.0, dht_put_every=1, dht_first_put_within=0)  # put at every publish
    with trio.fail_after(20):
        async with AsyncExitStack() as stack:
            a_key, b_key = create_new_key_pair(), create_new_key_pair()
            a_node = await stack.enter_async_context(open_host(a_key, LOOPBACK, []))
            a = await stack.enter_async_context(open_membership(a_node, a_key, cfg))
            b_node = await stack.enter_async_context(open_host(b_key, LOOPBACK, a_node.listen_addrs()))
            b = await stack.enter_async_context(open_membership(b_node, b_key, cfg))
            while (found := await a.lookup(b.peer_id)) is None:
                await trio.sleep(0.1)  # B's first publish puts it; no event tells A
            assert found.peer_id == b.peer_id and found.record.addrs == b.live.get(b.peer_id).record.addrs
            assert await a.lookup(str(peer_id_of(create_new_key_pair()))) is None


async def test_a_dht_put_that_hangs_does_not_hold_up_publishing():
    # A put is a lookup that can wait on dead peers; inline, it delayed the next publish past
    # the live TTL and every node dropped this live one (netlab lose_f, CI).
    cfg = MembershipConfig(network=NET, publish_interval=0.1, dht_put_every=1, dht_put_timeout=60.0, dht_first_put_within=0)
    with trio.fail_after(20):
        async with AsyncExitStack() as stack:
            key = create_new_key_pair()
            node = await stack.enter_async_context(open_host(key, LOOPBACK, []))
            puts = []

            async def hanging_put(dht_key, value):
                puts.append(dht_key)
                await trio.sleep_forever()

            node.dht.put_value = hanging_put
            m = await stack.enter_async_context(open_membership(node, key, cfg))
            seqs = set()
            with trio.fail_after(3):  # publishes every 0.1 s go on while the first put hangs
                while len(seqs) < 10:
                    if (own := m.live.get(m.peer_id)) is not None:
                        seqs.add(own.record.seq)
                    await trio.sleep(0.02)  # no event marks our own publish
            assert len(puts) == 1


async def test_a_newcomer_whose_first_pulls_failed_pulls_until_it_has_the_live_set():
    """B's first four pulls fail (its peers are busy); meanwhile B hears C's record (as by
    gossip), so B is not alone. B must still pull until it has a whole live set: gossip may
    have told it of some members, never of all (records are gossiped when they change)."""
    from p2pwalrus.core import protocols

    cfg = MembershipConfig(network=NET, publish_interval=3600.0, dht_first_put_within=3600.0,
                           lonely_pull_interval=0.2, pull_timeout=2.0)
    with trio.fail_after(10):
        async with AsyncExitStack() as stack:
            a_key, b_key, c_key = create_new_key_pair(), create_new_key_pair(), create_new_key_pair()
            a_node = await stack.enter_async_context(open_host(a_key, LOOPBACK, []))
            a = await stack.enter_async_context(open_membership(a_node, a_key, cfg))
            c_node = await stack.enter_async_context(open_host(c_key, LOOPBACK, a_node.listen_addrs()))
            c = await stack.enter_async_context(open_membership(c_node, c_key, cfg))
            while c.peer_id not in c.live:
                await c.changed.wait()
            refused, served = [], trio.Event()

            def busy_then_serving(m):
                async def handler(stream):
                    if len(refused) < 4:  # A and C alike refuse the first four pulls
                        refused.append(stream)
                        await stream.reset()
                        return
                    await m._serve_pull(stream)
                    served.set()
                return handler

            a_node.host.set_stream_handler(protocols.MEMBERS, busy_then_serving(a))
            c_node.host.set_stream_handler(protocols.MEMBERS, busy_then_serving(c))
            b_node = await stack.enter_async_context(open_host(b_key, LOOPBACK, a_node.listen_addrs()))
            b = await stack.enter_async_context(open_membership(b_node, b_key, cfg))
            b.accept(c.live.get(c.peer_id))  # heard by gossip: B is not alone
            await served.wait()  # a fifth pull, answered
            while not b.synced:  # B reads the answer (nothing new in it: no change event)
                await trio.sleep(0.01)
            assert len(refused) == 4 and {a.peer_id, b.peer_id, c.peer_id} <= set(b.live.peer_ids())


async def test_a_lonely_node_drops_a_connection_that_holds_its_pulls_and_dials_again():
    """B's only connection is to A, and A's end holds B's first pulls without an answer (as a
    connection dead on the other side, which the swarm still lists). B, alone, closes it after
    a timed-out pull and dials again: the pull that is answered comes on a new connection."""
    from p2pwalrus.core import protocols

    cfg = MembershipConfig(network=NET, publish_interval=3600.0, dht_first_put_within=3600.0,
                           lonely_pull_interval=0.2, pull_timeout=0.3)
    with trio.fail_after(15):
        async with AsyncExitStack() as stack:
            a_key, b_key = create_new_key_pair(), create_new_key_pair()
            a_node = await stack.enter_async_context(open_host(a_key, LOOPBACK, []))
            a = await stack.enter_async_context(open_membership(a_node, a_key, cfg))
            held, served_on = [], []
            served = trio.Event()

            async def holding_then_serving(stream):
                if len(held) < 2:
                    held.append(stream.muxed_conn)
                    try:
                        await stream.read(1 << 16)  # the request, then nothing: until B gives up
                        await stream.read(1 << 16)
                    except Exception:
                        pass
                    return
                served_on.append(stream.muxed_conn)
                await a._serve_pull(stream)
                served.set()

            a_node.host.set_stream_handler(protocols.MEMBERS, holding_then_serving)
            b_node = await stack.enter_async_context(open_host(b_key, LOOPBACK, a_node.listen_addrs()))
            b = await stack.enter_async_context(open_membership(b_node, b_key, cfg))
            await served.wait()
            while a.peer_id not in b.live:
                await b.changed.wait()
            assert len(held) == 2 and served_on[0] is not held[-1]  # answered on a new connection


async def test_five_nodes_bootstrapped_from_the_first_all_see_the_full_live_set():
    cfg = MembershipConfig(network=NET, publish_interval=2.0, pull_interval=4.0)
    started = time.monotonic()
    with trio.fail_after(30):
        async with AsyncExitStack() as stack:
            members, boot = [], []
            for i in range(5):
                keypair = create_new_key_pair()
                node = await stack.enter_async_context(open_host(keypair, LOOPBACK, boot))
                boot = boot or node.listen_addrs()
                members.append(await stack.enter_async_context(open_membership(node, keypair, cfg)))
            everyone = {m.peer_id for m in members}
            await _wait_until(
                lambda: all(set(m.live.peer_ids()) == everyone for m in members),
                [lambda m=m: m.changed for m in members],
            )
            converged = time.monotonic() - started
            assert all(len(m.live) == 5 for m in members)
            # the last node heard of all the others through one bootstrap address
            assert len(members[-1].node.connected_peers()) >= 1
            print(f"5 nodes converged in {converged:.2f} s")


async def test_a_node_whose_bootstrap_peer_was_down_pulls_membership_once_it_is_back():
    """C starts while its only bootstrap peer A is down, so its first pull fails and it knows
    nobody. Once A is back (same identity and port) C learns A and B by pulling from its
    bootstrap peer, long before its routing-table refresh (30 s) or any republishing (60 s)."""
    cfg = MembershipConfig(network=NET, publish_interval=60.0, pull_interval=60.0, lonely_pull_interval=0.3)
    a_key, b_key, c_key = create_new_key_pair(), create_new_key_pair(), create_new_key_pair()
    with trio.fail_after(30):
        async with AsyncExitStack() as stack:
            async with open_host(a_key, LOOPBACK, []) as a_first:
                a_addr = a_first.listen_addrs()[0]
            c_node = await stack.enter_async_context(open_host(c_key, LOOPBACK, [a_addr]))
            c = await stack.enter_async_context(open_membership(c_node, c_key, cfg))
            assert set(c.live.peer_ids()) <= {c.peer_id}  # alone: the bootstrap peer is down
            a_listen = [a_addr.rsplit("/p2p/", 1)[0]]
            a_node = await stack.enter_async_context(open_host(a_key, a_listen, []))
            a = await stack.enter_async_context(open_membership(a_node, a_key, cfg))
            b_node = await stack.enter_async_context(open_host(b_key, LOOPBACK, [a_addr]))
            b = await stack.enter_async_context(open_membership(b_node, b_key, cfg))
            t0 = time.monotonic()
            await _wait_until(lambda: {a.peer_id, b.peer_id} <= set(c.live.peer_ids()), [lambda: c.changed])
            print(f"C learnt A and B {time.monotonic() - t0:.2f} s after A came back")
            assert time.monotonic() - t0 < 10


async def test_gossip_validator_stops_bad_records_at_the_first_hop():
    """X publishes bad records to B; C (behind B) never sees them, only X's good one."""
    cfg = MembershipConfig(network=NET, publish_interval=60.0)
    x_key, y_key = create_new_key_pair(), create_new_key_pair()
    with trio.fail_after(30):
        async with AsyncExitStack() as stack:
            b_key = create_new_key_pair()
            b_node = await stack.enter_async_context(open_host(b_key, LOOPBACK, []))
            b = await stack.enter_async_context(open_membership(b_node, b_key, cfg))
            c_key = create_new_key_pair()
            c_node = await stack.enter_async_context(open_host(c_key, LOOPBACK, b_node.listen_addrs()))
            c = await stack.enter_async_context(open_membership(c_node, c_key, cfg))
            # X runs a bare pubsub with no validator, like a faulty or hostile peer
            # (dialled by hand, with no routing-table refresh, so that B is its only peer)
            x = await stack.enter_async_context(open_host(x_key, LOOPBACK, []))
            assert await x.connect(b_node.listen_addrs()[0])
            await x.pubsub.subscribe(b.topic)
            # gossip forwards only to mesh peers: a message that arrives before the mesh
            # is grafted is lost (the service's republishing covers that; this test sends once)
            await x.pubsub.wait_for_mesh(b_node.peer_id, b.topic, timeout=10)
            await b_node.pubsub.wait_for_mesh(c_node.peer_id, b.topic, timeout=10)

            now = time.time()
            good = sign_record(x_key, _record(x_key, now=now, seq=10)).to_bytes()
            bad = [
                good.replace(b'"capacity":7', b'"capacity":8'),  # bad signature
                sign_record(x_key, _record(x_key, network="othernet", now=now, seq=11)).to_bytes(),
                sign_record(x_key, _record(x_key, now=now - 100, lifetime=30.0, seq=12)).to_bytes(),  # expired
                good + b" " * 5000,  # oversized
                sign_record(y_key, _record(y_key, now=now, seq=13)).to_bytes(),  # not X's own record
            ]
            for data in bad:
                await x.pubsub.publish(b.topic, data)
            await x.pubsub.publish(b.topic, good)
            x_id = str(x.peer_id)
            await _wait_until(lambda: x_id in c.live, [lambda: c.changed])
            assert x_id in b.live
            assert str(peer_id_of(y_key)) not in b.live and str(peer_id_of(y_key)) not in c.live
            assert b.rejected == len(bad)
            assert c_node.peer_id not in x.connected_peers()
            assert c.rejected == 0  # nothing bad was relayed past B


async def test_a_malformed_gossipsub_frame_resets_its_stream_and_the_node_stays_up():
    # py-libp2p does not catch the protobuf DecodeError of a bad GossipSub frame: it ended
    # the connection's task group and the host with it (a node process died, netlab 32 nodes).
    from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11

    echo = TProtocol("/p2pwalrus/test-echo/1.0.0")

    async def echo_handler(stream):
        await write_frame(stream, await read_frame(stream, 64))
        await stream.close()

    with trio.fail_after(20):
        async with open_host(create_new_key_pair(), LOOPBACK, []) as a:
            a.host.set_stream_handler(echo, echo_handler)
            async with open_host(create_new_key_pair(), LOOPBACK, a.listen_addrs()) as b:
                stream = await b.host.new_stream(a.peer_id, [PROTOCOL_ID_V11])
                await stream.write(encode_uvarint(6) + b"\xff" * 6)  # an unterminated protobuf varint
                try:
                    while await stream.read(1024):
                        pass
                except Exception:
                    pass  # reset by a: the stream ends, not the node
                again = await b.host.new_stream(a.peer_id, [echo])
                await write_frame(again, b"still here")
                assert await read_frame(again, 64) == b"still here"


async def test_a_newcomer_dials_one_bootstrap_peer_and_a_bootstrap_peer_dials_them_all(monkeypatch):
    """A joining node needs one bootstrap peer (each connection is a handshake, identify and
    GossipSub hello on both ends); a bootstrap peer, one on its own list, dials every other one,
    or bootstrap peers started together split a testnet into separate networks."""
    from netlab.lab_process import free_port
    from p2pwalrus.p2p import node_host

    monkeypatch.setattr(node_host, "BOOTSTRAP_STAGGER", 60.0)  # the first dial always ends first
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            boots = [await stack.enter_async_context(open_host(create_new_key_pair(), LOOPBACK, [])) for _ in range(3)]
            addrs = [b.listen_addrs()[0] for b in boots]
            newcomer = await stack.enter_async_context(open_host(create_new_key_pair(), LOOPBACK, addrs))
            assert not newcomer.is_bootstrap
            assert sum(b.peer_id in newcomer.connected_peers() for b in boots) == 1

            port = free_port()
            key = create_new_key_pair()
            own = f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id_of(key)}"
            late = await stack.enter_async_context(open_host(key, [f"/ip4/127.0.0.1/tcp/{port}"], [*addrs, own]))
            assert late.is_bootstrap
            with trio.fail_after(20):  # the other dials finish in the background (the swarm's own
                while not all(b.peer_id in late.connected_peers() for b in boots):  # auto-connect: 30 s)
                    await trio.sleep(0.05)
