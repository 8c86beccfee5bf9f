"""Anti-entropy and repair against a peer that lists storms of certificates and proofs
(issue 13): per-peer budgets, a deadline per pull, per-blob backoff, bounded and expiring
proofs. The hostile peer is a real node whose listing handlers were replaced."""

from __future__ import annotations

import os
import time

import trio

from netlab.inprocess import inprocess_network
from p2pwalrus.client.client import open_client
from p2pwalrus.core.testing import inconsistency_proof_message, make_inconsistent_blob
from p2pwalrus.p2p import rpc
from p2pwalrus.node import cert_registry, invalid_blobs
from p2pwalrus.node.bounded import Backoff, ProofStore
from p2pwalrus.core import protocols

N = 10


def turn_hostile(node, *, n_certs: int = 20_000, n_invalid: int = 1000, stall: bool = False) -> dict:
    """Make `node` list many certificates and proofs, then give garbage for each (or stall).
    Returns counters of what peers asked it for."""
    asked = {"cert": [], "proof": []}
    certs = [[os.urandom(32).hex(), node.epoch + 5] for _ in range(n_certs)]
    invalid = [os.urandom(32).hex() for _ in range(n_invalid)]

    async def list_certs(stream, peer):
        await rpc.recv_json(stream)
        await rpc.send_json(stream, {"ok": True, "certs": certs, "invalid": invalid})

    async def get_cert(stream, peer):
        hdr = await rpc.recv_json(stream)
        asked["cert"].append(hdr["blob_id"])
        if stall:
            await trio.sleep_forever()
        await rpc.send_json(stream, {"ok": True})
        await rpc.write_frame(stream, b'{"network": "local", "blob_id": 7}')

    async def get_proof(stream, peer):
        hdr = await rpc.recv_json(stream)
        asked["proof"].append(hdr["blob_id"])
        await rpc.reply_blob(stream, os.urandom(5000))

    for proto, handler in ((protocols.LIST_CERTS, list_certs), (protocols.GET_CERT, get_cert), (protocols.GET_PROOF, get_proof)):
        node.node.host.set_stream_handler(proto, rpc.serve(handler, 600, "hostile", None, node.peer_limits))
    return asked


async def test_a_storm_of_listed_certificates_costs_a_bounded_pull_and_failures_are_backed_off(tmp_path):
    with trio.fail_after(120):
        async with inprocess_network(4, N, tmp_path) as cluster:
            honest, liar = cluster.alive()[0], cluster.alive()[2]
            asked = turn_hostile(liar)
            assert await honest.pull_certificates_from(liar.peer_id) == 0
            assert len(asked["cert"]) == cert_registry.PULL_CERTS and len(asked["proof"]) == invalid_blobs.PULL_PROOFS
            first = set(asked["cert"]) | set(asked["proof"])
            asked["cert"].clear(), asked["proof"].clear()
            # The next pull asks for none of those again (backed off), only new ones, as many.
            await honest.pull_certificates_from(liar.peer_id)
            assert len(asked["cert"]) == cert_registry.PULL_CERTS
            assert not first & (set(asked["cert"]) | set(asked["proof"]))
            assert len(honest.cert_backoff) == 2 * (cert_registry.PULL_CERTS + invalid_blobs.PULL_PROOFS)
            assert not honest.certs and not len(honest.proofs)


async def test_a_pull_from_a_peer_that_stalls_every_fetch_ends_at_its_deadline(tmp_path, monkeypatch):
    monkeypatch.setattr(cert_registry, "PULL_DEADLINE", 3.0)
    with trio.fail_after(60):
        async with inprocess_network(4, N, tmp_path) as cluster:
            honest, liar = cluster.alive()[0], cluster.alive()[2]
            asked = turn_hostile(liar, n_invalid=0, stall=True)
            t0 = trio.current_time()
            await honest.pull_certificates_from(liar.peer_id)
            assert trio.current_time() - t0 < 3.0 + 1.0
            assert asked["cert"]  # it did ask, one at a time, until the deadline
            # ... and the honest node still serves.
            async with open_client(cluster.net) as client:
                data = os.urandom(3000)
                assert await client.read((await client.store(data)).blob_id) == data


async def test_a_proof_for_a_blob_held_nowhere_here_costs_no_disk_and_expires(tmp_path):
    bad = make_inconsistent_blob(os.urandom(5000), N, row=1, column=2)
    message = inconsistency_proof_message(bad, 2)
    with trio.fail_after(120):
        async with inprocess_network(4, N, tmp_path) as cluster:
            node = cluster.alive()[1]
            async with open_client(cluster.net) as client:
                await client.refresh_membership()
                stream = await client.new_stream(node.peer_id, protocols.PUT_PROOF)
                try:
                    await rpc.write_frame(stream, message)
                    assert (await rpc.recv_json(stream))["ok"]
                finally:
                    await rpc.close_quietly(stream)
            assert node.is_invalid(bad.blob_id) and bad.blob_id in node.proofs
            assert not node.store.has_blob(bad.blob_id)  # a marker in memory only
            assert node.proofs.prune(node.epoch) == []
            assert node.proofs.prune(node.epoch + 1) == [bad.blob_id]
            assert not node.is_invalid(bad.blob_id)


def test_proofs_kept_are_bounded_in_number_and_bytes_oldest_first():
    store = ProofStore(max_count=3, max_bytes=100)
    for i in range(5):
        store.add(bytes([i]) * 32, b"x" * 10, expires_epoch=9)
    assert len(store) == 3 and list(store)[0] == bytes([2]) * 32
    store.add(b"b" * 32, b"y" * 95, expires_epoch=9)
    assert store.nbytes <= 100 and list(store) == [b"b" * 32]
    store.add(b"c" * 32, b"z" * 101, expires_epoch=9)  # larger than the whole budget: not kept
    assert b"c" * 32 not in store


def test_backoff_doubles_per_failure_up_to_its_cap_and_forgets_the_oldest():
    backoff = Backoff(base=5.0, cap=30.0, max_entries=2)
    blob = b"a" * 32
    assert backoff.ready(blob, 0.0)
    assert [backoff.failed(blob, 0.0) for _ in range(5)] == [5.0, 10.0, 20.0, 30.0, 30.0]
    assert not backoff.ready(blob, 29.0) and backoff.ready(blob, 30.0)
    backoff.succeeded(blob)
    assert backoff.ready(blob, 0.0)
    for b in (b"x" * 32, b"y" * 32, b"z" * 32):
        backoff.failed(b, 0.0)
    assert len(backoff) == 2 and backoff.ready(b"x" * 32, 0.0)


async def test_repair_of_a_blob_that_fails_waits_before_it_is_tried_again(tmp_path):
    """A certified blob whose repair cannot succeed (every other holder wiped its slivers):
    the node tries, fails, and the next sweeps skip it until its backoff has passed."""
    with trio.fail_after(120):
        async with inprocess_network(4, N, tmp_path) as cluster:
            async with open_client(cluster.net) as client:
                result = await client.store(os.urandom(4000))
            nodes = cluster.alive()
            for nd in nodes:  # nothing left anywhere to repair from
                for shard in list(nd.store.shards_stored(result.blob_id)):
                    nd.store.delete_sliver(result.blob_id, shard)
            node = nodes[1]
            tries = []
            real = node.repair.repair_blob

            async def counted(blob_id, tasks):
                tries.append(trio.current_time())
                await real(blob_id, tasks)

            node.repair.repair_blob = counted
            node.repair.backoff.succeeded(result.blob_id)  # whatever the node's own sweeps did before
            for _ in range(3):
                await node.repair.sweep()
            assert len(tries) == 1 and not node.repair.backoff.ready(result.blob_id, time.monotonic())
