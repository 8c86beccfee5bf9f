"""Read-after-write through the CLI (issue 18): once `p2pwalrus store` has printed a blob ID,
a `blob-status` and a `read` from other processes, run at once, find the blob certified.

Ten node processes, every command a subprocess. CI runs 5 rounds; for the full figure:

    P2PWALRUS_RAW_RUNS=100 .venv/bin/pytest -q -m slow tests/test_read_after_write.py -s
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNS = int(os.environ.get("P2PWALRUS_RAW_RUNS", "5"))


def env(network: Path, client_dir: Path) -> dict:
    paths = [str(REPO), os.environ.get("PYTHONPATH")]
    e = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return {**e, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "P2PWALRUS_NETWORK": str(network),
            "P2PWALRUS_CLIENT_DIR": str(client_dir)}


def run(e: dict, *args: str, module: str = "p2pwalrus", timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, env=e, timeout=timeout)


@pytest.mark.slow
@pytest.mark.timeout(120 + 10 * RUNS)
def test_store_then_status_and_read_from_other_processes(tmp_path):
    lab = tmp_path / "lab"
    e = env(lab / "network.toml", tmp_path / "client")
    up = run(e, "up", "--nodes", "10", "--shards", "31", "--dir", str(lab), module="netlab.cli", timeout=180)
    assert up.returncode == 0, up.stderr.decode()
    failures = []
    timings = []
    try:
        for i in range(RUNS):
            data = os.urandom(1000 + 997 * i)  # a new blob each round
            src = tmp_path / f"in{i}.bin"
            src.write_bytes(data)
            t0 = time.monotonic()
            stored = run(e, "store", str(src))
            t1 = time.monotonic()
            if stored.returncode != 0:
                failures.append(f"round {i}: store failed: {stored.stderr.decode()}")
                continue
            blob_id = stored.stdout.decode().strip().splitlines()[-1]
            status = run(e, "blob-status", blob_id, "--json")
            out = tmp_path / f"out{i}.bin"
            read = run(e, "read", blob_id, "-o", str(out))
            timings.append(t1 - t0)
            state = json.loads(status.stdout) if status.returncode == 0 else {"error": status.stderr.decode()}
            if state.get("status") != "certified":
                failures.append(f"round {i}: blob-status right after store: {state}")
            if read.returncode != 0 or out.read_bytes() != data:
                failures.append(f"round {i}: read right after store: {read.returncode} {read.stderr.decode()}")
    finally:
        down = run(e, "down", "--dir", str(lab), module="netlab.cli")
    timings.sort()
    print(f"\nread-after-write: {RUNS - len(failures)} of {RUNS} rounds found the blob certified and read it; "
          f"store took {timings[0]:.2f}..{timings[-1]:.2f} s (median {timings[len(timings) // 2]:.2f} s)"
          if timings else "no store succeeded")
    assert down.returncode == 0, down.stderr.decode()
    assert not failures, "\n".join(failures)
