"""Epochs wired into nodes of a network with a genesis, through real nodes on 127.0.0.1.

Five storage nodes in one trio process, four of them the genesis committee, epochs of a few
seconds: a wallet stakes the fifth node in and the key of a genesis node unstakes it out.
Each stake change goes into the next decided state through the ledger; the shards follow
the decided state (the newcomer gets some, the leaver none), the ledger's weights follow
it, a blob stored before the changes stays fully stored (every shard's holder of the
current state holds its pair) and readable, and WAL is conserved at every node.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import trio

from netlab import inprocess
from p2pwalrus.client.client import open_client
from p2pwalrus.client.wallet import Wallet
from p2pwalrus.core.wal.committee import committee_from_state
from p2pwalrus.core.wal.epoch_map import shard_map_of
from p2pwalrus.core.wal.epoch_state import verify_chain
from p2pwalrus.core.wal.genesis import make_genesis
from p2pwalrus.core.wal.ledger import check_conservation
from p2pwalrus.p2p.identity import load_or_create_identity, peer_id_of

from .wal_helpers import address, expect_refusal, key
from p2pwalrus.core import protocols

WAL = 10**9
USER = key(300)
N_SHARDS = 10
EPOCH = 3.0


def epoch_net(base: Path, n_committee: int, n_nodes: int, epoch_length: float = EPOCH):
    keys = [load_or_create_identity(base / f"node{i:03d}") for i in range(n_nodes)]
    ids = [str(peer_id_of(k)) for k in keys]
    net = inprocess.test_network(N_SHARDS, epoch_length=epoch_length)
    net = replace(net, genesis_time=time.time() - 0.5)
    genesis = make_genesis(network=net.name, n_shards=N_SHARDS, genesis_time=net.genesis_time,
                           epoch_length=net.epoch_length, committee=[(p, 100 * WAL) for p in ids[:n_committee]],
                           accounts=[(address(USER), 1000 * WAL)],
                           parameters={"max_epochs_ahead": net.max_epochs_ahead})
    return replace(net, genesis=genesis), ids, keys


async def until(predicate, timeout: float, poll: float = 0.2, *, failing: str = "",
                explain=None) -> None:
    """Until predicate() holds (state spread over many nodes and events: polled, bounded).
    With ``failing``, a timeout is an AssertionError saying so, with ``explain()`` (the
    nodes' state at that moment) when given."""
    try:
        with trio.fail_after(timeout):
            while not predicate():
                await trio.sleep(poll)
    except trio.TooSlowError:
        if not failing:
            raise
        raise AssertionError(f"{failing}: {explain()}" if explain else failing) from None


def decided(cluster) -> dict[str, int]:
    return {n.peer_id: n.epochs.current.epoch for n in cluster.alive()}


def fully_stored(cluster, blob_id: bytes) -> bool:
    """Every shard of the current decided state is held (both slivers) by its holder."""
    nodes = {n.peer_id: n for n in cluster.alive()}
    states = {n.epochs.current.digest for n in nodes.values()}
    if len(states) != 1:
        return False
    smap = shard_map_of(next(iter(nodes.values())).epochs.current)
    for shard in range(N_SHARDS):
        holder = nodes.get(smap.owner(shard))
        if holder is None or holder.store.shards_stored(blob_id).get(shard, set()) != {"primary", "secondary"}:
            return False
    return True


async def test_stake_in_and_unstake_out_move_shards_at_epoch_changes_and_blobs_stay_stored(tmp_path):
    net, ids, keys = epoch_net(tmp_path / "n", 4, 5)
    newcomer, leaver = ids[4], ids[0]
    data = os.urandom(50_000)
    # Each wait below spans several 3 s epochs: under a loaded machine a change can take a few
    # rounds (a node whose ledger has not confirmed the stake yet refuses the proposal).
    with trio.fail_after(100):
        async with inprocess.inprocess_network(5, N_SHARDS, tmp_path / "n", net=net) as cluster:
            nodes = {n.peer_id: n for n in cluster.alive()}
            assert not nodes[newcomer].my_shards()  # no stake, no shards: it runs and serves all the same
            async with open_client(cluster.net, USER) as client:
                await client.refresh_membership()
                result = await client.store(data, epochs=100)
                blob_id = result.blob_id
                wallet = Wallet(client, USER, tmp_path / "w")
                await wallet.stake(newcomer, 100 * WAL)
                # The stake goes into the next decided state: the newcomer joins with shards.
                await until(lambda: all(newcomer in n.epochs.current.stakes for n in cluster.alive()), 30,
                            failing="the stake never reached every decided state",
                            explain=lambda: [(n.epochs.current.epoch, newcomer in n.epochs.current.stakes,
                                              n.epochs.changes[-3:]) for n in cluster.alive()])
                joined = nodes[newcomer].epochs.current
                assert len(joined.shards_by_node[newcomer]) >= 2
                assert nodes[newcomer].my_shards() == joined.shards_by_node[newcomer]
                assert nodes[ids[1]].ledger.committee == committee_from_state(joined)
                await until(lambda: fully_stored(cluster, blob_id), 20)

                # The genesis node's own key unstakes it out (its account first gets a little WAL).
                await wallet.transfer(leaver, WAL)
                await client.refresh_membership()
                node_wallet = Wallet(client, keys[0], tmp_path / "w0")
                await node_wallet.unstake(leaver, 100 * WAL)
                await until(lambda: all(leaver not in n.epochs.current.stakes for n in cluster.alive()), 30,
                            failing="the unstake never reached every decided state",
                            explain=lambda: [(n.epochs.current.epoch, leaver in n.epochs.current.stakes,
                                              n.ledger.node_stakes().get(leaver), n.epochs.changes[-3:])
                                             for n in cluster.alive()])
                # 20 s was not always enough in CI, with one core kept busy and tests in parallel.
                await until(lambda: fully_stored(cluster, blob_id), 40, failing="not fully stored after the unstake",
                            explain=lambda: [(n.epochs.current.epoch, n.my_shards(), n.store.shards_stored(blob_id),
                                              n.repair.stats) for n in cluster.alive()])
                assert not nodes[leaver].my_shards()
                # Handed over: the leaver dropped its pairs once their new holders had them.
                lv = nodes[leaver]
                await until(lambda: not lv.store.shards_stored(blob_id), 15, failing="the leaver kept its pairs",
                            explain=lambda: (f"{lv.store.shards_stored(blob_id)}; repair {lv.repair.stats} pending "
                                             f"{lv.repair.handoffs_pending}; map {lv.shard_map.digest().hex()[:8]} "
                                             f"epoch {lv.epochs.current.epoch}; others "
                                             f"{[(n.epochs.current.epoch, n.shard_map.digest().hex()[:8], n.my_shards()) for n in cluster.alive()]}"))

            # A fresh client learns the decided state (verified from genesis) and reads.
            async with open_client(cluster.net) as reader:
                await reader.refresh_membership()
                assert reader.epochs.current.epoch >= 2
                assert reader.shard_map.digest() == shard_map_of(reader.epochs.current).digest()
                assert await reader.read(blob_id) == data
                status = await reader.blob_status(blob_id)
                assert status["shards_stored"] == N_SHARDS
            heads = {n.epochs.current.epoch for n in cluster.alive()}
            top = min(heads)
            assert len({n.epochs.state_for(top).digest for n in cluster.alive()}) == 1  # one chain
            svc = nodes[ids[2]].epochs.service
            assert verify_chain(svc.genesis.digest, svc.genesis, svc.links, chain=net.genesis.hash())
            for n in cluster.alive():
                check_conservation(n.ledger.ledger)


async def _cli(*args: str, net_file: Path, client_dir: Path):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "P2PWALRUS_NETWORK")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    env["P2PWALRUS_CLIENT_DIR"] = str(client_dir)
    return await trio.run_process([sys.executable, "-m", "p2pwalrus", *args, "--network", str(net_file)],
                                  capture_stdout=True, capture_stderr=True, check=False, env=env,
                                  stdin=subprocess.DEVNULL)


async def test_committee_command_shows_the_decided_committee_verified_from_genesis(tmp_path):
    import json

    from p2pwalrus.config import network_to_toml
    from p2pwalrus.core.wal.epoch_state import genesis_state_from

    net, ids, _ = epoch_net(tmp_path / "n", 4, 4, epoch_length=2.0)
    with trio.fail_after(55):
        async with inprocess.inprocess_network(4, N_SHARDS, tmp_path / "n", net=net) as cluster:
            await until(lambda: all(e >= 1 for e in decided(cluster).values()), 15)
            net_file = tmp_path / "network.toml"
            net_file.write_text(network_to_toml(cluster.net))
            res = await _cli("committee", "--json", net_file=net_file, client_dir=tmp_path / "c")
            assert res.returncode == 0, res.stderr
            out = json.loads(res.stdout)
            node = cluster.alive()[0]
            state = node.epochs.state_for(out["epoch"])
            assert out["epoch"] >= 1 and out["digest"] == state.digest.hex()
            assert sorted(m["peer_id"] for m in out["members"]) == sorted(ids)
            assert all(m["stake"] == 100 * WAL and m["live"] for m in out["members"])
            assert sum(m["shards"] for m in out["members"]) == N_SHARDS and out["quorum_shards"] == 7
            # The states this client verified are kept beside its key: the next command starts from them.
            assert len(list((tmp_path / "c" / "epochs").rglob("state-*.json"))) >= out["epoch"]
            res = await _cli("committee", "--epoch", "0", "--json", net_file=net_file, client_dir=tmp_path / "c")
            assert json.loads(res.stdout)["digest"] == genesis_state_from(net.genesis).digest.hex()
            res = await _cli("committee", "--epoch", "0", net_file=net_file, client_dir=tmp_path / "c")
            assert res.returncode == 0 and "epoch 0 of" in res.stdout.decode() and "100 WAL" in res.stdout.decode()
            res = await _cli("info", "--json", net_file=net_file, client_dir=tmp_path / "c")
            info = json.loads(res.stdout)
            assert info["decided_epoch"] >= 1
            assert all(info["nodes"][p]["shards"] == list(node.epochs.state_for(info["decided_epoch"]).shards_by_node[p])
                       for p in ids)
            res = await _cli("committee", "--epoch", "999", net_file=net_file, client_dir=tmp_path / "c")
            err = res.stderr.decode().strip().splitlines()
            assert res.returncode == 1 and len(err) == 1, res.stderr
            assert "epoch 999 is not decided yet" in err[0] and "latest decided epoch is" in err[0]


async def test_a_partition_without_a_quorum_side_stalls_the_epoch_change_until_it_heals(tmp_path):
    net, ids, _ = epoch_net(tmp_path / "n", 4, 4, epoch_length=2.0)
    with trio.fail_after(55):
        async with inprocess.inprocess_network(4, N_SHARDS, tmp_path / "n", net=net) as cluster:
            await until(lambda: all(e >= 1 for e in decided(cluster).values()), 15)
            nodes = cluster.alive()
            sides = [ids[:2], ids[2:]]  # 2 + 2 nodes: neither side weighs n - f = 7 of 10 shards
            for node in nodes:
                node._apply_faults({"deny": [p for side in sides if node.peer_id not in side for p in side]})
            at_split = max(decided(cluster).values())
            await trio.sleep(3 * net.epoch_length)  # epochs go by on the clock; nobody may decide one
            stalled = decided(cluster)
            assert max(stalled.values()) <= at_split + 1  # (one change may have been under way at the split)
            for epoch in set(stalled.values()):
                assert len({n.epochs.state_for(epoch).digest for n in nodes if n.epochs.state_for(epoch)}) == 1
            assert net.current_epoch() > max(stalled.values()) + 1
            for node in nodes:
                node._apply_faults({"deny": []})
            # Healed: the change completes, every node learns the epochs it missed, one chain.
            target = net.current_epoch()
            await until(lambda: all(e >= target for e in decided(cluster).values()), 30)
            for epoch in range(1, target + 1):
                assert len({n.epochs.state_for(epoch).digest for n in nodes}) == 1
            assert len({n.shard_map.digest() for n in nodes}) <= 2  # (one may be a change ahead)


async def test_shards_of_a_holder_that_is_gone_at_the_change_are_rebuilt_from_recovery_symbols(tmp_path):
    net, ids, keys = epoch_net(tmp_path / "n", 5, 5)
    leaver = ids[4]
    data = os.urandom(40_000)
    with trio.fail_after(55):
        async with inprocess.inprocess_network(5, N_SHARDS, tmp_path / "n", net=net) as cluster:
            nodes = {n.peer_id: n for n in cluster.alive()}
            async with open_client(cluster.net, USER) as client:
                await client.refresh_membership()
                blob_id = (await client.store(data, epochs=100)).blob_id
                await until(lambda: fully_stored(cluster, blob_id), 15)
                await wallet_of(client, USER, tmp_path / "w").transfer(leaver, WAL)
                await wallet_of(client, keys[4], tmp_path / "w4").unstake(leaver, 100 * WAL)
            lost = set(nodes[leaver].my_shards())
            assert lost
            await cluster.kill(4)  # gone before the change: its shards' new holders cannot copy them
            alive = [n for n in cluster.alive()]
            before = {n.peer_id: dict(n.repair.stats) for n in alive}
            await until(lambda: all(leaver not in n.epochs.current.stakes for n in alive), 15)
            await until(lambda: fully_stored(cluster, blob_id), 20)
            restored = sum(n.repair.stats["pairs_restored"] - before[n.peer_id]["pairs_restored"] for n in alive)
            synced = sum(n.repair.stats["pairs_synced"] - before[n.peer_id]["pairs_synced"] for n in alive)
            assert restored >= len(lost) and synced < restored  # rebuilt from symbols, not copied
            async with open_client(cluster.net) as reader:
                await reader.refresh_membership()
                assert await reader.read(blob_id) == data
            for n in alive:
                check_conservation(n.ledger.ledger)


def wallet_of(client, keypair, journal: Path) -> Wallet:
    return Wallet(client, keypair, journal)


async def test_a_network_without_a_genesis_keeps_live_set_hashing_and_runs_no_epochs(tmp_path):
    from p2pwalrus.core.placement import compute_shard_map

    net = inprocess.test_network(N_SHARDS, epoch_length=1.0)  # short epochs: nothing may follow them
    with trio.fail_after(40):
        async with inprocess.inprocess_network(3, N_SHARDS, tmp_path / "n", net=net) as cluster:
            nodes = cluster.alive()
            for n in nodes:
                assert n.epochs is None and n.ledger is None and n.status()["epochs"] is None
                assert n.shard_map.digest() == compute_shard_map([m.peer_id for m in nodes], N_SHARDS).digest()
            async with open_client(cluster.net) as client:
                await client.refresh_membership()
                assert client.epochs is None and client.shard_map.digest() == nodes[0].shard_map.digest()


async def test_a_node_signs_the_identical_order_again_after_epochs_went_by_and_no_other(tmp_path):
    from p2pwalrus.core.wal.orders import Order, OrderKind, Vote, sign_order

    net, ids, _ = epoch_net(tmp_path / "n", 4, 4, epoch_length=2.0)
    with trio.fail_after(50):
        async with inprocess.inprocess_network(4, N_SHARDS, tmp_path / "n", net=net) as cluster:
            nodes = {n.peer_id: n for n in cluster.alive()}
            epoch = nodes[ids[0]].epochs.current.epoch
            order = sign_order(USER, Order(net.genesis.hash(), epoch, address(USER), 0, ids[1], WAL, OrderKind.TRANSFER))
            async with open_client(cluster.net, USER) as client:
                await client.refresh_membership()
                first = await client.call(ids[0], protocols.LEDGER_SIGN, {"signed": order.to_json()})
                assert first["ok"]
                await until(lambda: all(e >= epoch + 2 for e in decided(cluster).values()), 20)
                again = await client.call(ids[0], protocols.LEDGER_SIGN, {"signed": order.to_json()})
                assert again["ok"] and Vote.from_json(again["vote"]) == Vote.from_json(first["vote"])
                await expect_refusal(client, ids[2], protocols.LEDGER_SIGN, {"signed": order.to_json()}, code="wrong_epoch")
