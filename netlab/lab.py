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
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from p2pwalrus.config import NetworkConfig, Timings, network_to_toml, parse_network
from p2pwalrus.core.faults import FILE_NAME as FAULTS_FILE_NAME, NONE as NO_FAULTS, Faults, parse as parse_faults

STATE_FILE = "netlab.json"
NETWORK_FILE = "network.toml"
FAULTS_FILE = FAULTS_FILE_NAME  # per node, read by the node; its format: p2pwalrus/core/faults.py
MAX_BOOTSTRAP = 3

def up_timeout(n_nodes: int) -> float:
    """Seconds to wait for N fresh node processes to form one network on this machine."""
    return max(60.0, 3.0 * n_nodes)


class LabError(Exception):
    """A netlab operation that cannot be done (no testnet, bad node index, ...)."""


# --- processes ------------------------------------------------------------------------


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


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --- the testnet ------------------------------------------------------------------------


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


class Lab:
    """A testnet directory: start, stop and fault node processes; read their status."""

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
        _write_json_atomic(self.state_path, {**self.meta, "n_shards": self.n_shards, "network": str(self.network_path),
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
        tmp = self.network_path.with_name(f".{NETWORK_FILE}.tmp-{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, self.network_path)

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

    def spawn(self, n: NodeEntry) -> None:
        if self.alive(n):
            raise LabError(f"node {n.index} is already running (pid {n.pid})")
        if not port_free(n.port):
            # A killed node's port can linger briefly; a foreign listener would be an error.
            time.sleep(0.5)
        data_dir = Path(n.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        log = open(n.log, "ab")
        log.write(f"--- netlab: starting node {n.index} at {time.strftime('%H:%M:%S')} ---\n".encode())
        log.flush()
        cmd = [sys.executable, "-m", "p2pwalrus", "--network", str(self.network_path), "node",
               "--data-dir", str(data_dir), "--listen", n.listen]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, close_fds=True)
        log.close()
        self._popen[proc.pid] = proc
        n.pid = proc.pid
        n.state = "running"
        n.started_at = time.time()

    def signal_node(self, n: NodeEntry, sig: int) -> bool:
        if not self.alive(n):
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(n.pid, sig)
        return True

    def wait_exit(self, n: NodeEntry, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(n.pid):
                return True
            time.sleep(0.05)
        return not pid_alive(n.pid)

    def stop_node(self, n: NodeEntry, *, graceful: bool = True, timeout: float = 10.0, state: str | None = None) -> None:
        if self.alive(n):
            if graceful:
                self.signal_node(n, signal.SIGTERM)
                if not self.wait_exit(n, timeout):
                    self.signal_node(n, signal.SIGKILL)
                    self.wait_exit(n, 5.0)
            else:
                self.signal_node(n, signal.SIGKILL)
                self.wait_exit(n, 5.0)
        self._popen.pop(n.pid or -1, None)
        n.state = state or ("stopped" if graceful else "killed")

    # --- commands (each saves the state file) ---

    def up(self, *, stagger: float = 0.25, ready_timeout: float = 30.0, log=lambda msg: None) -> None:
        """Start every node not running: the first one alone, then the rest staggered."""
        todo = [n for n in self.nodes if not self.alive(n)]
        if not todo:
            return
        first, rest = todo[0], todo[1:]
        self.spawn(first)
        self.save()
        self.wait_ready([first], ready_timeout)
        log(f"node {first.index} up ({first.peer_id})")
        for n in rest:
            time.sleep(stagger)
            self.spawn(n)
        self.write_network()
        self.save()

    def _exited(self, n: NodeEntry) -> bool:
        """Whether a node process has ended. For one we spawned, ask its Popen: between fork
        and exec /proc/PID/cmdline is still ours, so ``alive`` says no for a moment (a node
        reported as exited during start-up kept running, orphaned)."""
        proc = self._popen.get(n.pid or -1)
        if proc is not None:
            return proc.poll() is not None
        return not self.alive(n)

    def wait_ready(self, nodes: list[NodeEntry], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            missing = [n for n in nodes if not self.ready(n)]
            if not missing:
                return
            dead = [n for n in missing if self._exited(n)]
            if dead:
                raise LabError(f"node {dead[0].index} exited during start-up; see {dead[0].log}")
            if time.monotonic() > deadline:
                raise LabError(f"node(s) {[n.index for n in missing]} not ready after {timeout:.0f} s")
            time.sleep(0.1)

    # --- the HTTP gateway (optional) ---

    def gateway_url(self) -> str | None:
        gw = self.meta.get("gateway")
        return f"http://127.0.0.1:{gw['port']}" if gw and pid_alive(gw.get("pid")) else None

    def start_gateway(self, port: int | None = None, timeout: float = 30.0) -> str:
        """Start `p2pwalrus gateway` next to the nodes; return its URL once /status answers."""
        import urllib.request

        port = port or free_port()
        log_path = self.dir / "gateway.log"
        cmd = [sys.executable, "-m", "p2pwalrus", "--network", str(self.network_path), "gateway",
               "--bind", f"127.0.0.1:{port}", "--wallet-dir", str(self.dir / "gateway")]  # its own WAL account
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, close_fds=True)
        self._popen[proc.pid] = proc
        self.meta["gateway"] = {"pid": proc.pid, "port": port, "log": str(log_path)}
        self.save()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url + "/status", timeout=2) as r:
                    if r.status == 200:
                        return url
            except OSError:
                pass
            if not pid_alive(proc.pid):
                raise LabError(f"the gateway exited during start-up; see {log_path}")
            if time.monotonic() > deadline:
                raise LabError(f"the gateway did not answer within {timeout:.0f} s; see {log_path}")
            time.sleep(0.2)

    def stop_gateway(self, timeout: float = 10.0) -> int | None:
        gw = self.meta.pop("gateway", None)
        if not gw:
            return None
        pid = gw.get("pid")
        try:
            is_gateway = b"gateway" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            is_gateway = False
        if is_gateway and pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.save()
        return pid

    def down(self, timeout: float = 10.0) -> list[int]:
        """SIGTERM every node (and the gateway), wait, SIGKILL leftovers; returns the node PIDs ended."""
        self.stop_gateway(timeout)
        ended = []
        running = [n for n in self.nodes if self.alive(n)]
        for n in running:
            self.signal_node(n, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for n in running:
            if not self.wait_exit(n, max(0.1, deadline - time.monotonic())):
                self.signal_node(n, signal.SIGKILL)
                self.wait_exit(n, 5.0)
            ended.append(n.pid)
        for n in self.nodes:
            if n.state == "running":
                n.state = "stopped"
        self.save()
        return ended

    def kill(self, index: int) -> NodeEntry:
        n = self.node(index)
        self.stop_node(n, graceful=False)
        self.write_network()
        self.save()
        return n

    def stop(self, index: int) -> NodeEntry:
        n = self.node(index)
        self.stop_node(n, graceful=True)
        self.write_network()
        self.save()
        return n

    def start(self, index: int) -> NodeEntry:
        n = self.node(index)
        self.spawn(n)
        self.write_network()
        self.save()
        return n

    def add(self) -> NodeEntry:
        n = self._new_entry(self.meta.get("base_port"))
        self.write_network()  # bootstrap: running nodes, not the new one
        self.spawn(n)
        self.save()
        return n

    def wipe(self, index: int, *, new_identity: bool = False, restart: bool = True) -> NodeEntry:
        """Kill the node, delete its disk (all but its identity and log), restart it empty.

        The identity is kept by default so the node keeps its index and peer ID and comes
        back owning the same shards, with nothing in them: exactly a node whose disk failed
        and was replaced. ``new_identity`` deletes the key too (a different node joins).
        """
        n = self.node(index)
        self.stop_node(n, graceful=False, state="wiped")
        keep = {"node.log"} | (set() if new_identity else {"identity.key"})
        for child in Path(n.data_dir).iterdir():
            if child.name in keep:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        if new_identity:
            from p2pwalrus.p2p.identity import load_or_create_identity, peer_id_of

            n.peer_id = str(peer_id_of(load_or_create_identity(n.data_dir)))
        if restart:
            self.write_network()
            self.spawn(n)
        self.write_network()
        self.save()
        return n

    # --- partitions and slow links (applied by the nodes: faults.json) ---

    def faults_of(self, n: NodeEntry) -> Faults:
        """The faults node `n` is told to apply (none if its file is missing or unreadable)."""
        try:
            return parse_faults((Path(n.data_dir) / FAULTS_FILE).read_bytes())
        except (OSError, ValueError):
            return NO_FAULTS

    def set_faults(self, n: NodeEntry, faults: Faults) -> None:
        """Write node `n`'s faults file; the node applies it within FAULTS_POLL seconds."""
        _write_json_atomic(Path(n.data_dir) / FAULTS_FILE, replace(faults, updated=time.time()).to_json())

    def parse_groups(self, spec: str) -> list[list[int]]:
        """``"0,1/2,3"`` -> [[0, 1], [2, 3]]; unlisted nodes join the last group."""
        groups = []
        for part in spec.split("/"):
            try:
                idx = [int(x) for x in part.split(",") if x.strip()]
            except ValueError:
                raise LabError(f"bad partition {spec!r}: use node indices like 0,1/2,3") from None
            for i in idx:
                self.node(i)
            groups.append(idx)
        listed = [i for g in groups for i in g]
        if len(set(listed)) != len(listed):
            raise LabError(f"bad partition {spec!r}: a node is in two groups")
        rest = [n.index for n in self.nodes if n.index not in listed]
        if len(groups) == 1:
            groups.append(rest)
        else:
            groups[-1].extend(rest)
        if len([g for g in groups if g]) < 2:
            raise LabError(f"partition {spec!r} leaves everyone on one side")
        return groups

    def partition(self, spec: str) -> list[list[int]]:
        groups = self.parse_groups(spec)
        side = {i: gi for gi, g in enumerate(groups) for i in g}
        for n in self.nodes:
            deny = [m.peer_id for m in self.nodes if side[m.index] != side[n.index]]
            self.set_faults(n, replace(self.faults_of(n), deny=frozenset(deny)))
        self.meta["partition"] = groups
        self.save()
        return groups

    def heal(self) -> None:
        for n in self.nodes:
            self.set_faults(n, replace(self.faults_of(n), deny=frozenset()))
        self.meta.pop("partition", None)
        self.save()

    def slow(self, index: int, delay_ms: int) -> NodeEntry:
        n = self.node(index)
        self.set_faults(n, replace(self.faults_of(n), delay_ms=int(delay_ms)))
        return n

    # --- observation ---

    def status(self) -> dict:
        rows = []
        alive_ids = set()
        for n in self.nodes:
            alive = self.alive(n)
            st = self.node_status_file(n) or {}
            fresh = alive and st.get("pid") == n.pid
            if alive:
                alive_ids.add(n.peer_id)
            faults = self.faults_of(n)
            rows.append({
                "index": n.index, "peer_id": n.peer_id, "pid": n.pid if alive else None, "alive": alive,
                "ready": fresh, "state": n.state, "port": n.port,
                # a node counts itself live before its own record comes back to it
                "live": len(set(st.get("live", [])) | {n.peer_id}) if fresh else None,
                "live_peers": sorted(set(st.get("live", [])) | {n.peer_id}) if fresh else [],
                "map_digest": st.get("map_digest", "") if fresh else "",
                "shards": st.get("shards", []) if fresh else [],
                "blobs": st.get("blobs") if fresh else None,
                "ledger": st.get("ledger") if fresh else None,  # WAL held vs the genesis supply
                "epochs": st.get("epochs") if fresh else None,  # the decided epoch state it holds
                "denied": len(faults.deny), "delay_ms": faults.delay_ms,
            })
        up = [r for r in rows if r["alive"]]
        digests = {r["map_digest"] for r in up}
        converged = bool(up) and all(r["ready"] and set(r["live_peers"]) == alive_ids for r in up) and len(digests) == 1
        return {"dir": str(self.dir), "network": str(self.network_path), "n_shards": self.n_shards,
                "nodes_alive": len(up), "nodes_total": len(rows), "converged": converged,
                "map_digests": len(digests), "partition": self.meta.get("partition"),
                "wal_conserved": all(r["ledger"]["total"] == r["ledger"]["supply"] for r in up if r["ledger"]),
                "nodes": rows}

    def converged(self) -> bool:
        return self.status()["converged"]

    def wait_converged(self, timeout: float = 30.0, poll: float = 0.2, stable: float = 1.0) -> float:
        """Until every running node lists exactly the running nodes as live and all share one map,
        and that holds for ``stable`` seconds (a restarted node rewrites its view as it learns)."""
        t0 = time.monotonic()
        since = None
        while True:
            st = self.status()
            if st["converged"]:
                since = since or time.monotonic()
                if time.monotonic() - since >= stable:
                    return since - t0
            else:
                since = None
            dead = [n for n in self.nodes if n.state == "running" and self._exited(n)]
            if dead and time.monotonic() - t0 > 2.0:
                # a node that netlab started has exited by itself: say so instead of timing out
                n = dead[0]
                if n.started_at and time.time() - n.started_at < 60:
                    raise LabError(f"node {n.index} exited unexpectedly; see {n.log}")
            if time.monotonic() - t0 > timeout:
                lagging = [r["index"] for r in st["nodes"] if r["alive"] and
                           (not r["ready"] or r["live"] != st["nodes_alive"])]
                raise LabError(f"not converged after {timeout:.0f} s: {st['nodes_alive']} nodes running, "
                               f"{st['map_digests']} distinct shard maps, nodes with a wrong live set: {lagging}")
            time.sleep(poll)

    def shard_holders(self) -> dict[int, list[int]]:
        """node index -> shards it holds, from the running nodes' own status files."""
        return {r["index"]: r["shards"] for r in self.status()["nodes"] if r["alive"]}
