"""What every netlab module shares about node processes on this machine: whether a PID is alive and
still that node, free ports, JSON files written whole, NodeEntry (netlab's record of one node), LabError.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from p2pwalrus.durable import write_atomic


class LabError(Exception):
    """A netlab operation that cannot be done (no testnet, bad node index, ...)."""


def pid_alive(pid: int | None) -> bool:
    """True if ``pid`` is a running (not zombie) process; reaps it if it is our dead child."""
    if not pid:
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def pid_is_node(pid: int | None, data_dir: Path) -> bool:
    """True if ``pid`` is alive and is the p2pwalrus node of ``data_dir`` (not a recycled PID)."""
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return str(data_dir).encode() in cmdline and b"node" in cmdline


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def write_json_atomic(path: Path, obj) -> None:
    write_atomic(path, (json.dumps(obj, indent=2) + "\n").encode(), durable=False)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@dataclass
class NodeEntry:
    index: int
    peer_id: str
    port: int
    data_dir: str
    log: str
    pid: int | None = None
    state: str = "created"  # created | running | stopped | killed | wiped
    started_at: float | None = None

    @property
    def addr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.port}/p2p/{self.peer_id}"

    @property
    def listen(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.port}"
