"""Idle cost of storage nodes (not a test): a testnet exactly as `netlab up` makes it, at rest.

    .venv/bin/python bench/idle.py [--nodes 10] [--shards 31] [--seconds 600] [--every 10]

Brings the testnet up with netlab's own defaults, then samples every --every seconds the
CPU of each node process (from /proc), the live-set sizes and the number of shard maps,
and ends with the averages. The same sampling runs on any testnet: `netlab watch --dir D`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netlab.cli import bring_up  # noqa: E402
from netlab.watch import summary, watch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--shards", type=int, default=31)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--every", type=float, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lab, took = bring_up(Path(tmp) / "lab", args.nodes, args.shards)
        try:
            print(f"{args.nodes} node processes formed one network in {took:.1f} s (netlab up defaults)")
            samples = watch(lab, args.every, args.seconds)
            res = summary(samples, lab)
        finally:
            lab.down()
    print(f"{res['nodes']} nodes over {res['seconds']:.0f} s: {res['cpu_mean_percent']:.2f}% of one core together "
          f"on average (max {res['cpu_max_percent']:.2f}%), {res['rss_mb_mean']:.0f} MB RSS per node; "
          f"one network throughout: {res['one_network_throughout']} (max {res['max_maps']} maps)")


if __name__ == "__main__":
    main()
