"""Idle cost of storage nodes (not a test): CPU and memory of N node processes at rest.

    .venv/bin/python bench/idle.py [--nodes 10] [--seconds 60] [--network local]

Runs N node processes with the timings of a network file (default: bootstrap/local.toml),
waits until they agree on the shard map, then reads each process's CPU time from
/proc/PID/stat over the window and its resident memory at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netlab.lab import Lab  # noqa: E402
from p2pwalrus.config import load_network  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--shards", type=int, default=31)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--network", default="local", help="network whose timings the nodes use")
    args = ap.parse_args()
    timings = load_network(args.network).timings
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab.create(Path(tmp) / "lab", args.nodes, args.shards, timings=timings)
        try:
            t0 = time.monotonic()
            lab.up(ready_timeout=120)
            lab.wait_converged(120)
            print(f"{args.nodes} nodes up and agreeing in {time.monotonic() - t0:.1f} s "
                  f"(publish every {timings.publish_interval:.0f} s, TTL {timings.member_ttl:.0f} s)")
            pids = [n.pid for n in lab.nodes]
            before = {p: cpu_seconds(p) for p in pids}
            t0 = time.monotonic()
            time.sleep(args.seconds)
            wall = time.monotonic() - t0
            cpu = [100 * (cpu_seconds(p) - before[p]) / wall for p in pids]
            mem = [rss_mb(p) for p in pids]
        finally:
            lab.down()
    print(f"CPU % of one core per node over {wall:.0f} s: median {statistics.median(cpu):.2f}, max {max(cpu):.2f}")
    print(f"RSS MB per node: median {statistics.median(mem):.0f}, max {max(mem):.0f}")


if __name__ == "__main__":
    main()
