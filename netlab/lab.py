"""A local testnet of p2pwalrus node processes, and the faults injected into it.

Everything lives in one directory (``DIR``):

- ``DIR/network.toml``: the network (the shipped timings, genesis = creation time); its
  bootstrap list names up to three running nodes and is rewritten when nodes
  come and go, so that ``p2pwalrus --network DIR/network.toml ...`` keeps working.
- ``DIR/netlab.json``: what netlab started: per node its index, peer ID, port,
  PID, addresses, data dir and log file, and the state netlab left it in.
- ``DIR/nodeXX/``: each node's data dir (``identity.key``, ``store/``,
  ``node.json`` written by the node, ``node.log``, and ``faults.json`` written
  by netlab for partitions and slow links).

Identities and ports are fixed before any process starts, so the network file
carries real bootstrap addresses from the beginning and a restarted node keeps
its peer ID and port. Node processes are detached (own session): they outlive
the ``netlab`` command that started them; ``netlab down`` ends them by PID,
checking first that the PID still is that node.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

from p2pwalrus.config import NetworkConfig, Timings, network_to_toml, parse_network
from p2pwalrus.durable import write_atomic

from .lab_faults import FAULTS_FILE, LabFaults
from .lab_lifecycle import NodeProcesses
from .lab_observe import LabObservation
from .lab_process import (
    LabError, NodeEntry, free_port, pid_alive, pid_is_node, port_free, read_json, write_json_atomic,
)

STATE_FILE = "netlab.json"
NETWORK_FILE = "network.toml"
MAX_BOOTSTRAP = 3

__all__ = ["FAULTS_FILE", "MAX_BOOTSTRAP", "NETWORK_FILE", "STATE_FILE", "Lab", "LabError", "NodeEntry",
           "free_port", "pid_alive", "pid_is_node", "port_free", "read_json", "up_timeout", "write_json_atomic"]


def up_timeout(n_nodes: int) -> float:
    """Seconds to wait for N fresh node processes to form one network on this machine."""
    return max(60.0, 3.0 * n_nodes)


class Lab(NodeProcesses, LabFaults, LabObservation):
    """A testnet directory: start, stop and fault node processes; read their status.

    This class keeps the directory's state (netlab.json, network.toml) and creates testnets;
    the processes are lab_lifecycle.py's, the faults lab_faults.py's, the status lab_observe.py's."""

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory).resolve()
        self.nodes: list[NodeEntry] = []
        self.n_shards = 0
        self.meta: dict = {}
        self._popen: dict[int, subprocess.Popen] = {}

    # --- persistence ---

    @property
    def state_path(self) -> Path:
        return self.dir / STATE_FILE

    @property
    def network_path(self) -> Path:
        return self.dir / NETWORK_FILE

    @classmethod
    def open(cls, directory) -> "Lab":
        lab = cls(directory)
        state = read_json(lab.state_path)
        if state is None:
            raise LabError(f"no testnet in {lab.dir} (no {STATE_FILE}): start one with `netlab up --dir {directory}`")
        lab.n_shards = state["n_shards"]
        lab.meta = {k: v for k, v in state.items() if k != "nodes"}
        lab.nodes = [NodeEntry(**{k: v for k, v in n.items() if k in NodeEntry.__dataclass_fields__})
                     for n in state["nodes"]]
        return lab

    def save(self) -> None:
        nodes = []
        for n in self.nodes:
            d = dict(n.__dict__)
            d["addrs"] = [n.addr]
            nodes.append(d)
        write_json_atomic(self.state_path, {**self.meta, "n_shards": self.n_shards, "network": str(self.network_path),
                                             "dir": str(self.dir), "nodes": nodes})

    @contextlib.contextmanager
    def locked(self):
        """Serialise netlab commands on one directory (state file read-modify-write)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".netlab.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def base_network(self) -> NetworkConfig:
        return parse_network(self.network_path.read_text(), str(self.network_path))

    def write_network(self) -> None:
        """network.toml with the first running nodes (up to 3) as bootstrap peers."""
        net = self.base_network()
        running = [n for n in self.nodes if n.state == "running"] or self.nodes
        count = self.meta.get("bootstrap_count", MAX_BOOTSTRAP)
        text = network_to_toml(net.with_bootstrap([n.addr for n in running[:count]]))
        write_atomic(self.network_path, text.encode(), durable=False)

    def client_network(self) -> NetworkConfig:
        """The network as a client should see it: every node believed up as a bootstrap peer."""
        up = [n.addr for n in self.nodes if self.alive(n)]
        return self.base_network().with_bootstrap(up or [n.addr for n in self.nodes])

    # --- creation ---

    @classmethod
    def create(cls, directory, n_nodes: int, n_shards: int, *, base_port: int | None = None,
               epoch_length: float = 3600.0, timings: Timings | None = None, name: str = "local",
               bootstrap_count: int = MAX_BOOTSTRAP, storage_price: int = 0, write_price: int = 0) -> "Lab":
        lab = cls(directory)
        if lab.state_path.exists():
            old = Lab.open(directory)
            if any(old.alive(n) for n in old.nodes):
                raise LabError(f"a testnet is already running in {lab.dir}: `netlab down --dir {directory}` first")
            shutil.rmtree(lab.dir)
        lab.dir.mkdir(parents=True, exist_ok=True)
        lab.n_shards = n_shards
        net = NetworkConfig(name=name, n_shards=n_shards, epoch_length=epoch_length, genesis_time=time.time() - 1,
                            timings=timings or Timings())
        lab.network_path.write_text(network_to_toml(net))
        lab.meta = {"created": time.time(), "base_port": base_port, "bootstrap_count": bootstrap_count}
        for _ in range(n_nodes):
            lab._new_entry(base_port)
        from .wal import netlab_genesis  # every node staked, and a faucet (netlab/wal.py)

        net = replace(net, genesis=netlab_genesis(lab.dir, net, [n.peer_id for n in lab.nodes],
                                                  storage_price=storage_price, write_price=write_price))
        lab.network_path.write_text(network_to_toml(net))
        lab.write_network()
        lab.save()
        return lab

    def _new_entry(self, base_port: int | None) -> NodeEntry:
        from p2pwalrus.p2p.identity import load_or_create_identity, peer_id_of

        index = len(self.nodes)
        data_dir = self.dir / f"node{index:02d}"
        peer_id = str(peer_id_of(load_or_create_identity(data_dir)))
        used = {n.port for n in self.nodes}
        if base_port:
            port = base_port + index
            if not port_free(port):
                raise LabError(f"port {port} (base port {base_port} + node {index}) is in use")
        else:
            port = free_port()
            while port in used:
                port = free_port()
        entry = NodeEntry(index=index, peer_id=peer_id, port=port, data_dir=str(data_dir),
                          log=str(data_dir / "node.log"))
        self.nodes.append(entry)
        return entry

    # --- node processes ---

    def node(self, index: int) -> NodeEntry:
        if not 0 <= index < len(self.nodes):
            raise LabError(f"no node {index}: this testnet has nodes 0..{len(self.nodes) - 1}")
        return self.nodes[index]

    def alive(self, n: NodeEntry) -> bool:
        return pid_is_node(n.pid, Path(n.data_dir))

    def node_status_file(self, n: NodeEntry) -> dict | None:
        return read_json(Path(n.data_dir) / "node.json")

    def ready(self, n: NodeEntry) -> bool:
        """The node process runs and has written its status (so it listens and has a shard map)."""
        st = self.node_status_file(n)
        return self.alive(n) and st is not None and st.get("pid") == n.pid
