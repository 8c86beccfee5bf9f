"""Repair without a coordinator, through real nodes on loopback (one trio process)."""

import os

import pytest
import trio

from netlab.inprocess import inprocess_network
from p2pwalrus.client.client import BlobInvalidError, open_client
from p2pwalrus.core import rs2
from p2pwalrus.core.repair_plan import BlobView, plan_repairs
from p2pwalrus.core.placement import compute_shard_map
from p2pwalrus.core.testing import make_inconsistent_blob

N_NODES, N_SHARDS = 10, 31


def survivor_net(cluster):
    addr = next(n.node.listen_addrs()[0] for n in cluster.alive())
    return cluster.net.with_bootstrap([addr])


async def all_stored(cluster, blob_ids):
    async with open_client(survivor_net(cluster)) as client:
        for blob_id in blob_ids:
            status = await client.blob_status(blob_id)
            if status["shards_stored"] != N_SHARDS:
                return False
    return True


def repair_events(cluster):
    return [(node.peer_id, *e) for node in cluster.alive() for e in node.repair.events]


async def test_killed_nodes_shards_are_rebuilt_within_120s_by_their_new_holders(tmp_path):
    blobs = [os.urandom(size) for size in (150_000, 400_000, 1)]
    with trio.fail_after(240):
        async with inprocess_network(N_NODES, N_SHARDS, tmp_path) as cluster:
            async with open_client(cluster.net) as client:
                ids = [(await client.store(b, epochs=2)).blob_id for b in blobs]
            await cluster.wait_until(lambda: all_stored(cluster, ids), 60)
            for node in cluster.alive():
                node.repair.events.clear()
            # Two nodes that hold shards (about one node in 25 holds none at 10 nodes and 31
            # shards): killing a node without shards would leave nothing to repair.
            victims = [i for i, n in enumerate(cluster.alive()) if n.my_shards()][:2]
            for i in victims:
                await cluster.kill(i)
            # The 120 s bound is wait_until's deadline: past it, it raises TooSlowError (a
            # `took < 120` check after it could never fail); name the failure instead.
            try:
                await cluster.wait_until(lambda: all_stored(cluster, ids), 120)
            except trio.TooSlowError:
                pytest.fail(f"the shards of killed nodes {victims} were not all stored again within 120 s")
            async with open_client(survivor_net(cluster)) as client:
                for blob_id, data in zip(ids, blobs):
                    assert await client.read(blob_id) == data
            events = repair_events(cluster)
            assert events, "the killed nodes' shards were restored by repair"
            # Traffic per restored pair: at most 3x the pair's size, where symbols outweigh
            # their Merkle proofs (a 1-byte blob has 2-byte symbols and 160-byte proofs).
            for _, _, _, _, _, moved, pair_bytes in events:
                if pair_bytes >= 16_000:
                    assert moved <= 3 * pair_bytes
            # No two nodes repaired the same shard of the same blob at once.
            by_key = {}
            for peer, blob, shard, start, end, _, _ in events:
                by_key.setdefault((blob, shard), []).append((start, end, peer))
            for spans in by_key.values():
                spans.sort()
                for (s1, e1, p1), (s2, e2, p2) in zip(spans, spans[1:]):
                    assert p1 == p2 or s2 >= e1


async def test_node_down_during_a_write_catches_up_when_it_returns(tmp_path):
    data = os.urandom(200_000)
    with trio.fail_after(180):
        async with inprocess_network(N_NODES, N_SHARDS, tmp_path) as cluster:
            # A node that holds shards in the full network's map (about one node in 25 holds
            # none at 10 nodes and 31 shards): back in the same network, it holds them again.
            victim = next(i for i, n in enumerate(cluster.alive()) if i > 0 and n.my_shards())
            await cluster.kill(victim)
            async with open_client(survivor_net(cluster)) as client:
                blob_id = (await client.store(data, epochs=2)).blob_id
            await cluster.start(victim)
            back = cluster.slots[victim].node
            # Every node's map must hold the returning node first: before that, the survivors
            # own its shards and "all stored" is already true without it catching up at all.
            await cluster.wait_converged(60)
            await cluster.wait_until(lambda: all_stored(cluster, [blob_id]), 120)
            mine = back.my_shards()
            assert mine and all(s in back.held_pairs(blob_id) for s in mine)


async def test_wiped_node_refills_its_shards(tmp_path):
    data = os.urandom(250_000)
    with trio.fail_after(180):
        async with inprocess_network(N_NODES, N_SHARDS, tmp_path) as cluster:
            async with open_client(cluster.net) as client:
                blob_id = (await client.store(data, epochs=2)).blob_id
            await cluster.wait_until(lambda: all_stored(cluster, [blob_id]), 60)
            peer = cluster.slots[4].node.peer_id
            await cluster.kill(4)
            cluster.wipe(4)
            assert not (cluster.slots[4].data_dir / "store").exists()  # its disk is empty
            node = await cluster.start(4)  # (repair may already have begun when this returns)
            assert node.peer_id == peer
            await cluster.wait_until(lambda: all_stored(cluster, [blob_id]), 120)
            assert node.held_pairs(blob_id) == sorted(node.my_shards())
            assert node.repair.stats["pairs_restored"] >= len(node.my_shards())


async def test_inconsistent_blob_ends_up_invalid_on_every_node(tmp_path):
    column = 2
    enc = make_inconsistent_blob(os.urandom(100_000), N_SHARDS, row=0, column=column)
    with trio.fail_after(180):
        async with inprocess_network(N_NODES, N_SHARDS, tmp_path) as cluster:
            async with open_client(cluster.net) as client:
                await client.store_encoded(enc, epochs=2)
                # The holder of the tampered column's pair loses its disk: rebuilding that
                # secondary sliver from primary symbols exposes the bad encoding.
                pair = N_SHARDS - 1 - column
                holder = client.shard_map.owner(rs2.shard_for_pair(pair, enc.blob_id, N_SHARDS))
            index = next(i for i, s in enumerate(cluster.slots) if s.node.peer_id == holder)
            await cluster.kill(index)
            cluster.wipe(index)
            await cluster.start(index)

            async def invalid_everywhere():
                return all(n.is_invalid(enc.blob_id) for n in cluster.alive())

            await cluster.wait_until(invalid_everywhere, 120)
            async with open_client(survivor_net(cluster)) as client:
                assert (await client.blob_status(enc.blob_id))["status"] == "invalid"
                try:
                    await client.read(enc.blob_id)
                except BlobInvalidError:
                    pass
                else:
                    raise AssertionError("reading an invalid blob must fail")


def test_planner_repairs_only_own_missing_shards_and_syncs_from_live_previous_holder():
    nodes = [f"12D3KooWnode{i:02d}" for i in range(6)]
    old = compute_shard_map(nodes, 10)
    # The leaver must own shards: a leaver without any (node05 here) leaves the map as it
    # was, every node plans nothing, and every check below holds vacuously.
    leaver = nodes[1]
    assert old.shards_of(leaver), "the leaver must own shards in the old map"
    survivors = [n for n in nodes if n != leaver]
    new = compute_shard_map(survivors, 10)
    blob = bytes(range(32))
    all_tasks, all_handoffs = [], []
    for me in survivors:
        held = {s: frozenset({"primary", "secondary"}) for s in old.shards_of(me)}
        view = BlobView(blob, end_epoch=5, invalid=False, held=held)
        tasks, handoffs = plan_repairs(me, new, old, set(survivors), [view], current_epoch=1)
        assert {t.shard for t in tasks} == set(new.shards_of(me)) - set(old.shards_of(me))
        for t in tasks:
            prev = old.owner(t.shard)
            assert t.sync_from == (prev if prev in survivors and prev != me else None)
            assert t.pair == rs2.pair_for_shard(t.shard, blob, 10)
            assert t.need_primary and t.need_secondary
        assert {h.shard for h in handoffs} == set(old.shards_of(me)) - set(new.shards_of(me))
        assert all(h.new_holder == new.owner(h.shard) != me for h in handoffs)
        all_tasks += tasks
        all_handoffs += handoffs
        # Expired and invalid blobs are left alone.
        assert plan_repairs(me, new, old, set(survivors), [view], current_epoch=5) == ([], [])
        bad = BlobView(blob, 5, True, held)
        assert plan_repairs(me, new, old, set(survivors), [bad], current_epoch=1) == ([], [])
    # Every shard of the leaver is rebuilt by its new holder (no live previous holder) ...
    rebuilt = {t.shard for t in all_tasks if t.sync_from is None}
    assert rebuilt == set(old.shards_of(leaver))
    # ... and this map change also moved shards between survivors: synced, then handed off.
    synced = {t.shard for t in all_tasks if t.sync_from is not None}
    assert synced and synced == {h.shard for h in all_handoffs}
