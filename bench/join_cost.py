"""CPU one join costs the nodes already in a network (not a test): many nodes in one process.

    .venv/bin/python bench/join_cost.py [--nodes 60] [--joins 10]

Starts --nodes nodes in this process with `netlab inproc`'s settings, waits for one network
and 20 s of rest, measures the idle CPU for 10 s, then starts --joins more nodes 2 s apart and
waits for one network again. Prints the CPU the joins cost beyond idle, per join and per join
and node already there: the figure that makes `netlab inproc --nodes 100` quadratic.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netlab.inproc import few_connections, inproc_timings  # noqa: E402
from netlab.inprocess import Cluster, test_network  # noqa: E402
from p2pwalrus.gc_tuning import apply as tune_gc  # noqa: E402


async def measure(n_nodes: int, n_joins: int) -> None:
    net = test_network(100, timings=inproc_timings(n_nodes + n_joins))
    with tempfile.TemporaryDirectory(prefix="join-cost-") as tmp:
        async with trio.open_nursery() as nursery:
            cluster = Cluster(net, Path(tmp), nursery, configure=few_connections, bootstrap_count=3)
            for _ in range(n_nodes):
                await cluster.start()
            await cluster.wait_converged(120)
            await trio.sleep(20)
            c0, w0 = time.process_time(), time.monotonic()
            await trio.sleep(10)
            idle = (time.process_time() - c0) / (time.monotonic() - w0)
            c0, w0 = time.process_time(), time.monotonic()
            for _ in range(n_joins):
                await cluster.start()
                await trio.sleep(2)
            await cluster.wait_converged(60)
            await trio.sleep(5)
            cpu, wall = time.process_time() - c0, time.monotonic() - w0
            extra = cpu - idle * wall
            print(f"{n_nodes} nodes idle at {100 * idle:.1f}% of a core; {n_joins} joins: {cpu:.1f} CPU s in {wall:.1f} s, "
                  f"{1000 * extra / n_joins:.0f} ms per join beyond idle, "
                  f"{1000 * extra / n_joins / n_nodes:.1f} ms per join and node already there")
            nursery.cancel_scope.cancel()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=60)
    ap.add_argument("--joins", type=int, default=10)
    args = ap.parse_args()
    tune_gc()
    trio.run(measure, args.nodes, args.joins)


if __name__ == "__main__":
    main()
