"""Write and read through real nodes on loopback (in one trio process)."""

import os

import pytest
import trio

from netlab.inprocess import inprocess_network
from p2pwalrus.client.client import open_client
from p2pwalrus.core import rs2
from p2pwalrus.core.placement import PlacementError
from p2pwalrus.gateway.walrus_json import blob_store_json


async def test_store_8mib_then_read_back_exact_even_with_two_nodes_killed(tmp_path):
    data = os.urandom(8 << 20)
    with trio.fail_after(180):
        async with inprocess_network(10, 31, tmp_path) as cluster:
            async with open_client(cluster.net) as client:
                result = await client.store(data, epochs=2)
                assert result.shards_confirmed >= 31 - 10
                assert await client.read(result.blob_id) == data
            survivor = cluster.slots[5].node.node.listen_addrs()[0]
            await cluster.kill(0)
            await cluster.kill(1)
            async with open_client(cluster.net.with_bootstrap([survivor])) as client:
                assert await client.read(result.blob_id) == data


async def test_a_store_just_after_nodes_die_waits_for_the_live_set_to_drop_them(tmp_path):
    # Killed nodes stay in every live set for member_ttl; a store in that window that
    # cannot reach n - f shards without them asks for the live set again instead of failing.
    data = os.urandom(100_000)
    n, need = 10, 7
    with trio.fail_after(120):
        async with inprocess_network(7, n, tmp_path) as cluster:
            nodes = cluster.alive()
            by_load = sorted(range(1, len(nodes)), key=lambda i: -len(nodes[i].my_shards()))
            victims, lost = [], 0
            for i in by_load:  # more than f shards' holders, leaving 4 nodes (none may hold n - 2f)
                if lost > n - need or len(victims) == 3:
                    break
                victims.append(i)
                lost += len(nodes[i].my_shards())
            assert lost > n - need
            dead = {nodes[i].peer_id for i in victims}
            for i in victims:
                await cluster.kill(i)
            async with open_client(cluster.net) as client:  # node 0 still lists the dead
                await client.refresh_membership()
                assert dead <= set(client.live_peers())
                result = await client.store(data, epochs=1)
                # With every dead node in its map no quorum is possible: the store went on once
                # the live set had dropped at least one (under load they leave it one at a time,
                # and a map still listing one holding few shards can reach n - f).
                assert dead - set(result.certificate.members)
                assert not dead & {c.peer_id for c in result.certificate.confirmations}
                assert await client.read(result.blob_id) == data


async def test_read_is_exact_when_f_shards_holders_return_corrupt_slivers(tmp_path):
    data = os.urandom(300_000)
    n = 31
    f = (n - 1) // 3
    with trio.fail_after(120):
        async with inprocess_network(10, n, tmp_path) as cluster:
            async with open_client(cluster.net) as client:
                result = await client.store(data, epochs=1)
                # Make liars of nodes holding up to f shards, the systematic pairs first.
                smap = client.shard_map
                owners = [smap.owner(rs2.shard_for_pair(p, result.blob_id, n)) for p in range(n)]
                liars, lied = [], 0
                for owner in dict.fromkeys(owners):
                    count = len(smap.shards_of(owner))
                    if lied + count <= f:
                        liars.append(owner)
                        lied += count
                assert lied >= 1
                for node in cluster.alive():
                    if node.peer_id in liars:
                        node.faults.add("corrupt_slivers")
                assert await client.read(result.blob_id) == data


async def test_storing_the_same_file_twice_answers_already_certified_without_upload(tmp_path):
    data = os.urandom(50_000)
    with trio.fail_after(120):
        async with inprocess_network(5, 10, tmp_path) as cluster:
            async with open_client(cluster.net) as client:
                first = await client.store(data, epochs=3)
                assert not first.already_certified
                requests = sum(n.counters["store_requests"] for n in cluster.alive())
                again = await client.store(data, epochs=2)
                assert again.already_certified
                assert blob_store_json(again)["alreadyCertified"]["endEpoch"] == first.certificate.end_epoch
                assert sum(n.counters["store_requests"] for n in cluster.alive()) == requests
                longer = await client.store(data, epochs=5)  # a longer period is stored again
                assert not longer.already_certified


async def test_store_refuses_a_network_too_small_to_keep_slivers_apart(tmp_path):
    with trio.fail_after(60):
        async with inprocess_network(2, 10, tmp_path) as cluster:
            async with open_client(cluster.net) as client:
                with pytest.raises(PlacementError, match="enough to decode a blob alone"):
                    await client.store(b"secret", epochs=1)


async def test_blob_status_counts_shards_and_names_unknown_blobs(tmp_path):
    with trio.fail_after(120):
        async with inprocess_network(5, 10, tmp_path) as cluster:
            async with open_client(cluster.net) as client:
                result = await client.store(os.urandom(10_000), epochs=1)
                status = await client.blob_status(result.blob_id)
                assert status["status"] == "certified"
                assert status["shards_stored"] == 10
                missing = await client.blob_status(bytes(32))
                assert missing["status"] == "nonexistent" and missing["shards_stored"] == 0
