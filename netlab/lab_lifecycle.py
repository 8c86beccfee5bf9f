"""Starting and ending a testnet's processes: nodes spawned, signalled, waited for, killed, stopped,
restarted, added and wiped, and the optional HTTP gateway beside them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .lab_process import LabError, NodeEntry, free_port, pid_alive, port_free


class NodeProcesses:
    """Lab methods: the node processes and the gateway."""

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

    def _change(self, index: int, change) -> NodeEntry:
        """``change(node)``, then the network file and the state file follow."""
        n = self.node(index)
        change(n)
        self.write_network()
        self.save()
        return n

    def kill(self, index: int) -> NodeEntry:
        return self._change(index, lambda n: self.stop_node(n, graceful=False))

    def stop(self, index: int) -> NodeEntry:
        return self._change(index, lambda n: self.stop_node(n, graceful=True))

    def start(self, index: int) -> NodeEntry:
        return self._change(index, self.spawn)

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
