"""Benchmark of shard placement (p2pwalrus.core.placement); not a test.

Run:  .venv/bin/python bench/shardmap.py [--trials T] [--seed S]

For each (N nodes, n shards) it prints the balance (max and mean shards per
node, and the same for plain rendezvous hashing without the load cap), the time
to compute one map, and the shards moved when one random node joins or one
random node leaves, averaged over T random trials and compared with the ideal
n/N.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from p2pwalrus.core.placement import compute_shard_map, shards_moved  # noqa: E402

CONFIGS = [(10, 31), (10, 1000), (100, 1000), (1000, 1000)]


def peer_id(rng: random.Random) -> str:
    return "12D3KooW" + "".join(rng.choice("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz") for _ in range(44))


def time_one(nodes: list[str], n: int, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        compute_shard_map(nodes, n)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=50, help="random memberships per configuration")
    ap.add_argument("--seed", type=int, default=2024)
    args = ap.parse_args()
    rng = random.Random(args.seed)

    head = (
        f"{'N':>5} {'n':>5} {'cap':>4} {'max':>4} {'mean':>7} {'max/mean':>8} "
        f"{'uncapped':>8} {'time ms':>8} | {'join mv':>8} {'leave mv':>8} {'ideal n/N':>9} "
        f"{'join/ideal':>10} {'leave/ideal':>11} {'worst j/l':>9}"
    )
    print(f"bounded-load rendezvous placement, {args.trials} random trials per row")
    print(head)
    print("-" * len(head))
    for N, n in CONFIGS:
        maxes, uncapped, times, joins, leaves, caps = [], [], [], [], [], set()
        for trial in range(args.trials):
            nodes = [peer_id(rng) for _ in range(N)]
            m = compute_shard_map(nodes, n)
            caps.add(m.cap)
            maxes.append(m.max_load)
            uncapped.append(compute_shard_map(nodes, n, max_shards_per_node=n).max_load)
            if trial < 3:
                times.append(time_one(nodes, n))
            joined = compute_shard_map(nodes + [peer_id(rng)], n)
            joins.append(len(shards_moved(m, joined)))
            gone = rng.choice(nodes)
            left = compute_shard_map([v for v in nodes if v != gone], n)
            leaves.append(len(shards_moved(m, left)))
        mean = n / N
        ideal = n / N
        jm, lm = statistics.mean(joins), statistics.mean(leaves)
        print(
            f"{N:>5} {n:>5} {'/'.join(map(str, sorted(caps))):>4} {max(maxes):>4} {mean:>7.2f} "
            f"{max(maxes) / mean:>8.2f} {statistics.mean(uncapped) / mean:>8.2f} "
            f"{statistics.median(times) * 1e3:>8.2f} | {jm:>8.2f} {lm:>8.2f} {ideal:>9.2f} "
            f"{jm / ideal:>10.2f} {lm / ideal:>11.2f} {max(joins):>4}/{max(leaves):<4}"
        )
    print()
    print("max = largest load over all trials; uncapped = mean max/mean of plain rendezvous")
    print("(no load cap) on the same memberships; time = best of 5, median over 3 memberships;")
    print("join/leave mv = mean shards whose owner changed when one node joins / leaves;")
    print("worst j/l = largest number moved in any trial.")


if __name__ == "__main__":
    main()
