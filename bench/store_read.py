"""Store and read throughput on a local testnet of node processes (not a test).

    .venv/bin/python bench/store_read.py [--nodes 10] [--shards 100] [--sizes 1,16,64] [--reps 3]

The largest blob for n shards is (n-2f)(n-f) x 65534 bytes: 15 MB at 31 shards, so the
16 and 64 MiB blobs need more shards; 100 is the default. Each blob is fresh random
bytes. MB/s = 10^6 bytes of blob per second, medians over --reps.
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

import trio  # noqa: E402

from netlab.lab import Lab  # noqa: E402
from p2pwalrus.client.client import open_client  # noqa: E402


async def measure(net, sizes, reps):
    rows = []
    async with open_client(net) as client:
        await client.refresh_membership()
        for mib in sizes:
            stores, reads, encodes = [], [], []
            for _ in range(reps):
                data = os.urandom(int(mib * (1 << 20)))
                t0 = time.perf_counter()
                result = await client.store(data, epochs=1, force=True)
                stores.append(time.perf_counter() - t0)
                encodes.append(result.encode_seconds)
                t0 = time.perf_counter()
                back = await client.read(result.blob_id)
                reads.append(time.perf_counter() - t0)
                assert back == data, "read back differs"
            rows.append((mib, statistics.median(stores), statistics.median(encodes), statistics.median(reads)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--shards", type=int, default=100)
    ap.add_argument("--sizes", default="1,16,64")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    sizes = [float(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab.create(Path(tmp) / "lab", args.nodes, args.shards)
        try:
            t0 = time.perf_counter()
            lab.up()
            lab.wait_converged(60)
            print(f"{args.nodes} nodes, {args.shards} shards: up in {time.perf_counter() - t0:.1f} s")
            rows = trio.run(measure, lab.client_network(), sizes, args.reps)
        finally:
            lab.down()
    print(f"{'MiB':>5} {'store s':>8} {'(encode s)':>10} {'store MB/s':>10} {'read s':>7} {'read MB/s':>9}")
    for mib, store, enc, read in rows:
        b = mib * (1 << 20) / 1e6
        print(f"{mib:>5.0f} {store:>8.2f} {enc:>10.2f} {b / store:>10.1f} {read:>7.2f} {b / read:>9.1f}")


if __name__ == "__main__":
    main()
