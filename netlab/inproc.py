"""`netlab inproc`: many storage nodes in one trio process; time to form one network, peak memory.

The nodes run the shipped timings. One process has one core for every node's upkeep:
above 20 nodes each node holds a handful of connections rather than a full mesh, watches
4 ring neighbours rather than 8, and the GossipSub mesh degree is 3. Nodes start in
batches, each node awaiting its bootstrap.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import trio


def inproc_timings(n_nodes: int):
    """The shipped timings; above 20 nodes in this one process, whose single core carries
    every node's upkeep, a smaller GossipSub mesh (each node receives each message about
    once per mesh peer) and a longer silence before a link is dead: under a saturated event
    loop a 15 s silence says nothing about the peer."""
    from p2pwalrus.config import Timings

    if n_nodes <= 20:
        return Timings()
    return Timings(gossip_degree=3.0, heartbeat_timeout=90.0)


def few_connections(node) -> None:
    """Many nodes in one process: a handful of connections each, not a full mesh."""
    # A connection costs about 17 ms of CPU to set up and tear down (both ends: Noise,
    # identify, GossipSub hello, meshes). The swarm's auto-connector dials peerstore peers
    # (every member's address is there) up to the middle of the watermarks: (6 + 300) / 2 made
    # every node dial every other, N^2 connections in one process; at 12 it still added a
    # dozen random connections per node beside the heartbeat links' ring neighbours, and
    # trimming back to 12 made trimmed peers dial again. Now it only keeps 2 (the heartbeat
    # links bring the rest, and GossipSub meshes over them), and idle connections are closed
    # above 32, down to 24. A dial waits longer: on a saturated event loop a handshake
    # abandoned after 5 s is redone.
    node.host_overrides.update(max_dialled_peers=6, low_watermark=2, high_watermark=2, min_connections=1,
                               trim_above=32, trim_to=24, dial_timeout=15.0)
    # Each heartbeat link is a connection, and while nodes join each newcomer opens its ring
    # neighbours' links (a joining node's whole cost is about 100 gossip copies of its record
    # and its links): 4 watchers per node instead of 8, still two for a down report.
    node.liveness_overrides.update(neighbours=4)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def progress_line(cluster) -> str:
    nodes = cluster.alive()
    sizes = sorted(len(n.members.live) for n in nodes if n.members is not None) or [0]
    conns = sorted(len(n.node.connected_peers()) for n in nodes if n.node is not None) or [0]
    digests = {n.shard_map.digest() for n in nodes if n.shard_map}
    liveness = [n.liveness.counters for n in nodes if n.liveness is not None]
    lost, reports, pulls, relayed = (sum(c[k] for c in liveness) for k in
                                     ("links_lost", "down_reports_sent", "pulls_by_digest", "records_relayed"))
    return (f"live sets min {sizes[0]} median {sizes[len(sizes) // 2]} max {sizes[-1]} of {len(nodes)}; "
            f"{len(digests)} shard maps; connections per node median {conns[len(conns) // 2]} max {conns[-1]}; "
            f"links lost {lost}, down reports {reports}, pulls by digest {pulls}, records relayed {relayed}; peak RSS {peak_rss_mb():.0f} MB; "
            f"CPU {time.process_time():.0f} s")


async def _report_progress(cluster, t0: float, log, every: float = 15.0) -> None:
    while True:
        await trio.sleep(every)
        log(f"{time.monotonic() - t0:6.1f} s: {progress_line(cluster)}")


def measure(n_nodes: int, n_shards: int, *, timeout: float = 300.0,
            stagger: float = 0.05, batch_size: int = 10, bootstrap_count: int | None = None,
            log=lambda m: None) -> dict:
    from .inprocess import Cluster, test_network

    timings = inproc_timings(n_nodes)
    net = test_network(n_shards, timings=timings)
    res = {"nodes": n_nodes, "shards": n_shards, "converged": False}
    rss0 = peak_rss_mb()
    cpu0 = time.process_time()  # on a busy machine, CPU seconds compare runs better than wall time

    async def main():
        with tempfile.TemporaryDirectory(prefix="netlab-inproc-") as tmp:
            async with trio.open_nursery() as nursery:
                # Like `netlab up`, several bootstrap peers: one would take every newcomer's dial and pull.
                boot = min(n_nodes, bootstrap_count or (3 if n_nodes > 20 else 1))
                cluster = Cluster(net, Path(tmp), nursery, configure=few_connections if n_nodes > 20 else None,
                                  bootstrap_count=boot)
                t0 = time.monotonic()
                for _ in range(boot):  # the bootstrap nodes, one after the other
                    await cluster.start()
                started = boot
                while started < n_nodes:  # then batches started concurrently (each awaits its bootstrap)
                    batch = min(batch_size, n_nodes - started)
                    async with trio.open_nursery() as starters:
                        for _ in range(batch):
                            starters.start_soon(cluster.start)
                            if stagger:
                                await trio.sleep(stagger)
                    started += batch
                    log(f"{started} nodes started ({time.monotonic() - t0:.1f} s, peak RSS {peak_rss_mb():.0f} MB)")
                res["start_seconds"] = round(time.monotonic() - t0, 2)
                nursery.start_soon(_report_progress, cluster, t0, log)
                try:
                    res["converge_seconds"] = round(await cluster.wait_converged(timeout), 2)
                    res["converged"] = True
                except trio.TooSlowError:
                    res["detail"] = progress_line(cluster)
                res["total_seconds"] = round(time.monotonic() - t0, 2)
                nursery.cancel_scope.cancel()

    from p2pwalrus.gc_tuning import apply as tune_gc

    tune_gc()  # as a node process does (gc_tuning.py)
    trio.run(main)
    res["cpu_seconds"] = round(time.process_time() - cpu0, 1)
    res["peak_rss_mb"] = round(peak_rss_mb(), 1)
    res["baseline_rss_mb"] = round(rss0, 1)
    return res
