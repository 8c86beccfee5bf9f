"""Where certificates must be before a store returns, nodes that learn a signer they did not
know, and the deletion of uploads that were never certified (issue 18). Real nodes on
loopback, in one trio process."""

from __future__ import annotations

import os

import pytest
import trio

from netlab.inprocess import inprocess_network
from netlab.inprocess import test_network as make_network  # (not collected as a test)
from p2pwalrus.client import certs as certs_mod
from p2pwalrus.client import client as client_mod
from p2pwalrus.client.client import open_client
from p2pwalrus.config import Timings
from p2pwalrus.core import rs2
from p2pwalrus.core.certificates import InvalidCertificateError, quorum
from p2pwalrus.core.placement import compute_shard_map
from p2pwalrus.errors import NotEnoughShardsError

from .netlab_helpers import nodes_holding_at_most


def refuse_certificates(node) -> None:
    def refuse(cert, *, source):
        raise InvalidCertificateError("refused by the test")

    node.accept_certificate = refuse



async def test_store_returns_once_holders_of_n_minus_f_shards_hold_the_certificate(tmp_path, monkeypatch):
    monkeypatch.setattr(certs_mod, "CERT_PUSH_TIMEOUT", 3.0)
    n = 10
    f = (n - 1) // 3
    with trio.fail_after(120):
        async with inprocess_network(7, n, tmp_path) as cluster:
            nodes = cluster.alive()
            # Nodes holding up to f shards refuse: the others hold n - f, and the store returns.
            few, held = nodes_holding_at_most(nodes, f)
            assert few and held <= f
            for node in few:
                refuse_certificates(node)
            async with open_client(cluster.net) as client:
                result = await client.store(os.urandom(5000))
                holders = [nd for nd in nodes if result.blob_id in nd.certs]
                assert sum(len(nd.my_shards()) for nd in holders) >= quorum(n)
                # Now more than f shards' holders refuse: a reader might miss it, the store fails.
                for node in sorted(nodes[1:], key=lambda nd: -len(nd.my_shards()))[:3]:
                    refuse_certificates(node)
                refusing = [nd for nd in nodes if "accept_certificate" in vars(nd)]
                assert sum(len(nd.my_shards()) for nd in refusing) > f
                with pytest.raises(NotEnoughShardsError, match="certificate is held by the holders of only"):
                    await client.store(os.urandom(5000))


async def test_a_node_that_does_not_know_the_signers_learns_them_before_judging(tmp_path):
    with trio.fail_after(120):
        async with inprocess_network(5, 10, tmp_path) as cluster:
            nodes = cluster.alive()
            async with open_client(cluster.net) as client:
                result = await client.store(os.urandom(3000))
                late = nodes[3]  # not the bootstrap node
                late.certs.pop(result.blob_id)
                # As if it had not learnt of the others yet: its only view is a map of itself,
                # where the certificate's signers hold nothing.
                late.certcheck.set_map(compute_shard_map([late.peer_id], 10))
                late.certcheck._replaced.clear()
                late._learnt_at = -1e9
                held = await client.publish_certificate(result.certificate)
                assert late.peer_id in held and result.blob_id in late.certs


async def test_slivers_of_an_upload_never_certified_are_deleted_after_the_grace(tmp_path):
    net = make_network(10, timings=Timings(uncertified_grace=2.0))
    with trio.fail_after(120):
        async with inprocess_network(4, 10, tmp_path, net=net) as cluster:
            nodes = cluster.alive()
            async with open_client(cluster.net) as client:
                kept = await client.store(os.urandom(4000))
                # An interrupted store: slivers uploaded, no certificate published.
                enc = rs2.encode_blob(os.urandom(4000), 10)
                smap = await client.refresh_membership()
                plan = {nd: [rs2.pair_for_shard(s, enc.blob_id, 10) for s in smap.shards_of(nd)] for nd in smap.nodes}
                epoch = cluster.net.current_epoch()
                got, _ = await client._upload_round(enc, smap, plan, epoch, epoch + 1, False, 10, {},
                                                    client_mod.Progress())
                assert got
                assert any(nd.store.has_blob(enc.blob_id) for nd in nodes)
                with trio.fail_after(20):
                    while any(nd.store.has_blob(enc.blob_id) for nd in nodes):
                        await trio.sleep(0.2)
                assert sum(nd.counters["uncertified_deleted"] for nd in nodes) >= 1
                # The certified blob stays.
                assert all(kept.blob_id in nd.certs for nd in nodes)
                assert await client.read(kept.blob_id)


async def test_a_pushed_certificate_is_gossiped_by_few_nodes_and_reaches_one_the_client_missed(tmp_path, monkeypatch):
    from p2pwalrus.node import cert_registry

    # A wide range of pauses: the first node's message reaches the others well before most of
    # their own fall due, even on a busy machine.
    monkeypatch.setattr(cert_registry, "PUSHED_GOSSIP_DELAY", (1.0, 6.0))
    with trio.fail_after(120):
        async with inprocess_network(7, 10, tmp_path) as cluster:
            nodes = cluster.alive()
            missed = nodes[-1]
            refuse_certificates(missed)  # the client's push fails there; gossip still reaches it
            async with open_client(cluster.net) as client:
                result = await client.store(os.urandom(5000))
            while result.blob_id not in missed.certs or any(nd.certificates.gossip_pending() for nd in nodes):
                await trio.sleep(0.1)
            pushed = [nd for nd in nodes if nd is not missed]
            gossiped = sum(nd.counters["certs_gossiped"] for nd in pushed)
            suppressed = sum(nd.counters["certs_gossip_suppressed"] for nd in pushed)
            # Every node the push reached either gossiped it or heard it by gossip first; at
            # least one gossiped (the node it missed has it), and not all of them did.
            assert gossiped + suppressed == len(pushed)
            assert 1 <= gossiped < len(pushed)
            assert missed.counters["certs_gossiped"] == 0  # it had it by gossip, not by a push
