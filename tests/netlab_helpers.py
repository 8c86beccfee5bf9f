"""Helpers shared by the netlab test modules (real node processes)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from netlab.lab import Lab, pid_alive


def node_json(lab: Lab, i: int) -> dict:
    return json.loads((Path(lab.nodes[i].data_dir) / "node.json").read_text())


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def gone(pids) -> bool:
    return all(not pid_alive(p) for p in pids)
