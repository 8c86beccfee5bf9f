"""Benchmark of epoch changes; not a test.

Run:  flock /tmp/p2pwalrus-measure.lock .venv/bin/python bench/epoch_change.py [--changes C]

1. Time of one epoch change through real libp2p hosts on 127.0.0.1 (TCP, Noise,
   Yamux) in one trio process: committees of 4 and 10 nodes, 1000 shards, a stake
   change at every epoch; from the moment every node calls ``change_epoch`` until
   the last one has decided (and verified the link).  Timeouts as a real network
   would set them (propose 3 s): a clean run decides in round 0, so they do not
   enter the figure.
2. Pure costs: stake placement (``assign_shards``) at N nodes x 1000 shards for
   the genesis (every shard free) and an epoch with 10 stake changes; the
   encoded EpochState's size; verifying a chain link (placement recomputed and
   the certificate's signatures checked).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trio  # noqa: E402
from libp2p.crypto.ed25519 import create_new_key_pair  # noqa: E402
from libp2p.peer.id import ID  # noqa: E402

from p2pwalrus.core.wal.agreement import VoteKind, vote_signing_bytes  # noqa: E402
from p2pwalrus.core.wal.epoch_state import (  # noqa: E402
    StateCertificate,
    genesis_state,
    next_state,
    verify_link,
)
from p2pwalrus.core.wal.placement_stake import assign_shards, moved_shards  # noqa: E402
from p2pwalrus.node.epoch_service import EpochService  # noqa: E402
from p2pwalrus.p2p.host import open_host  # noqa: E402

WAL = 10**9


async def network_changes(n_nodes: int, n_shards: int, changes: int) -> list[float]:
    keys = [create_new_key_pair() for _ in range(n_nodes)]
    peers = [str(ID.from_pubkey(k.public_key)) for k in keys]
    genesis = genesis_state("bench", n_shards, {p: 100 * WAL for p in peers})
    times = []
    async with AsyncExitStack() as stack:
        hosts = [await stack.enter_async_context(open_host(k, ["/ip4/127.0.0.1/tcp/0"], [])) for k in keys]
        for i, a in enumerate(hosts):
            for b in hosts[i + 1:]:
                await a.connect(b.listen_addrs()[0])
        async with trio.open_nursery() as nursery:
            services = [EpochService(h, k, genesis) for h, k in zip(hosts, keys)]
            for svc in services:
                await nursery.start(svc.run)
            rng = random.Random(1)
            for _ in range(changes):
                current = services[0].current
                stakes = dict(current.stakes)
                stakes[rng.choice(peers)] = rng.randint(50, 300) * WAL
                proposal = next_state(current, stakes)
                t0 = time.perf_counter()
                async with trio.open_nursery() as round_:
                    for svc in services:
                        round_.start_soon(svc.change_epoch, proposal)
                times.append(time.perf_counter() - t0)
                assert len({svc.current for svc in services}) == 1
            nursery.cancel_scope.cancel()
    return times


def pure_costs(n_nodes: int, n_shards: int) -> dict:
    rng = random.Random(n_nodes)
    peers = [f"node-{i:05d}" for i in range(n_nodes)]
    stakes = {p: rng.randint(1, 100) * WAL for p in peers}
    seed = bytes(range(32))
    t0 = time.perf_counter()
    first = assign_shards(stakes, n_shards, seed, cap=max(n_shards // 10, -(-n_shards // n_nodes)))
    t_genesis = time.perf_counter() - t0
    changed = dict(stakes)
    for p in rng.sample(peers, min(10, n_nodes)):
        changed[p] = rng.randint(0, 100) * WAL
    seed2 = bytes(reversed(range(32)))
    t0 = time.perf_counter()
    second = assign_shards(changed, n_shards, seed2, first, cap=max(n_shards // 10, -(-n_shards // n_nodes)))
    t_next = time.perf_counter() - t0
    return {"genesis_s": t_genesis, "next_s": t_next, "moved": len(moved_shards(first, second))}


def link_cost(n_committee: int, n_shards: int) -> tuple[int, float]:
    keys = [create_new_key_pair() for _ in range(n_committee)]
    peers = [str(ID.from_pubkey(k.public_key)) for k in keys]
    g = genesis_state("bench", n_shards, {p: 100 * WAL for p in peers})
    nxt = next_state(g, {p: 100 * WAL for p in peers[1:]} | {peers[0]: 300 * WAL})
    from p2pwalrus.core.keys import sign

    sigs = tuple(sorted((p, sign(k, vote_signing_bytes(
        VoteKind.PRECOMMIT, g.digest, 1, 0, nxt.digest))) for p, k in zip(peers, keys)))
    cert = StateCertificate(1, 0, nxt.digest, sigs)
    t0 = time.perf_counter()
    verify_link(g, nxt, cert, g.digest)
    return len(nxt.to_bytes()), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--changes", type=int, default=5)
    args = ap.parse_args()
    for n_nodes in (4, 10):
        times = trio.run(network_changes, n_nodes, 1000, args.changes)
        print(f"epoch change, {n_nodes} nodes on loopback, 1000 shards: median {statistics.median(times) * 1000:.0f} ms,"
              f" max {max(times) * 1000:.0f} ms over {len(times)} changes")
    for n_nodes in (10, 100, 1000):
        c = pure_costs(n_nodes, 1000)
        print(f"assign_shards N={n_nodes} n=1000: genesis {c['genesis_s'] * 1000:.0f} ms, "
              f"next epoch (10 stake changes) {c['next_s'] * 1000:.0f} ms, {c['moved']} shards moved")
    for n in (10, 100):
        size, t = link_cost(n, 1000)
        print(f"EpochState with {n} members, 1000 shards: {size} bytes; verify one link {t * 1000:.0f} ms")


if __name__ == "__main__":
    main()
