"""Votes move the price and the storage fund pays the holders, through epoch changes decided
by storage nodes on 127.0.0.1 (one trio process, issue 16).

Four nodes sign price votes (three vote one price, one an absurd one); each epoch change is
proposed with the gathered votes and this node's ledger (``vote_service.make_proposer``).
The decided price is the quorum-below value, never the absurd one; a store paid before the
change is paid out to the holders' stakers by the decided reward credits, the same numbers
at every node, and WAL is conserved at every node after every change.
"""

from __future__ import annotations

import os
from dataclasses import replace

import trio

from netlab import inprocess
from p2pwalrus.client.client import open_client
from p2pwalrus.core.wal.agreement import Timeouts
from p2pwalrus.core.wal.epoch_state import genesis_state_from
from p2pwalrus.core.wal.genesis import make_genesis
from p2pwalrus.core.wal.ledger import check_conservation
from p2pwalrus.core.wal.pricing import quorum_below, store_cost
from p2pwalrus.p2p.identity import load_or_create_identity, peer_id_of
from p2pwalrus.node.vote_service import ledger_proposer, make_proposer, write_vote

from .wal_helpers import address, key

WAL = 10**9
FAST = Timeouts(propose=0.6, prevote=0.3, precommit=0.3, delta=0.2)
RICH = key(500)
GENESIS_PRICES = (1_000_000, 100_000)
HONEST, ABSURD = (2_000_000, 200_000), ((1 << 64) - 1, (1 << 64) - 1)


def _tune(node, propose):
    """The epoch runner every node of a network with a genesis has, with this test's proposer
    and fast agreement timeouts."""
    runner = node.epochs
    runner.propose, runner.timeouts, runner.gossip_every = propose, FAST, 0.3
    return runner


async def _until(runners, epoch: int) -> None:
    for r in runners:
        await r.started.wait()
        while r.service.current.epoch < epoch:
            await r.service.changed.wait()


async def test_votes_set_the_price_and_the_fund_pays_the_holders(tmp_path):
    n_shards = 10
    keys = [load_or_create_identity(tmp_path / f"node{i:03d}") for i in range(4)]
    peers = [str(peer_id_of(k)) for k in keys]
    net = inprocess.test_network(n_shards, epoch_length=3.0)
    genesis = make_genesis(network=net.name, n_shards=n_shards, genesis_time=net.genesis_time,
                           epoch_length=net.epoch_length, committee=[(p, 100 * WAL) for p in peers],
                           accounts=[(address(RICH), 10 * WAL)], storage_price=GENESIS_PRICES[0],
                           write_price=GENESIS_PRICES[1], parameters={"max_epochs_ahead": net.max_epochs_ahead})
    net = replace(net, genesis=genesis)
    for i, (k, p) in enumerate(zip(keys, peers)):
        storage, write = ABSURD if i == 3 else HONEST
        # three of four (a quorum of weight) propose a shorter max_epochs_ahead; the fourth, a longer one
        write_vote(tmp_path / f"node{i:03d}", k, p, genesis.hash(), storage_price=storage, write_price=write,
                   proposals={"max_epochs_ahead": 9999 if i == 3 else 50})
    state0 = genesis_state_from(genesis)
    assert max(state0.weights.values()) <= (n_shards - 1) // 3  # the absurd voter weighs at most f
    expected = (quorum_below([(ABSURD[0] if p == peers[3] else HONEST[0], w) for p, w in state0.weights.items()],
                             n_shards),
                quorum_below([(ABSURD[1] if p == peers[3] else HONEST[1], w) for p, w in state0.weights.items()],
                             n_shards))
    assert expected == HONEST
    runners = {}

    def configure(node):
        runners[node.peer_id] = _tune(node, make_proposer(node))

    data = os.urandom(150_000)
    with trio.fail_after(150):
        async with trio.open_nursery() as nursery:
            cluster = inprocess.Cluster(net, tmp_path, nursery, configure=configure)
            for _ in range(4):
                await cluster.start()
            await cluster.wait_converged(60)
            nodes = cluster.alive()
            async with open_client(cluster.net, RICH) as client:
                await client.refresh_membership()
                client.payer_journal = tmp_path / "rich"
                first = await client.store(data, epochs=2)
                assert first.cost > 0
                # the votes decide a price within a few changes; the absurd vote never wins
                start = max(r.service.current.epoch for r in runners.values())
                for target in range(start + 1, start + 6):
                    await _until(runners.values(), target)
                    decided = [r.service.current.prices for r in runners.values()]
                    for prices in decided:
                        assert prices.storage_price_per_unit < ABSURD[0]
                    if all((p.storage_price_per_unit, p.write_price_per_unit) == HONEST for p in decided) and all(
                            r.service.current.parameter("max_epochs_ahead") == 50 for r in runners.values()):
                        break
                else:
                    raise AssertionError(f"the price never became the quorum-below vote: {decided}")
                # the parameter a quorum proposed took effect: holders sign no store beyond 50 epochs
                assert all(r.service.current.parameter("max_epochs_ahead") == 50 for r in runners.values())
                assert all(n.max_epochs_ahead() == 50 for n in nodes)
                # holders now ask the voted price: a new store pays it
                quote = await client.quote(len(data), 2)
                assert (quote.cost.storage_price, quote.cost.write_price) == HONEST
                second = await client.store(os.urandom(150_000), epochs=2)
                assert second.cost == store_cost(*HONEST, 150_000, n_shards, 2).total

            # the first store's payment was paid out by decided reward credits: the same at every node
            target = max(r.service.current.epoch for r in runners.values()) + 1
            await _until(runners.values(), target)
            with trio.fail_after(20):
                while not all(n.ledger.ledger.rewarded_epoch >= target - 1 for n in nodes):
                    await trio.sleep(0.1)
            for n in nodes:
                check_conservation(n.ledger.ledger)
            paid = {n.ledger.ledger.rewards_paid for n in nodes}
            assert len(paid) == 1 and paid.pop() >= first.cost - 100  # all of it, but rounding still rolling over
            balances = {tuple(n.ledger.ledger.account(p).balance if n.ledger.ledger.account(p) else 0 for p in peers)
                        for n in nodes}
            assert len(balances) == 1
            (earned,) = balances
            assert all(b > 0 for b in earned)  # every holder's staker (itself, at genesis) was paid
            nursery.cancel_scope.cancel()


async def test_a_holder_that_lost_its_shards_earns_nothing_the_others_earn_their_share(tmp_path):
    from p2pwalrus.config import Timings

    n_shards = 10
    keys = [load_or_create_identity(tmp_path / f"node{i:03d}") for i in range(4)]
    peers = [str(peer_id_of(k)) for k in keys]
    # no repair before the epochs end (the loss stays), frequent storage challenges
    net = inprocess.test_network(n_shards, epoch_length=3.0,
                                 timings=Timings(repair_interval=3600.0, challenge_interval=0.2))
    genesis = make_genesis(network=net.name, n_shards=n_shards, genesis_time=net.genesis_time,
                           epoch_length=net.epoch_length, committee=[(p, 100 * WAL) for p in peers],
                           accounts=[(address(RICH), 10 * WAL)], storage_price=GENESIS_PRICES[0],
                           write_price=GENESIS_PRICES[1], parameters={"max_epochs_ahead": net.max_epochs_ahead})
    net = replace(net, genesis=genesis)
    state0 = genesis_state_from(genesis)
    runners = {}

    def configure(node):
        runners[node.peer_id] = _tune(node, ledger_proposer(node))

    with trio.fail_after(150):
        async with trio.open_nursery() as nursery:
            cluster = inprocess.Cluster(net, tmp_path, nursery, configure=configure)
            for _ in range(4):
                await cluster.start()
            await cluster.wait_converged(60)
            nodes = {n.peer_id: n for n in cluster.alive()}
            async with open_client(cluster.net, RICH) as client:
                await client.refresh_membership()
                client.payer_journal = tmp_path / "rich"
                stored = await client.store(os.urandom(600_000), epochs=20)  # a fund paying every epoch
            holders = [p for p in peers if nodes[p].my_shards() and state0.weights.get(p)]
            victim = holders[0]

            def credits_after(epoch):
                return dict(next(s for s, _ in runners[peers[1]].service.links if s.epoch == epoch).reward_credits)

            # while every holder keeps its slivers, each earns its share
            start = max(r.service.current.epoch for r in runners.values())
            await _until(runners.values(), start + 2)
            before = credits_after(start + 2)
            assert all(before.get(p, 0) > 0 for p in holders), before
            # the victim loses every sliver, and its repair is stopped: nothing restores them before
            # the epochs end (repair pulls to the holder itself; a certificate arriving wakes it)
            async def no_repair() -> None:
                return None

            nodes[victim].repair.sweep = no_repair
            await trio.to_thread.run_sync(nodes[victim].store.delete_blob, stored.blob_id)
            lost_at = max(r.service.current.epoch for r in runners.values())
            seen = []
            # Each epoch, the proposer judges by the challenges it sent in it: under load a few, and
            # the victim proposes one epoch in four (crediting itself): wait up to 8 epochs.
            for epoch in range(lost_at + 2, lost_at + 10):
                await _until(runners.values(), epoch)
                credits = credits_after(epoch)
                seen.append(credits)
                if victim not in credits and all(credits.get(p, 0) > 0 for p in holders if p != victim):
                    break
            else:
                debug = {p[-6:]: {e: {h[-6:]: c for h, c in by.items()} for e, by in n.repair.challenge_epochs.items()}
                         for p, n in nodes.items()}
                raise AssertionError(f"the holder {victim[-6:]} that lost its shards kept earning: {seen}; "
                                     f"lost in epoch {lost_at}; challenges by epoch {debug}; still stored {nodes[victim].store.shards_stored(stored.blob_id)}")
            assert not nodes[victim].store.shards_stored(stored.blob_id)  # (it was not repaired meanwhile)
            await _until(runners.values(), epoch + 1)
            with trio.fail_after(20):
                while not all(n.ledger.ledger.rewarded_epoch >= epoch - 1 for n in nodes.values()):
                    await trio.sleep(0.1)
            for n in nodes.values():
                check_conservation(n.ledger.ledger)
            nursery.cancel_scope.cancel()
