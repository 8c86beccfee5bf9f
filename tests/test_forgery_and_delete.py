"""Forged certificates, relabelling and deletes by strangers, replayed deletes: attacks on
the wire against real nodes on loopback (issue 13)."""

from __future__ import annotations

import os

import pytest
import trio
from libp2p.peer.id import ID

from netlab.inprocess import inprocess_network
from p2pwalrus.client.client import Progress, open_client
from p2pwalrus.core import rs2
from p2pwalrus.core.certificates import (
    AvailabilityCertificate,
    StorageConfirmation,
    delete_message,
    quorum,
    sign_confirmation,
)
from p2pwalrus.core.keys import sign
from p2pwalrus.core.placement import compute_shard_map
from p2pwalrus.errors import BlobNotFoundError, P2PWalrusError
from p2pwalrus.p2p import rpc
from p2pwalrus.p2p.framing import write_frame

from .netlab_helpers import nodes_holding_at_most
from p2pwalrus.core import protocols

N = 10
F = (N - 1) // 3


async def put_cert(client, peer: str, raw: bytes) -> dict:
    stream = await client.host.new_stream(ID.from_base58(peer), [protocols.PUT_CERT])
    try:
        await write_frame(stream, raw)
        try:
            return await rpc.recv_json(stream)
        except Exception as exc:
            return {"ok": False, "reset": repr(exc)}
    finally:
        await rpc.close_quietly(stream)


async def call(client, peer: str, protocol, header: dict) -> dict:
    try:
        return await client.call(peer, protocol, header)
    except Exception as exc:  # a node may reset the stream instead of answering
        return {"ok": False, "reset": repr(exc)}



async def until(predicate, timeout: float, what: str) -> None:
    """Poll a condition no event announces (a gossip copy judged) until it holds."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.05)


async def test_nodes_holding_at_most_f_shards_cannot_get_a_forged_certificate_accepted(tmp_path):
    """Real member nodes holding at most f shards between them sign confirmations for every
    shard of a blob nobody stored, write a member set of themselves alone (whose map gives
    them every shard), then the validator's own member set; gossip both and push them to
    every node. Honest nodes answer requests but sign nothing for it. No honest node
    accepts, a reader finds no certificate, and an honest blob still certifies and reads."""
    with trio.fail_after(150):
        async with inprocess_network(7, N, tmp_path) as cluster:
            nodes = cluster.alive()
            attackers, held = nodes_holding_at_most(nodes, F)
            assert attackers and held <= F
            honest = [nd for nd in nodes if nd not in attackers]
            for bad in attackers:  # an attacker relays whatever it is given
                bad.node.pubsub.set_topic_validator(protocols.certs_topic(cluster.net.name), lambda f, m: True, False)
            blob = rs2.encode_blob(os.urandom(2000), N)
            epoch = cluster.net.current_epoch()
            async with open_client(cluster.net) as client:
                await client.refresh_membership()
                # Honest nodes asked to confirm a blob they never stored: refused.
                for nd in honest:
                    reply = await call(client, nd.peer_id, protocols.CONFIRM,
                                       {"blob_id": blob.blob_id.hex(), "epoch": epoch, "end_epoch": epoch + 1})
                    assert reply["ok"] is False and "confirmation" not in reply, reply
                ids = [a.peer_id for a in attackers]
                keys = {a.peer_id: a.keypair for a in attackers}
                own_map = compute_shard_map(ids, N)
                honest_shards = [s for s in range(N) if nodes[0].shard_map.owner(s) not in ids]

                def forged(members, shards_of):
                    confs = tuple(sign_confirmation(keys[p], p, cluster.net.name, blob.blob_id, epoch, epoch + 5,
                                                    shards_of(p)) for p in ids if shards_of(p))
                    return AvailabilityCertificate(cluster.net.name, blob.blob_id, N, epoch, epoch + 5,
                                                   tuple(members), confs).to_bytes()

                k = len(ids)
                attempts = [
                    forged(ids, own_map.shards_of),
                    forged(nodes[0].shard_map.nodes,
                           lambda p: [*nodes[0].shard_map.shards_of(p), *honest_shards[ids.index(p)::k]]),
                ]
                rejected_before = sum(nd.counters["certs_rejected"] for nd in honest)
                for raw in attempts:
                    await attackers[0].node.pubsub.publish(protocols.certs_topic(cluster.net.name), raw)
                    for nd in honest:
                        reply = await put_cert(client, nd.peer_id, raw)
                        assert reply["ok"] is False and "in this node's view" in reply.get("error", ""), reply
                # Every honest node judged the gossiped copies too (each refused them).
                await until(lambda: sum(nd.counters["certs_rejected"] for nd in honest)
                            >= rejected_before + 2 * 2 * len(honest), 30, "gossip judged")
                assert not any(blob.blob_id in nd.certs for nd in honest)
                cert, _ = await client.find_certificate(blob.blob_id)
                assert cert is None
                with pytest.raises(BlobNotFoundError):  # a reader's bar (f + 1 shards) is not met either
                    await client.certified(blob.blob_id)
                data = os.urandom(5000)
                result = await client.store(data)
                assert await client.read(result.blob_id) == data


async def test_a_node_that_joined_after_a_store_accepts_its_certificate(tmp_path):
    """A certificate judged by a node whose view differs from the writer's (it joined after
    the store, and moved shards to itself): still accepted, by anti-entropy."""
    with trio.fail_after(150):
        async with inprocess_network(4, N, tmp_path) as cluster:
            async with open_client(cluster.net) as client:
                data = os.urandom(4000)
                result = await client.store(data, epochs=2)
                for _ in range(3):  # a node may rank first for no shard: one that moves shards to itself
                    newcomer = await cluster.start()
                    await cluster.wait_converged(60)
                    if newcomer.my_shards():
                        break
                writer_map = compute_shard_map(result.certificate.members, N)
                assert newcomer.my_shards() and newcomer.shard_map.digest() != writer_map.digest()
                # Either the certificate itself, or (when the join moved more of its shards than
                # its margin over n - f) one renewed by today's holders (recertify.py).
                await cluster.wait_until(lambda: _holds(newcomer, result.blob_id), 90)
                held = newcomer.certs[result.blob_id]
                assert (held.end_epoch, held.deletable, held.owner) == (
                    result.certificate.end_epoch, result.certificate.deletable, result.certificate.owner)
                # A reader with today's map finds a certificate it accepts, and reads.
                async with open_client(cluster.net) as reader:
                    assert await reader.read(result.blob_id) == data


async def _holds(node, blob_id) -> bool:
    return blob_id in node.certs


async def test_a_stranger_can_neither_relabel_nor_delete_a_blob(tmp_path):
    """A stranger (another client key) who has the bytes tries every way to delete a
    deletable blob of someone else, and to make a permanent one deletable: storing it again
    with its own labels, building a certificate from fresh CONFIRM signatures with its own
    labels, signing deletes. Every node refuses; both blobs stay readable."""
    mine, kept = os.urandom(6000), os.urandom(6000)
    with trio.fail_after(150):
        async with inprocess_network(4, N, tmp_path) as cluster:
            name = cluster.net.name
            async with open_client(cluster.net) as owner, open_client(cluster.net) as stranger:
                deletable = await owner.store(mine, deletable=True)
                permanent = await owner.store(kept)
                smap = await stranger.refresh_membership()
                epoch = cluster.net.current_epoch()
                # 1. The CLI's path: the client says who may delete it.
                with pytest.raises(P2PWalrusError, match="only the key that stored this blob"):
                    await stranger.delete(deletable.blob_id)
                with pytest.raises(P2PWalrusError, match="already certified as deletable by the key"):
                    await stranger.store(mine, deletable=True, epochs=3)
                with pytest.raises(P2PWalrusError, match="already certified as permanent"):
                    await stranger.store(kept, deletable=True, epochs=3)
                for result in (deletable, permanent):
                    blob_id = result.blob_id
                    # 2. Store it again as deletable with itself as owner: refused by every holder.
                    enc = rs2.encode_blob(mine if result is deletable else kept, N)
                    plan = {nd: [rs2.pair_for_shard(s, blob_id, N) for s in smap.shards_of(nd)] for nd in smap.nodes}
                    got, failures = await stranger._upload_round(enc, smap, plan, epoch, epoch + 3, True, N, {},
                                                                 Progress())
                    assert not got and all("certified here already" in why for why in failures.values()), failures
                    # 3. Fresh signatures from CONFIRM bind the certificate's labels, not the caller's.
                    confs = []
                    for peer in smap.nodes:
                        reply = await call(stranger, peer, protocols.CONFIRM,
                                           {"blob_id": blob_id.hex(), "epoch": epoch, "end_epoch": epoch + 4})
                        assert reply["ok"], reply
                        confs.append(StorageConfirmation.from_json(reply["confirmation"]))
                    relabelled = AvailabilityCertificate(name, blob_id, N, epoch, epoch + 4, smap.nodes, tuple(confs),
                                                         deletable=True, owner=stranger.peer_id).to_bytes()
                    for peer in smap.nodes:
                        reply = await put_cert(stranger, peer, relabelled)
                        assert reply["ok"] is False, reply
                    # 4. A delete signed by the stranger, sent to every node.
                    nonce = os.urandom(16)
                    header = {"blob_id": blob_id.hex(), "epoch": epoch, "nonce": nonce.hex(),
                              "signature": sign(stranger.keypair, delete_message(name, blob_id, epoch, nonce)).hex()}
                    for peer in smap.nodes:
                        reply = await call(stranger, peer, protocols.DELETE, header)
                        assert reply["ok"] is False and ("not signed by the blob's owner" in reply["error"]
                                                         or "not stored as deletable" in reply["error"]), reply
                for nd in cluster.alive():
                    assert nd.certs[deletable.blob_id].owner == owner.peer_id and nd.certs[deletable.blob_id].deletable
                    assert not nd.certs[permanent.blob_id].deletable
                assert await stranger.read(deletable.blob_id) == mine
                assert await stranger.read(permanent.blob_id) == kept
                # The owner still can.
                assert await owner.delete(deletable.blob_id) == len(smap.nodes)


async def test_a_delete_cannot_be_replayed_on_a_blob_stored_again(tmp_path):
    """The owner deletes a blob, then stores the same bytes again. Its signed delete, captured
    on the wire and sent again, is refused by every node (each takes a nonce once); a delete
    issued for another epoch is refused too. The blob stays readable."""
    data = os.urandom(5000)
    with trio.fail_after(150):
        async with inprocess_network(4, N, tmp_path) as cluster:
            name = cluster.net.name
            async with open_client(cluster.net) as owner:
                first = await owner.store(data, deletable=True)
                smap = owner.shard_map
                epoch = cluster.net.current_epoch()
                nonce = os.urandom(16)
                captured = {"blob_id": first.blob_id.hex(), "epoch": epoch, "nonce": nonce.hex(),
                            "signature": sign(owner.keypair, delete_message(name, first.blob_id, epoch, nonce)).hex()}
                for peer in smap.nodes:
                    assert (await call(owner, peer, protocols.DELETE, captured))["ok"]
                with pytest.raises(P2PWalrusError):
                    await owner.read(first.blob_id)
                again = await owner.store(data, deletable=True)
                assert again.blob_id == first.blob_id and not again.already_certified
                for peer in smap.nodes:
                    reply = await call(owner, peer, protocols.DELETE, captured)
                    assert reply["ok"] is False and "used already" in reply["error"], reply
                later = dict(captured, epoch=epoch + 1, nonce=os.urandom(16).hex())
                later["signature"] = sign(owner.keypair, delete_message(
                    name, first.blob_id, epoch + 1, bytes.fromhex(later["nonce"]))).hex()
                for peer in smap.nodes:
                    reply = await call(owner, peer, protocols.DELETE, later)
                    assert reply["ok"] is False and "sign a new one" in reply["error"], reply
                assert await owner.read(first.blob_id) == data
                assert all(first.blob_id in nd.certs for nd in cluster.alive())


async def test_confirm_is_refused_for_a_blob_stored_but_not_certified(tmp_path):
    """CONFIRM extends only certified blobs: slivers uploaded without a certificate get no
    signature for a later end epoch, and the node's end epoch for them does not move."""
    with trio.fail_after(120):
        async with inprocess_network(4, N, tmp_path) as cluster:
            async with open_client(cluster.net) as client:
                smap = await client.refresh_membership()
                enc = rs2.encode_blob(os.urandom(3000), N)
                plan = {nd: [rs2.pair_for_shard(s, enc.blob_id, N) for s in smap.shards_of(nd)] for nd in smap.nodes}
                epoch = cluster.net.current_epoch()
                got, _ = await client._upload_round(enc, smap, plan, epoch, epoch + 1, False, N, {}, Progress())
                assert len({s for c in got.values() for s in c.shards}) >= quorum(N)
                for nd in cluster.alive():
                    reply = await call(client, nd.peer_id, protocols.CONFIRM,
                                       {"blob_id": enc.blob_id.hex(), "epoch": epoch, "end_epoch": epoch + 50})
                    assert reply["ok"] is False and "only certified blobs are extended" in reply["error"], reply
                    assert nd.store.get_state(enc.blob_id).get("end_epoch") == epoch + 1
