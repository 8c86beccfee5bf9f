"""Quilts through real nodes on loopback (in one trio process): one file of a stored quilt
reads back alone, byte-exact, from the secondary slivers of its own columns."""

from __future__ import annotations

import os

import trio

from netlab.inprocess import inprocess_network
from p2pwalrus.client.client import open_client
from p2pwalrus.client.quilts import QuiltReader, group_for_quilts, size_class, store_quilt, store_quilts
from p2pwalrus.core import quilt as q
from p2pwalrus.core import rs2


async def test_any_one_file_of_a_quilt_reads_back_alone_byte_exact(tmp_path):
    n = 13  # 9 columns: up to 8 files a quilt
    files = {f"f{i}.bin": os.urandom(1024 * (1 + i)) for i in range(8)}
    with trio.fail_after(120):
        async with inprocess_network(5, n, tmp_path) as cluster:
            async with open_client(cluster.net) as client:
                stored = await store_quilt(client, [q.QuiltBlob(k, v, {"i": k}) for k, v in files.items()], epochs=2)
                assert not stored.result.already_certified
                again = await store_quilt(client, [q.QuiltBlob(k, v, {"i": k}) for k, v in files.items()], epochs=2)
                assert again.quilt_id == stored.quilt_id and again.result.already_certified

            for name, data in files.items():  # each from a fresh client: nothing cached
                async with open_client(cluster.net) as client:
                    reader = QuiltReader(client)
                    got = await reader.read(stored.quilt_id, name)
                    patch = stored.index.by_identifier(name)
                    assert got.data == data and got.identifier == name and dict(got.tags) == {"i": name}
                    # the index's column and the file's own columns, nothing else, and no decode
                    assert {c for _, c in reader.fetched} == {0} | set(patch.columns)
                    assert reader.whole_reads == []

            async with open_client(cluster.net) as client:  # by patch ID: its columns only
                reader = QuiltReader(client)
                pid = q.QuiltPatchId.parse(str(stored.patch_id("f5.bin")))
                got = await reader.read_by_id(pid)
                assert got.data == files["f5.bin"]
                assert [c for _, c in reader.fetched] == list(stored.index.by_identifier("f5.bin").columns)

            # A holder of the file's column serves corrupt slivers: the reader notices (the
            # sliver does not verify) and reads the quilt whole instead, still byte-exact.
            patch = stored.index.by_identifier("f7.bin")
            pair = n - 1 - patch.start_index
            nodes = cluster.alive()
            holder = nodes[0].shard_map.owner(rs2.shard_for_pair(pair, stored.quilt_id, n))
            liar = next(node for node in nodes if node.peer_id == holder)
            liar.faults.add("corrupt_slivers")
            async with open_client(cluster.net) as client:
                reader = QuiltReader(client)
                got = await reader.read(stored.quilt_id, "f7.bin")
                assert got.data == files["f7.bin"] and reader.whole_reads == [stored.quilt_id]


async def test_many_small_files_go_into_few_quilts_and_a_changed_file_changes_one_quilt(tmp_path):
    n = 10
    files = [q.QuiltBlob(f"dir/file-{i:03d}.txt", os.urandom(100 + 37 * i)) for i in range(40)]
    groups = group_for_quilts(files, n)
    assert sum(len(g) for g in groups) == 40 and all(len(g) <= q.max_patches(n) for g in groups)
    assert len(groups) < 20
    changed = list(files)
    changed[17] = q.QuiltBlob(files[17].identifier, os.urandom(len(files[17].data)))  # same size, new bytes
    regrouped = group_for_quilts(changed, n)
    assert len(groups) == len(regrouped) and sum(a != b for a, b in zip(groups, regrouped)) == 1
    resized = list(files)
    resized[17] = q.QuiltBlob(files[17].identifier, b"changed")  # another size class: it joins another group
    touched = {size_class(files[17].serialized_size()), size_class(resized[17].serialized_size())}
    new_groups = group_for_quilts(resized, n)
    for g in groups:  # the groups of every other size class are the same quilts as before
        if size_class(g[0].serialized_size()) not in touched:
            assert g in new_groups
    with trio.fail_after(120):
        async with inprocess_network(4, n, tmp_path) as cluster:
            async with open_client(cluster.net) as client:
                first = await store_quilts(client, files, epochs=1)
                before = sum(node.counters["store_requests"] for node in cluster.alive())
                second = await store_quilts(client, changed, epochs=1)
                uploads = sum(node.counters["store_requests"] for node in cluster.alive()) - before
                fresh = [s for s in second if not s.result.already_certified]
                assert len(fresh) == 1 and len(second) == len(first)
                assert uploads <= len(cluster.alive())  # one quilt's upload: one stream per node at most
                reader = QuiltReader(client)
                got = await reader.read(fresh[0].quilt_id, files[17].identifier)
                assert got.data == changed[17].data
