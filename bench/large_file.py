"""Files larger than one blob, stored and read back through the CLI as processes (not a test).

    flock /tmp/p2pwalrus-measure.lock .venv/bin/python bench/large_file.py [--big-mib 1024] [--default-mib 100]
        [--single-mib 8] [--skip-big] [--skip-default]

1. `netlab up --nodes 10 --shards 31` in a temporary directory: a file of --big-mib MiB
   (1 GiB by default, random) stored with `p2pwalrus store FILE` and read back with
   `p2pwalrus read ID -o OUT`, each a whole process under /usr/bin/time -v (wall clock and
   peak resident memory of the client), compared byte for byte; beside it a single blob of
   --single-mib MiB (8 by default) stored and read the same way.
2. `netlab up` as shipped (7 nodes, 10 shards): a file of --default-mib MiB (100 by default)
   the same way.

MB/s = 10^6 bytes of file per second, start-up of the process included. Prints a table and
writes it as JSON to bench/results/large_file.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = REPO / "bench" / "results" / "large_file.json"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def netlab(*args: str, env: dict) -> None:
    res = subprocess.run([str(BIN / "netlab"), *args], env=env, capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        raise SystemExit(f"netlab {' '.join(args)} failed: {res.stderr}")


def timed(cmd: list[str], env: dict) -> tuple[float, int, str, str]:
    """(wall seconds, peak RSS bytes, stdout, stderr) of a command under /usr/bin/time -v."""
    t0 = time.perf_counter()
    res = subprocess.run(["/usr/bin/time", "-v", *cmd], env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr).group(1)) * 1024
    return wall, rss, res.stdout, res.stderr


def random_file(path: Path, nbytes: int) -> None:
    with open(path, "wb") as fh:
        left = nbytes
        while left:
            k = min(left, 64 << 20)
            fh.write(os.urandom(k))
            left -= k


def same_files(a: Path, b: Path) -> bool:
    return subprocess.run(["cmp", "-s", str(a), str(b)]).returncode == 0


def store_and_read(label: str, path: Path, env: dict, work: Path) -> dict:
    size = path.stat().st_size
    cli = str(BIN / "p2pwalrus")
    log(f"{label}: store {size} bytes")
    s_wall, s_rss, out, err = timed([cli, "store", str(path)], env)
    blob_id = out.strip().splitlines()[-1]
    summary = next((ln for ln in err.splitlines() if ln.startswith("stored ")), "")
    log(f"{label}: {summary}")
    copy = work / (path.name + ".copy")
    log(f"{label}: read {blob_id}")
    r_wall, r_rss, _, _ = timed([cli, "read", blob_id, "-o", str(copy)], env)
    exact = same_files(path, copy)
    copy.unlink()
    row = {"what": label, "bytes": size, "blob_id": blob_id,
           "store_s": round(s_wall, 2), "store_MBps": round(size / 1e6 / s_wall, 1), "store_peak_rss_MB": round(s_rss / 1e6),
           "read_s": round(r_wall, 2), "read_MBps": round(size / 1e6 / r_wall, 1), "read_peak_rss_MB": round(r_rss / 1e6),
           "byte_exact": exact}
    log(f"{label}: {row}")
    if not exact:
        raise SystemExit(f"{label}: the file read back differs")
    return row


def run_lab(lab_args: list[str], files: list[tuple[str, int]], base: Path) -> list[dict]:
    lab = base / "lab"
    env = dict(os.environ, P2PWALRUS_NETWORK=str(lab / "network.toml"), P2PWALRUS_CLIENT_DIR=str(base / "client"))
    env.pop("COLUMNS", None)
    rows = []
    log(f"netlab up {' '.join(lab_args)}")
    netlab("up", *lab_args, "--dir", str(lab), env=env)
    try:
        for label, nbytes in files:
            path = base / f"{nbytes}.bin"
            random_file(path, nbytes)
            rows.append(store_and_read(label, path, env, base))
            path.unlink()
    finally:
        netlab("down", "--dir", str(lab), env=env)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--big-mib", type=int, default=1024)
    ap.add_argument("--default-mib", type=int, default=100)
    ap.add_argument("--single-mib", type=int, default=8)
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--skip-default", action="store_true")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="p2pw-large-") as tmp:
        if not args.skip_big:
            rows += run_lab(["--nodes", "10", "--shards", "31"],
                            [(f"single blob {args.single_mib} MiB, 10 nodes, 31 shards", args.single_mib << 20),
                             (f"file {args.big_mib} MiB, 10 nodes, 31 shards", args.big_mib << 20)],
                            Path(tmp) / "big")
        if not args.skip_default:
            rows += run_lab([], [(f"file {args.default_mib} MiB, netlab default (7 nodes, 10 shards)",
                                  args.default_mib << 20)], Path(tmp) / "default")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "rows": rows},
                                  indent=2) + "\n")
    print(f"{'what':<52} {'store MB/s':>10} {'peak MB':>8} {'read MB/s':>10} {'peak MB':>8}  exact")
    for r in rows:
        print(f"{r['what']:<52} {r['store_MBps']:>10} {r['store_peak_rss_MB']:>8} {r['read_MBps']:>10} "
              f"{r['read_peak_rss_MB']:>8}  {r['byte_exact']}")


if __name__ == "__main__":
    main()
