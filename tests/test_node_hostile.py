"""Hostile peers: every message is bounded and validated before a node commits to it."""

import logging
import os

import trio
from libp2p.peer.id import ID

from netlab.inprocess import inprocess_network
from p2pwalrus.client.client import open_client
from p2pwalrus.core import rs2
from p2pwalrus.node import rpc
from p2pwalrus.node.framing import encode_uvarint, write_frame


async def _exchange(client, peer_id, protocol, frames, *, raw_prefix=b""):
    stream = await client.host.new_stream(ID.from_base58(peer_id), [protocol])
    try:
        if raw_prefix:
            await stream.write(raw_prefix)
        for frame in frames:
            await write_frame(stream, frame)
        try:
            return await rpc.recv_json(stream)
        except Exception as exc:  # the node may reset the stream instead of answering
            return {"reset": repr(exc)}
    finally:
        await rpc.close_quietly(stream)


async def test_hostile_messages_are_refused_with_a_reason_and_the_node_keeps_serving(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="p2pwalrus")
    data = os.urandom(20_000)
    with trio.fail_after(120):
        async with inprocess_network(4, 10, tmp_path) as cluster:
            node = cluster.alive()[0]
            async with open_client(cluster.net) as client:
                await client.refresh_membership()
                target = node.peer_id
                # 1. A length prefix far over the header bound: refused before allocation.
                reply = await _exchange(client, target, rpc.STORE, [], raw_prefix=encode_uvarint(1 << 40))
                assert reply.get("ok") is False and "larger than the 65536-byte limit" in reply["error"]
                # 2. Malformed JSON and a header of the wrong shape.
                reply = await _exchange(client, target, rpc.GET_SLIVER, [b"{not json"])
                assert reply == {"ok": False, "error": "header is not JSON"}
                reply = await _exchange(client, target, rpc.GET_SLIVER, [b'{"blob_id": 5}'])
                assert reply["ok"] is False and "blob_id" in reply["error"]
                # 3. Slivers that fail verification against the metadata.
                enc = rs2.encode_blob(data, 10)
                mine = node.my_shards()
                pairs = [rs2.pair_for_shard(s, enc.blob_id, 10) for s in mine]
                header = {"blob_id": enc.blob_id.hex(), "epoch": cluster.net.current_epoch(),
                          "end_epoch": cluster.net.current_epoch() + 1, "pairs": pairs}
                frames = [rpc.json.dumps(header).encode(), enc.metadata.to_bytes()]
                for p in pairs:
                    bad = bytearray(enc.primary_sliver(p))
                    bad[0] ^= 1
                    frames += [bytes(bad), enc.secondary_sliver(p)]
                reply = await _exchange(client, target, rpc.STORE, frames)
                assert reply["ok"] and reply["confirmation"]["shards"] == []
                assert all("does not match" in why for why in reply["refused"].values())
                assert not node.held_pairs(enc.blob_id)
                # 4. Metadata that does not match the blob ID.
                header["blob_id"] = bytes(32).hex()
                header["pairs"] = [rs2.pair_for_shard(s, bytes(32), 10) for s in mine]  # held: past the header
                reply = await _exchange(client, target, rpc.STORE, [rpc.json.dumps(header).encode(),
                                                                     enc.metadata.to_bytes()])
                assert reply == {"ok": False, "error": "metadata does not match the blob ID"}
                # 5. A certificate with a forged confirmation.
                result = await client.store(data, epochs=1)
                forged = result.certificate.to_bytes().replace(
                    result.certificate.confirmations[0].signature.hex().encode(), (b"00" * 64))
                stream = await client.host.new_stream(ID.from_base58(target), [rpc.PUT_CERT])
                await write_frame(stream, forged)
                reply = await rpc.recv_json(stream)
                await rpc.close_quietly(stream)
                assert reply["ok"] is False and "bad signature" in reply["error"]
                # The node still serves honest requests.
                assert await client.read(result.blob_id) == data
    reasons = " ".join(r.getMessage() for r in caplog.records)
    assert "header is not JSON" in reasons and "does not match" in reasons and "bad signature" in reasons


async def test_a_node_keeps_accepting_clients_long_after_its_inbound_cap_of_open_connections(tmp_path):
    """py-libp2p 0.8.1 held an inbound slot until the whole swarm stopped, not until that
    connection closed: a node went deaf to new clients after max - min connections in its
    life (250 by default; round 82 of the 10-node read-after-write loop). Here the cap is 8
    and 3 times as many clients come and go, one after the other, each pulling the live set
    and then hanging up, as a CLI command does when its process ends."""
    def small_cap(node):
        node.host_overrides.update(min_connections=4, low_watermark=6, high_watermark=12, max_connections=12)

    with trio.fail_after(120):
        async with inprocess_network(2, 4, tmp_path, configure=small_cap) as cluster:
            net = cluster.net.with_bootstrap(cluster.bootstrap[:1])  # every client dials node 0
            for i in range(24):
                async with open_client(net) as client:
                    with trio.fail_after(20):
                        shard_map = await client.refresh_membership()
                        for peer in list(client.host.get_network().connections):
                            await client.host.disconnect(peer)
                assert len(shard_map.nodes) == 2, f"client {i}"
