"""`netlab watch`: sample a running testnet every few seconds: per-node CPU, live-set sizes,
shard-map digests. What idle upkeep costs and whether the nodes stay one network."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from .lab import Lab

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class Sample:
    t: float  # seconds since the watch began
    cpu: dict[int, float]  # node index -> % of one core over the last interval
    live: dict[int, int | None]  # node index -> live-set size
    maps: int  # distinct shard maps among running nodes
    alive: int
    converged: bool

    @property
    def total_cpu(self) -> float:
        return sum(self.cpu.values())

    def line(self) -> str:
        sizes = sorted(v for v in self.live.values() if v is not None)
        per_node = " ".join(f"{self.cpu[i]:.1f}" for i in sorted(self.cpu))
        return (f"{self.t:6.0f} s  cpu {self.total_cpu:5.1f}% together  live sets "
                f"{sizes[0] if sizes else '-'}..{sizes[-1] if sizes else '-'} of {self.alive}  maps {self.maps}  "
                f"{'one network' if self.converged else 'NOT one network'}  per node: {per_node}")


def watch(lab: Lab, every: float, duration: float, emit=print) -> list[Sample]:
    """Sample every ``every`` seconds for ``duration`` seconds; each sample is emitted as it comes."""
    samples: list[Sample] = []
    t0 = time.monotonic()
    pids = {n.index: n.pid for n in lab.nodes if lab.alive(n)}
    before = {i: cpu_seconds(p) for i, p in pids.items()}
    last = t0
    while time.monotonic() - t0 < duration - 1e-6:
        time.sleep(max(0.0, min(every, duration - (time.monotonic() - t0))))
        now = time.monotonic()
        after = {i: cpu_seconds(p) for i, p in pids.items()}
        cpu = {i: 100 * (after[i] - before[i]) / (now - last) for i in pids
               if after[i] is not None and before[i] is not None}
        before, last = after, now
        st = lab.status()
        s = Sample(round(now - t0, 1), cpu, {r["index"]: r["live"] for r in st["nodes"] if r["alive"]},
                   st["map_digests"], st["nodes_alive"], st["converged"])
        samples.append(s)
        emit(s.line())
    return samples


def summary(samples: list[Sample], lab: Lab) -> dict:
    alive = [n for n in lab.nodes if lab.alive(n)]
    return {
        "samples": len(samples),
        "seconds": samples[-1].t if samples else 0.0,
        "cpu_mean_percent": round(sum(s.total_cpu for s in samples) / max(1, len(samples)), 2),
        "cpu_max_percent": round(max((s.total_cpu for s in samples), default=0.0), 2),
        "one_network_throughout": all(s.converged for s in samples),
        "max_maps": max((s.maps for s in samples), default=0),
        "min_live": min((v for s in samples for v in s.live.values() if v is not None), default=0),
        "nodes": len(alive),
        "rss_mb_mean": round(sum(rss_mb(n.pid) for n in alive) / max(1, len(alive)), 1),
    }
