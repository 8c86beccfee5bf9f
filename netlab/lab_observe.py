"""A testnet observed: each node's state from its node.json, whether they converged on one live set
and one shard map, who holds which shards.
"""

from __future__ import annotations

import time

from .lab_process import LabError


class LabObservation:
    """Lab methods: what the nodes say of themselves and of each other."""

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
