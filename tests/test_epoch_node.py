"""Epoch changes on storage nodes: the opt-in runner on the full node stack, in one trio process.

Four StorageNodes (host, membership, liveness, stores) with `attach_epochs` decide an
epoch change at the start of every epoch of a 2-second clock, one of them a stake
change; a fifth node, outside the committee and started late, pulls the decided chain
and verifies it from the genesis digest; a member restarted on its data dir comes back
with its chain from disk and keeps deciding with the others.
"""

from __future__ import annotations

import trio

from netlab import inprocess
from p2pwalrus.core.wal.agreement import Timeouts
from p2pwalrus.core.wal.epoch_state import genesis_state, next_state, verify_chain
from p2pwalrus.node.epoch_service import attach_epochs
from p2pwalrus.p2p.identity import load_or_create_identity, peer_id_of

WAL = 10**9
FAST = Timeouts(propose=0.6, prevote=0.3, precommit=0.3, delta=0.2)


async def _until_epoch(runner, epoch: int) -> None:
    await runner.started.wait()
    while runner.service.current.epoch < epoch:
        await runner.service.changed.wait()


async def test_storage_nodes_decide_epoch_changes_on_their_clock_and_a_late_newcomer_verifies_the_chain(tmp_path):
    peers = [str(peer_id_of(load_or_create_identity(tmp_path / f"node{i:03d}"))) for i in range(4)]
    genesis = genesis_state("local", 16, {p: 100 * WAL for p in peers})

    def propose(current):
        stakes = dict(current.stakes)
        if current.epoch == 1:  # the change to epoch 2 triples one node's stake
            stakes[peers[0]] = 300 * WAL
        return next_state(current, stakes)

    net = inprocess.test_network(16, epoch_length=2.0)
    runners = {}

    def configure(node):
        runners[node.peer_id] = attach_epochs(node, genesis, propose=propose, timeouts=FAST, gossip_every=0.3)

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            cluster = inprocess.Cluster(net, tmp_path, nursery, configure=configure)
            for _ in range(4):
                await cluster.start()
            for p in peers:
                await _until_epoch(runners[p], 3)
            chains = {tuple(s for s, _ in runners[p].service.links[:3]) for p in peers}
            assert len(chains) == 1
            (chain,) = chains
            assert chain[1].weights[peers[0]] > chain[1].weights[peers[1]]  # shards followed stake
            newcomer = await cluster.start()
            assert newcomer.peer_id not in peers
            late = runners[newcomer.peer_id]
            await _until_epoch(late, 3)
            assert tuple(s for s, _ in late.service.links[:3]) == chain
            assert verify_chain(genesis.digest, genesis, late.service.links)  # its own check, again
            # A committee member restarts: its chain comes back from its disk, verified, and it
            # takes part in the next changes.
            await cluster.kill(1)
            restarted = await cluster.start(1)
            again = runners[restarted.peer_id]
            await again.started.wait()
            assert again.service.current.epoch >= 3 and tuple(s for s, _ in again.service.links[:3]) == chain
            target = again.service.current.epoch + 2
            for p in peers:
                await _until_epoch(runners[p], target)
            assert len({runners[p].service.links[target - 1][0] for p in peers}) == 1
            nursery.cancel_scope.cancel()
