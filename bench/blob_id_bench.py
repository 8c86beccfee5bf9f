"""`p2pwalrus blob-id` as a whole process against the least-work yardstick as its own process (not a test).

    .venv/bin/python bench/blob_id_bench.py [--size-mib 64] [--shards 100,1000] [--reps 3]

Issue 14's bar: the whole-process `p2pwalrus blob-id FILE --shards N` of a 64 MiB blob at
n = 100 and n = 1000 within 1.2x of the least-work yardstick (bench/rs2_bench.py's
YARDSTICK_WORK: one Leopard call per pass, one Blake2b-256 per expanded symbol, one thread)
run as its own process in the same run. Both processes read the same file from disk into a
padded buffer and start from a fresh interpreter: the yardstick process imports only numpy,
hashlib and the codec, p2pwalrus its CLI. Wall clock of each process, medians of --reps,
the two alternating; run under `flock /tmp/p2pwalrus-measure.lock`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rs2_bench import YARDSTICK_WORK  # noqa: E402

# The yardstick as its own process: the file read into a zero-padded R x C x s buffer, then the work.
YARDSTICK_PROCESS = r'''
import hashlib, os, sys
import numpy as np
import reed_solomon_leopard as rsl
path, n = sys.argv[1], int(sys.argv[2])
f = (n - 1) // 3  # (the least-work yardstick imports nothing of p2pwalrus: its start-up is the point)
R, C = n - 2 * f, n - f
size = os.path.getsize(path)
s = -(-max(size, 1) // (R * C)); s += s & 1
padded = np.zeros(R * C * s, np.uint8)
with open(path, "rb") as fh:
    fh.readinto(memoryview(padded)[:size])
if True:
''' + YARDSTICK_WORK


def timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return took, proc.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=float, default=64)
    ap.add_argument("--shards", default="100,1000")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    exe = Path(sys.executable).parent / "p2pwalrus"
    cli = str(exe) if exe.exists() else shutil.which("p2pwalrus")
    if not cli:
        raise SystemExit("p2pwalrus CLI not found (run this with the venv's python)")
    size = int(args.size_mib * (1 << 20))
    with tempfile.TemporaryDirectory(prefix="blob-id-bench-") as tmp:
        path = Path(tmp) / "blob.bin"
        path.write_bytes(os.urandom(size))
        print(f"blob: {size} bytes (fresh random), {args.reps} reps each, whole processes, wall clock medians")
        print(f"{'n':>5} | {'blob-id s':>9} {'yardstick s':>11} | {'ratio':>6} {'<= 1.2x':>7} | per rep (blob-id / yardstick)")
        for n in map(int, args.shards.split(",")):
            ours, yard = [], []
            for _ in range(args.reps):
                t, out = timed([cli, "blob-id", str(path), "--shards", str(n)])
                ours.append(t)
                t, _ = timed([sys.executable, "-c", YARDSTICK_PROCESS, str(path), str(n)])
                yard.append(t)
            a, b = statistics.median(ours), statistics.median(yard)
            print(f"{n:>5} | {a:>9.2f} {b:>11.2f} | {a / b:>6.2f} {'PASS' if a <= 1.2 * b else 'FAIL':>7} | "
                  f"{[round(x, 2) for x in ours]} / {[round(x, 2) for x in yard]}", flush=True)


if __name__ == "__main__":
    main()
