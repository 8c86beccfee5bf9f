"""Repair after losing nodes for good (not a test): time to full redundancy and traffic.

    .venv/bin/python bench/repair.py [--nodes 10] [--shards 31] [--kill 2] [--sizes-kib 256,1024,4096]

Runs the nodes in one trio process (netlab.inprocess), stores the blobs, kills nodes, and
waits until every blob's shards are all stored again. Prints, per restored sliver pair, the
bytes the repairing node received against the pair's size and against the whole blob (what
re-downloading it would cost), and whether two nodes ever repaired the same shard at once.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio  # noqa: E402

from netlab.inprocess import inprocess_network  # noqa: E402
from p2pwalrus.client.client import open_client  # noqa: E402


async def run(args) -> None:
    sizes = [int(k) * 1024 for k in args.sizes_kib.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        async with inprocess_network(args.nodes, args.shards, Path(tmp)) as cluster:
            async with open_client(cluster.net) as client:
                ids = {(await client.store(os.urandom(s), epochs=2)).blob_id: s for s in sizes}

            async def all_stored() -> bool:
                addr = cluster.alive()[0].node.listen_addrs()[0]
                async with open_client(cluster.net.with_bootstrap([addr])) as c:
                    for b in ids:
                        if (await c.blob_status(b))["shards_stored"] != args.shards:
                            return False
                return True

            await cluster.wait_until(all_stored, 120)
            for node in cluster.alive():
                node.repair.events.clear()
            for i in range(args.kill):
                await cluster.kill(i)
            took = await cluster.wait_until(all_stored, 300)
            events = [(n.peer_id, *e) for n in cluster.alive() for e in n.repair.events]
    print(f"{args.nodes} nodes, {args.shards} shards, {args.kill} killed: all shards stored again after "
          f"{took:.1f} s (including the {cluster.net.timings.member_ttl:.0f} s member TTL before the map changes)")
    by_blob: dict[str, list] = {}
    for peer, blob, shard, start, end, moved, pair in events:
        by_blob.setdefault(blob, []).append((moved, pair))
    print(f"{'blob KiB':>9} {'pairs':>6} {'pair KiB':>9} {'moved/pair':>11} {'moved/blob':>11}")
    for blob, rows in by_blob.items():
        size = ids[bytes.fromhex(blob)]
        ratios = [m / p for m, p in rows]
        print(f"{size / 1024:>9.0f} {len(rows):>6} {rows[0][1] / 1024:>9.1f} {statistics.mean(ratios):>10.2f}x "
              f"{statistics.mean(m for m, _ in rows) / size:>10.3f}x")
    spans: dict = {}
    for peer, blob, shard, start, end, _, _ in events:
        spans.setdefault((blob, shard), []).append((start, end, peer))
    overlaps = 0
    for s in spans.values():
        s.sort()
        overlaps += sum(1 for (a0, a1, p), (b0, b1, q) in zip(s, s[1:]) if p != q and b0 < a1)
    print(f"repairs: {len(events)}; same shard repaired by two nodes at once: {overlaps}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--shards", type=int, default=31)
    ap.add_argument("--kill", type=int, default=2)
    ap.add_argument("--sizes-kib", default="256,1024,4096")
    trio.run(run, ap.parse_args())


if __name__ == "__main__":
    main()
