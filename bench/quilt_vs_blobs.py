"""1,000 small files (1-10 KiB) stored in quilts against the same files as 1,000 blobs (not a test).

    flock /tmp/p2pwalrus-measure.lock .venv/bin/python bench/quilt_vs_blobs.py [--shards 10,31] [--files 1000]

For each shard count: a 10-node testnet as `netlab up` brings it up (node processes), one
client in this process (the library, as the gateway uses it: no process start-up per file),
warmed with one small store. Then the same files (seeded random sizes and bytes):

- as blobs: one `Client.store` each, `--parallel` at a time;
- in quilts: `store_quilts` (client/quilts.py: grouped as `publish` groups them, each group
  one quilt in Walrus's QuiltV1 layout), `--parallel` quilts at a time.

Encoded bytes, two ways: what the network is asked to keep (per blob or quilt, n sliver
pairs of R + C symbols plus the metadata at each of n shards, as the store's storageSize
says), and the growth of the nodes' data directories on disk (logs left out). Then
`--reads` files picked at random are read back alone, each by a fresh reader: by patch ID
from the quilts (the secondary slivers of the file's own columns) and by blob ID from the
blobs (R primary slivers), compared byte for byte; median seconds.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def disk_bytes(root: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            if not name.endswith(".log"):
                try:
                    total += (Path(dirpath) / name).stat().st_size
                except OSError:
                    pass
    return total


def storage_size(length: int, n: int) -> int:
    from p2pwalrus.core import rs2

    cfg = rs2.EncodingConfig(n)
    return n * (cfg.n_primary + cfg.n_secondary) * cfg.symbol_size(length) + 64 * n * n


def make_files(count: int, seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {f"files/{i // 100:02d}/file-{i:04d}.bin": rng.randbytes(rng.randint(1024, 10 * 1024)) for i in range(count)}


def run_one(shards: int, nodes: int, files: dict[str, bytes], parallel: int, reads: int, seed: int) -> dict:
    import trio

    from netlab.cli import bring_up
    from p2pwalrus.client.client import open_client
    from p2pwalrus.client.quilts import QuiltReader, store_quilts
    from p2pwalrus.config import load_network
    from p2pwalrus.core import quilt as q

    directory = Path(tempfile.mkdtemp(prefix=f"quiltbench-{shards}-"))
    log(f"netlab: {nodes} nodes, {shards} shards in {directory}")
    lab, took = bring_up(directory, nodes, shards, log=lambda m: log("  " + m))
    log(f"  formed in {took:.1f} s")
    net = load_network(str(lab.network_path))
    out: dict = {"shards": shards, "nodes": nodes, "files": len(files), "content_bytes": sum(map(len, files.values()))}

    async def main() -> None:
        async with open_client(net) as client:
            await client.refresh_membership()
            await client.store(os.urandom(1000), epochs=1)  # warm: connections, code paths

            limiter = trio.CapacityLimiter(parallel)
            blob_ids: dict[str, bytes] = {}

            async def one(name: str, data: bytes) -> None:
                async with limiter:
                    blob_ids[name] = (await client.store(data, epochs=1)).blob_id

            d0 = disk_bytes(directory)
            t0 = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for name, data in files.items():
                    nursery.start_soon(one, name, data)
            out["blobs_seconds"] = time.perf_counter() - t0
            out["blobs_disk"] = disk_bytes(directory) - d0
            out["blobs_storage_size"] = sum(storage_size(len(d), shards) for d in files.values())
            out["blobs_count"] = len(blob_ids)
            log(f"  blobs: {out['blobs_seconds']:.1f} s")

            d0 = disk_bytes(directory)
            t0 = time.perf_counter()
            stored = await store_quilts(client, [q.QuiltBlob(k, v) for k, v in files.items()], epochs=1,
                                        parallel=parallel)
            out["quilts_seconds"] = time.perf_counter() - t0
            out["quilts_disk"] = disk_bytes(directory) - d0
            out["quilts_storage_size"] = sum(storage_size(s.encoded_size, shards) for s in stored)
            out["quilts_count"] = len(stored)
            out["quilt_blob_bytes"] = sum(s.encoded_size for s in stored)
            log(f"  quilts: {out['quilts_seconds']:.1f} s ({len(stored)} quilts)")

            where = {p.identifier: p.patch_id(s.quilt_id) for s in stored for p in s.index.patches}
            rng = random.Random(seed + 1)
            picks = rng.sample(sorted(files), reads)
            patch_s, blob_s, columns = [], [], []
            for name in picks:
                reader = QuiltReader(client)
                t0 = time.perf_counter()
                got = await reader.read_by_id(where[name])
                patch_s.append(time.perf_counter() - t0)
                assert got.data == files[name] and got.identifier == name, name
                assert not reader.whole_reads
                columns.append(len(reader.fetched))
                t0 = time.perf_counter()
                data = await client.read(blob_ids[name])
                blob_s.append(time.perf_counter() - t0)
                assert data == files[name], name
            out["read_patch_median"] = statistics.median(patch_s)
            out["read_blob_median"] = statistics.median(blob_s)
            out["read_patch_columns_median"] = statistics.median(columns)
            out["reads"] = reads

    try:
        trio.run(main)
    finally:
        lab.down()
    return out


def report(rows: list[dict], parallel: int) -> None:
    print(f"\n{rows[0]['files']} files of 1-10 KiB ({rows[0]['content_bytes']:,} bytes), 10-node netlab "
          f"(node processes), one client in the bench process, {parallel} stores at a time\n")
    hdr = (f"{'shards':>6} | {'how':>6} {'stored as':>12} | {'seconds':>7} {'files/s':>7} | "
           f"{'storageSize':>13} {'x content':>9} | {'disk growth':>13} {'x content':>9}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        c = r["content_bytes"]
        for how in ("blobs", "quilts"):
            print(f"{r['shards']:>6} | {how:>6} {r[how + '_count']:>6} {how:<5} | {r[how + '_seconds']:>7.1f} "
                  f"{r['files'] / r[how + '_seconds']:>7.1f} | {r[how + '_storage_size']:>13,} "
                  f"{r[how + '_storage_size'] / c:>9.1f} | {r[how + '_disk']:>13,} {r[how + '_disk'] / c:>9.1f}")
        print(f"{'':>6} | quilts/blobs: time {r['quilts_seconds'] / r['blobs_seconds']:.3f}, storageSize "
              f"{r['quilts_storage_size'] / r['blobs_storage_size']:.3f}, disk {r['quilts_disk'] / r['blobs_disk']:.3f}; "
              f"quilt blobs {r['quilt_blob_bytes']:,} bytes ({r['quilt_blob_bytes'] / c:.2f}x content)")
        print(f"{'':>6} | one file read alone ({r['reads']} at random, byte-exact): from its quilt by patch ID "
              f"{r['read_patch_median'] * 1000:.0f} ms ({r['read_patch_columns_median']:.0f} column slivers), "
              f"as a blob {r['read_blob_median'] * 1000:.0f} ms (medians)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shards", default="10,31", help="comma-separated shard counts (default 10,31)")
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--reads", type=int, default=20)
    ap.add_argument("--seed", type=int, default=17)
    args = ap.parse_args()
    files = make_files(args.files, args.seed)
    rows = [run_one(int(s), args.nodes, files, args.parallel, args.reads, args.seed) for s in args.shards.split(",")]
    report(rows, args.parallel)


if __name__ == "__main__":
    main()
