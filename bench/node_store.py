"""Node-side cost of one store request (not a test): verify and persist a node's slivers.

    .venv/bin/python bench/node_store.py [--reps 7] [--cases 14:31:3,16:40:4]

A case MIB:SHARDS:PAIRS encodes a random blob of MIB MiB at SHARDS shards and times, in
this process, the work handle_store does after receiving a request for PAIRS pairs
(about n/10 on a 10-node network): `verify_and_persist` (batched verification, one group
commit) and, for comparison, the per-sliver path it replaced (verify each sliver, then
put_metadata / put_sliver / set_state, each its own write+fsync+rename+directory fsync).
Stores go to a fresh directory under $TMPDIR per repetition. The largest blob at 31
shards is 15.1 MB, hence 14 MiB there. Medians over --reps, in ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from p2pwalrus.core import rs2  # noqa: E402
from p2pwalrus.node.handlers import verify_and_persist  # noqa: E402
from p2pwalrus.node.sliver_store import PRIMARY, SECONDARY, SliverStore  # noqa: E402


def update_state(state):
    return {"end_epoch": max(5, state.get("end_epoch", 0)), "deletable": False, "owner": "",
            "stored_at": state.get("stored_at", time.time())}


def per_sliver(store, meta, blob_id, owned):
    """The handle_store work before group commits (6075b96), with a split of its time."""
    t0 = time.perf_counter()
    for pair, _, p, q in owned:
        rs2.verify_primary_sliver(meta, pair, p)
        rs2.verify_secondary_sliver(meta, pair, q)
    t1 = time.perf_counter()
    for pair, shard, p, q in owned:
        if store.get_metadata(blob_id) is None:
            store.put_metadata(blob_id, meta.to_bytes())
        store.put_sliver(blob_id, shard, PRIMARY, p)
        store.put_sliver(blob_id, shard, SECONDARY, q)
    store.set_state(blob_id, update_state(store.get_state(blob_id)))
    return t1 - t0


def batched(store, meta, blob_id, owned):
    stored, refused = verify_and_persist(store, meta, blob_id, owned, update_state)
    assert len(stored) == len(owned) and not refused
    # Its verification alone, timed apart (pure: no store), for the split.
    t0 = time.perf_counter()
    rs2.verify_slivers(meta, rs2.PRIMARY, {pair: p for pair, _, p, _ in owned})
    rs2.verify_slivers(meta, rs2.SECONDARY, {pair: q for pair, _, _, q in owned})
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--cases", default="14:31:3,16:40:4")
    args = ap.parse_args()
    for case in args.cases.split(","):
        mib, n, pairs = case.split(":")
        n, pairs = int(n), int(pairs)
        enc = rs2.encode_blob(os.urandom(int(float(mib) * (1 << 20))), n)
        meta, blob_id = enc.metadata, enc.blob_id
        owned = [(p, rs2.shard_for_pair(p, blob_id, n), enc.primary_sliver(p), enc.secondary_sliver(p))
                 for p in range(pairs)]
        times: dict[str, list[float]] = {"per-sliver": [], "per-sliver verify": [], "batched": [],
                                         "batched verify": []}
        for _ in range(args.reps):
            for name, fn in (("per-sliver", per_sliver), ("batched", batched)):
                root = tempfile.mkdtemp(prefix="p2pwalrus-bench-")
                try:
                    store = SliverStore(root)
                    t0 = time.perf_counter()
                    verify_time = fn(store, meta, blob_id, owned)
                    times[name].append(time.perf_counter() - t0)
                    if name == "batched":
                        times[name][-1] -= verify_time  # the extra verification run
                    times[name + " verify"].append(verify_time)
                finally:
                    shutil.rmtree(root)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        print(f"{mib} MiB, {n} shards, {pairs} pairs: per-sliver {med['per-sliver']:.1f} ms "
              f"(verify {med['per-sliver verify']:.1f}, persist {med['per-sliver'] - med['per-sliver verify']:.1f}); "
              f"batched {med['batched']:.1f} ms (verify {med['batched verify']:.1f}, "
              f"persist {med['batched'] - med['batched verify']:.1f}); medians of {args.reps}")


if __name__ == "__main__":
    main()
