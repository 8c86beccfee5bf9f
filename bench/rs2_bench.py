"""RS2 benchmark (not a test): blob-id, encode, decode and recovery times and peak memory.

    .venv/bin/python bench/rs2_bench.py [--size-mib 64] [--shards 10,100,1000]

Each measurement runs in a fresh subprocess so that its peak RSS is its own. The
yardstick is the least work possible for a blob ID: one Leopard call per pass over
all rows and all columns (raw bytes, no layout work) plus one Blake2b-256 per
expanded symbol, single-threaded, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

# The least work for a blob ID (see the module docstring), given the padded blob `padded`
# and R, C, f, s, n; indented for the worker below. bench/blob_id_bench.py runs it too.
YARDSTICK_WORK = r'''
    rows = padded.reshape(R, C * s)
    rec = rsl.encode([padded.reshape(R, C, s)[:, c].tobytes() for c in range(C)], f)
    rowext = rows.tobytes() + b"".join(rec)
    colrec = rsl.encode([rowext[r * n * s // R:(r + 1) * n * s // R] if False else
                         np.frombuffer(rowext, np.uint8)[: R * n * s].reshape(R, n * s)[r].tobytes() for r in range(R)], 2 * f)
    mv = memoryview(np.frombuffer(rowext + b"".join(colrec), np.uint8)[: n * n * s].tobytes())
    b2 = hashlib.blake2b
    for k in range(n * n):
        b2(mv[k * s:(k + 1) * s], digest_size=32).digest()
'''

WORKER = r'''
import json, resource, sys, time, hashlib
import numpy as np
sys.path.insert(0, ".")
from p2pwalrus.core import rs2
import reed_solomon_leopard as rsl
task, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cfg = rs2.EncodingConfig(n)
size = min(size, cfg.max_blob_size)
data = np.random.default_rng(n).integers(0, 256, size, dtype=np.uint8).tobytes()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = {"n": n, "size": size}
t0 = time.perf_counter()
if task == "blob_id":
    rs2.compute_blob_id(data, n)
elif task == "encode":
    # As the CLI reads a file: straight into the padded buffer, which the encoder uses in place.
    buf = rs2.blob_buffer(size, n); buf[:size] = np.frombuffer(data, np.uint8); del data
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    rs2.encode_blob(buf, n, length=size)
elif task == "yardstick":
    R, C, f = cfg.n_primary, cfg.n_secondary, cfg.f
    s = cfg.symbol_size(size)
    padded = np.zeros(R * C * s, np.uint8); padded[:size] = np.frombuffer(data, np.uint8)
    t0 = time.perf_counter()
__YARDSTICK_WORK__
elif task in ("decode", "recover"):
    enc = rs2.encode_blob(data, n)
    R = cfg.n_primary
    if task == "decode":
        rows = {i: enc.primary_sliver(i) for i in range(n - R, n)}  # worst case: no systematic rows
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        assert rs2.decode_primary(enc.metadata, rows) == data
    else:
        s = enc.metadata.symbol_size
        syms = [rs2.recovery_symbols(rs2.PRIMARY, i, enc.primary_sliver(i), [0], cfg, s)[0] for i in range(R)]
        t0 = time.perf_counter()
        res = rs2.recover_sliver(enc.metadata, rs2.SECONDARY, 0, syms)
        out["symbol_bytes"] = sum(len(x.data) + 32 * len(x.proof) for x in syms)
        out["sliver_bytes"] = len(res.sliver)
out["seconds"] = time.perf_counter() - t0
out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out["peak_over_start_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
print(json.dumps(out))
'''.replace("__YARDSTICK_WORK__\n", YARDSTICK_WORK.lstrip("\n"))


def run(task: str, n: int, size: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", WORKER, task, str(n), str(size)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=float, default=64)
    ap.add_argument("--shards", default="10,100,1000")
    args = ap.parse_args()
    size = int(args.size_mib * (1 << 20))
    print(f"{'n':>5} {'MiB':>6} {'blob-id s':>9} {'yard s':>7} {'ratio':>6} {'encode s':>8} "
          f"{'MB/s':>6} {'enc peak/blob':>13} {'decode s':>8} {'recover ms':>10} {'rec bytes/sliver':>16}")
    for n in map(int, args.shards.split(",")):
        bid = min(run("blob_id", n, size)["seconds"] for _ in range(2))
        yard = min(run("yardstick", n, size)["seconds"] for _ in range(2))
        enc = run("encode", n, size)
        dec = run("decode", n, size)
        rec = run("recover", n, size)
        mib = enc["size"] / (1 << 20)
        print(f"{n:>5} {mib:>6.1f} {bid:>9.2f} {yard:>7.2f} {bid / yard:>6.2f} {enc['seconds']:>8.2f} "
              f"{enc['size'] / enc['seconds'] / 1e6:>6.0f} {enc['peak_over_start_mib'] / mib:>13.2f} "
              f"{dec['seconds']:>8.2f} {rec['seconds'] * 1000:>10.1f} "
              f"{rec['symbol_bytes'] / rec['sliver_bytes']:>16.2f}")
        if enc["size"] < size:
            print(f"      (n={n}: {size} bytes exceed the largest blob for {n} shards; used {enc['size']})")


if __name__ == "__main__":
    main()
