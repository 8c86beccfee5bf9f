"""How fast a testnet notices a death, a freeze and a return (not a test).

    .venv/bin/python bench/liveness.py --dir DIR [--node 3]

On a running `netlab up` testnet: SIGKILL node N and time until every other node's live
set drops it, then `netlab start` it and time until every node lists it again; then the
same with SIGSTOP and SIGCONT. Live sets are read with `netlab status --json` every 0.5 s
(the figures include that polling).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

NETLAB = str(Path(sys.executable).with_name("netlab"))


def status(d: str) -> dict:
    out = subprocess.run([NETLAB, "status", "--dir", d, "--json"], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def wait(d: str, idx: int, want: int, timeout: float = 60.0) -> float | None:
    """Seconds until every other running node lists ``want`` live nodes and all agree."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        st = status(d)
        others = [n for n in st["nodes"] if n["index"] != idx and n["alive"]]
        if all(n.get("live") == want for n in others) and len({n["map_digest"] for n in others}) == 1:
            return time.monotonic() - t0
        time.sleep(0.5)
    return None


def fmt(x: float | None) -> str:
    return "NOT within 60 s" if x is None else f"{x:.1f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True, help="a running netlab testnet")
    ap.add_argument("--node", type=int, default=3, help="index of the node to kill and freeze")
    args = ap.parse_args()
    st = status(args.dir)
    n = len(st["nodes"])
    pid = st["nodes"][args.node]["pid"]
    os.kill(pid, signal.SIGKILL)
    print(f"SIGKILL: left every live set in {fmt(wait(args.dir, args.node, n - 1))}")
    t0 = time.monotonic()
    subprocess.run([NETLAB, "start", str(args.node), "--dir", args.dir], capture_output=True, check=True)
    back = wait(args.dir, -1, n)
    print(f"restart: back in every live set {fmt(None if back is None else time.monotonic() - t0)} after `netlab start` began")
    pid = status(args.dir)["nodes"][args.node]["pid"]
    os.kill(pid, signal.SIGSTOP)
    print(f"SIGSTOP: left every live set in {fmt(wait(args.dir, args.node, n - 1))}")
    os.kill(pid, signal.SIGCONT)
    print(f"SIGCONT: back in every live set in {fmt(wait(args.dir, -1, n))}")


if __name__ == "__main__":
    main()
