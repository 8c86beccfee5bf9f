"""Hostile peers on the wire, through real nodes over loopback: no gossip message and no
stream, however malformed, ends a node or its host, and memory follows bytes received."""

import json
from contextlib import asynccontextmanager
import logging
import os

import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
import multiaddr

from netlab.inprocess import inprocess_network
from p2pwalrus.client.client import open_client
from p2pwalrus.core import rs2
from p2pwalrus.p2p import rpc
from p2pwalrus.p2p.patches import hardening
from p2pwalrus.p2p.framing import encode_uvarint
from p2pwalrus.p2p.host import HostTimings, open_host
from p2pwalrus.p2p.probe import send_and_drain
from p2pwalrus.node.service import MAX_PROOF_MESSAGE
from p2pwalrus.core import protocols


def _cert_json(net_name: str, **over) -> bytes:
    obj = {"network": net_name, "blob_id": "00" * 32, "n_shards": 10, "epoch": 0, "end_epoch": 1,
           "members": ["12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"], "confirmations": [],
           "deletable": False, "owner": ""}
    obj.update(over)
    return json.dumps(obj).encode().replace(b'"__INF__"', b"1e400")


def gossip_garbage(net_name: str) -> list[bytes]:
    """Messages that once stopped a node, and plain junk: for every topic."""
    deep = b"[" * 100_000
    return [
        b"",
        os.urandom(300),
        deep,
        b'{"a":' * 20_000,
        b"\x01" + bytes(64) + b"[" * 3000,  # a node record / down report whose JSON nests deeply
        _cert_json(net_name, n_shards="__INF__"),  # 1e400: OverflowError in int()
        _cert_json(net_name, epoch="__INF__"),
        _cert_json(net_name, members=[""]),  # an empty member ID
        _cert_json(net_name, members=[5, None]),
        _cert_json(net_name, confirmations=[{"peer_id": "", "shards": [2 ** 40], "signature": "zz"}]),
        _cert_json(net_name, confirmations={"x": 1}),
        b"[1e400]",
        bytes(32) + (2 ** 32 - 1).to_bytes(4, "little") + b"\x00" * 40,  # an inconsistency proof, lying lengths
        bytes(36) + b"\x01" * 30,
    ]


def gossipsub_rpcs(topic: str) -> list[bytes]:
    """Well-formed GossipSub RPCs that carry nonsense: bad IDs, unknown topics, huge backoffs."""
    from libp2p.pubsub.pb import rpc_pb2 as pb

    rpcs = [
        pb.RPC(subscriptions=[pb.RPC.SubOpts(subscribe=True, topicid="t%d" % i) for i in range(50)]),
        pb.RPC(publish=[pb.Message(from_id=b"", data=b"x", seqno=b"", topicIDs=[topic])]),
        pb.RPC(publish=[pb.Message(from_id=b"\x00\x24" + os.urandom(36), data=b"[" * 5000, seqno=os.urandom(8),
                                   topicIDs=[topic], signature=os.urandom(64), key=os.urandom(40))]),
        pb.RPC(control=pb.ControlMessage(
            graft=[pb.ControlGraft(topicID="nope"), pb.ControlGraft(topicID=topic)],
            prune=[pb.ControlPrune(topicID=topic, backoff=2 ** 64 - 1,
                                   peers=[pb.PeerInfo(peerID=os.urandom(7), signedPeerRecord=os.urandom(30))])],
            ihave=[pb.ControlIHave(topicID=topic, messageIDs=[os.urandom(40) for _ in range(20)])],
            iwant=[pb.ControlIWant(messageIDs=[b"", os.urandom(200)])],
            idontwant=[pb.ControlIDontWant(messageIDs=[os.urandom(10)])])),
        pb.RPC(senderRecord=os.urandom(100)),
    ]
    return [encode_uvarint(len(r.SerializeToString())) + r.SerializeToString() for r in rpcs]


def stream_garbage() -> list[bytes]:
    """What is written on a fresh stream of each protocol, one stream per item."""
    deep = b"[" * 60_000
    return [
        os.urandom(200),
        encode_uvarint(1 << 40),  # a length far over any bound
        encode_uvarint(64 << 20) + os.urandom(1000),  # 64 MiB announced, then a stall (closed)
        b"\xff" * 11,  # a varint that never ends
        encode_uvarint(len(deep)) + deep,
        encode_uvarint(20) + b'{"blob_id": 1e400}  ',
        encode_uvarint(13) + b'{"pair": NaN}',
        encode_uvarint(2) + b"[]",
        encode_uvarint(60) + json.dumps({"blob_id": "", "pair": -1, "kind": [], "targets": {}}).encode()[:60],
        encode_uvarint(0),
    ]


def _node_protocols(node) -> list[str]:
    return sorted(str(p) for p in node.node.host.get_mux().handlers)


async def _serves(cluster, blob_id: bytes, data: bytes) -> None:
    async with open_client(cluster.net) as client:
        await client.refresh_membership()
        assert await client.read(blob_id) == data


@asynccontextmanager
async def _attacker(nodes):
    """A libp2p peer of its own (fresh identity, no validators), connected to every node."""
    async with open_host(create_new_key_pair(), ["/ip4/127.0.0.1/tcp/0"], [],
                         timings=HostTimings(gossip_degree=8)) as attacker:
        attacker.gossipsub.spam_protection_enabled = False  # its own rate limit: off
        for n in nodes:
            assert await attacker.connect(info_from_p2p_addr(multiaddr.Multiaddr(n.node.listen_addrs()[0])))
        yield attacker


def _host_alive(node) -> bool:
    return node.node.pubsub.manager.is_running and node.node.gossipsub.manager.is_running


async def test_malformed_gossip_on_every_topic_and_garbage_on_every_protocol_leave_nodes_serving(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    data = os.urandom(30_000)
    with trio.fail_after(240):
        async with inprocess_network(4, 10, tmp_path) as cluster:
            nodes = cluster.alive()
            async with open_client(cluster.net) as client:
                await client.refresh_membership()
                stored = await client.store(data, epochs=1)
            name = cluster.net.name
            topics = [protocols.certs_topic(name), protocols.proofs_topic(name), nodes[0].members.topic, nodes[0].liveness.topic]
            assert all(set(topics) <= set(n.node.pubsub.topic_ids) for n in nodes), "a topic the nodes do not subscribe to"
            # 1. Gossip: every garbage message on every topic, published by a real libp2p peer
            # (one identity per topic: GossipSub's scoring stops listening to a peer that sent
            # many invalid messages, and every topic must be heard).
            garbage = gossip_garbage(name)
            for topic in topics:
                async with _attacker(nodes) as attacker:
                    for n in nodes:
                        await attacker.pubsub.wait_for_subscription(ID.from_base58(n.peer_id), topic, timeout=30)
                    before = hardening.stats[("validated", topic)]
                    for msg in garbage:
                        await attacker.pubsub.publish(topic, msg)
                    # Every node validates every message (each goes straight to every subscriber).
                    with trio.move_on_after(60):
                        while hardening.stats[("validated", topic)] - before < len(garbage) * len(nodes):
                            await hardening.stats_changed()
                    judged = hardening.stats[("validated", topic)] - before
                    assert judged >= len(garbage) * len(nodes), (topic, judged)
            assert all(_host_alive(n) for n in nodes)
            # 2. Streams: garbage on every protocol the nodes offer, our own and py-libp2p's.
            served = _node_protocols(nodes[0])
            for p in (protocols.STORE, protocols.PUT_PROOF, protocols.PUT_CERT, "/meshsub/1.1.0", "/ipfs/kad/1.0.0"):
                assert p in served
            sent = 0
            async with _attacker(nodes) as attacker:
                async with trio.open_nursery() as nursery:
                    for n in nodes:
                        for protocol in served:
                            items = stream_garbage()
                            if "meshsub" in protocol:
                                items += gossipsub_rpcs(protocols.certs_topic(name))
                            for item in items:
                                nursery.start_soon(send_and_drain, attacker.host, ID.from_base58(n.peer_id), protocol, item)
                                sent += 1
            assert sent >= 4 * 14 * 10
            # Afterwards: every node and its host run, and a byte-exact read is served.
            assert [n for n in cluster.alive()] == nodes
            assert all(_host_alive(n) for n in nodes)
            await _serves(cluster, stored.blob_id, data)
    # The failures were contained and said so (bursts summarised), never as a traceback.
    assert not [r for r in caplog.records if r.exc_info and r.name.startswith("p2pwalrus")]


async def test_stalled_streams_announcing_64_mib_cost_what_they_sent(tmp_path):
    """100 streams, from 4 peers, each announcing a 64 MiB proof and sending 1 KiB, then
    stalling: the node's memory grows with the 100 KiB received, not the 6.4 GiB announced."""

    def rss() -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    with trio.fail_after(180):
        async with inprocess_network(1, 10, tmp_path) as cluster:
            node = cluster.alive()[0]
            target = ID.from_base58(node.peer_id)
            addr = info_from_p2p_addr(multiaddr.Multiaddr(node.node.listen_addrs()[0]))
            limits = node.peer_limits
            async with open_client(cluster.net) as a1, open_client(cluster.net) as a2, \
                    open_client(cluster.net) as a3, open_client(cluster.net) as a4:
                attackers = [a1, a2, a3, a4]
                for a in attackers:
                    await a.host.connect(addr)
                base = rss()
                streams = []
                for i in range(100):
                    host = attackers[i % 4].host
                    stream = await host.new_stream(target, [protocols.PUT_PROOF])
                    await stream.write(encode_uvarint(MAX_PROOF_MESSAGE) + os.urandom(1024))
                    streams.append(stream)
                # Until the node has read every stream's first KiB (a node that allocated the
                # announced length has done so by then).
                while limits.open_streams() < 100 or limits.buffered() < 100 * 1024:
                    await limits.changed.wait()
                grown = rss() - base
                assert limits.buffered() <= 100 * 1024 + 100 * 10
                assert grown < 50 << 20, f"100 stalled streams cost {grown >> 20} MiB"
                for s in streams:
                    await rpc.close_quietly(s, reset=True)


async def test_per_peer_caps_refuse_streams_and_bytes_over_the_limit(tmp_path):
    with trio.fail_after(120):
        async with inprocess_network(1, 10, tmp_path) as cluster:
            node = cluster.alive()[0]
            target = ID.from_base58(node.peer_id)
            limits = node.peer_limits
            limits.max_streams = 16  # the same rule at any cap; fewer streams to hold
            async with open_client(cluster.net) as client:
                await client.refresh_membership()
                held = []
                for _ in range(limits.max_streams):
                    stream = await client.host.new_stream(target, [protocols.PUT_PROOF])
                    await stream.write(encode_uvarint(1000) + b"x")  # stalls inside the frame
                    held.append(stream)
                while limits.open_streams(client.peer_id) < limits.max_streams:
                    await limits.changed.wait()
                # One stream more from the same peer is reset at once, without an answer.
                try:  # (the reset may come before the protocol negotiation ends)
                    extra = await client.host.new_stream(target, [protocols.NODE_INFO])
                    await rpc.send_json(extra, {})
                    reply = await rpc.recv_json(extra)
                except Exception:
                    reply = None
                assert reply is None
                assert limits.refused >= 1
                for s in held:
                    await rpc.close_quietly(s, reset=True)
                while limits.open_streams(client.peer_id):
                    await limits.changed.wait()
                # Bytes: a peer over its buffered-bytes cap is refused mid-frame.
                limits.max_buffered = 256 << 10
                stream = await client.host.new_stream(target, [protocols.PUT_PROOF])
                try:
                    await stream.write(encode_uvarint(1 << 20))
                    for _ in range(8):
                        await stream.write(bytes(64 << 10))
                    reply = await rpc.recv_json(stream)
                except Exception as exc:
                    reply = {"reset": repr(exc)}
                finally:
                    await rpc.close_quietly(stream)
                assert reply.get("ok") is False and "in flight" in reply.get("error", ""), reply
                limits.max_buffered = rpc.MAX_BUFFERED_PER_PEER
                # The peer is served again once its streams are gone.
                stream = await client.host.new_stream(target, [protocols.NODE_INFO])
                await rpc.send_json(stream, {})
                assert (await rpc.recv_json(stream, rpc.MAX_LIST_REPLY))["ok"]
                await rpc.close_quietly(stream)


async def test_slivers_of_shards_not_held_are_refused_from_the_header(tmp_path):
    with trio.fail_after(120):
        async with inprocess_network(3, 10, tmp_path) as cluster:
            node = cluster.alive()[0]
            enc = rs2.encode_blob(os.urandom(5000), 10)
            mine = set(node.my_shards())
            foreign = [s for s in range(10) if s not in mine]
            assert foreign and mine
            pairs = [rs2.pair_for_shard(s, enc.blob_id, 10) for s in (foreign[0], sorted(mine)[0])]
            async with open_client(cluster.net) as client:
                await client.refresh_membership()
                stream = await client.host.new_stream(ID.from_base58(node.peer_id), [protocols.STORE])
                epoch = cluster.net.current_epoch()
                await rpc.send_json(stream, {"blob_id": enc.blob_id.hex(), "epoch": epoch, "end_epoch": epoch + 1,
                                             "pairs": pairs})
                # Nothing more is sent: the answer comes from the header alone.
                reply = await rpc.recv_json(stream)
                await rpc.close_quietly(stream)
            assert reply["ok"] is False and f"[{foreign[0]}]" in reply["error"] and "not held" in reply["error"]
            assert node.peer_limits.buffered() == 0


async def test_a_refusal_is_logged_once_and_a_flood_of_them_is_summarised(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="p2pwalrus")
    with trio.fail_after(120):
        async with inprocess_network(1, 10, tmp_path) as cluster:
            node = cluster.alive()[0]
            async with open_client(cluster.net) as client:
                await client.refresh_membership()
                target = ID.from_base58(node.peer_id)

                async def bad_header():
                    stream = await client.host.new_stream(target, [protocols.GET_SLIVER])
                    await stream.write(encode_uvarint(9) + b"{not json")
                    reply = await rpc.recv_json(stream)
                    await rpc.close_quietly(stream)
                    assert reply == {"ok": False, "error": "header is not JSON"}

                await bad_header()
                mine = [r for r in caplog.records if "header is not JSON" in r.getMessage()]
                assert len(mine) == 1, [r.getMessage() for r in mine]  # once: not again by an outer layer
                for _ in range(40):
                    await bad_header()
    lines = [r.getMessage() for r in caplog.records if "header is not JSON" in r.getMessage()]
    assert len(lines) <= 10, len(lines)  # 41 refusals in a burst: a handful of lines, not 41
