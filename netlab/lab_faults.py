"""Faults injected into a running testnet: partitions and slow links, written to each node's
faults.json (its format: p2pwalrus/core/faults.py) and applied by the node itself.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from p2pwalrus.core.faults import FILE_NAME as FAULTS_FILE_NAME, NONE as NO_FAULTS, Faults, parse as parse_faults

from .lab_process import LabError, NodeEntry, write_json_atomic

FAULTS_FILE = FAULTS_FILE_NAME  # per node, read by the node; its format: p2pwalrus/core/faults.py


class LabFaults:
    """Lab methods: partitions and slow links."""

    def faults_of(self, n: NodeEntry) -> Faults:
        """The faults node `n` is told to apply (none if its file is missing or unreadable)."""
        try:
            return parse_faults((Path(n.data_dir) / FAULTS_FILE).read_bytes())
        except (OSError, ValueError):
            return NO_FAULTS

    def set_faults(self, n: NodeEntry, faults: Faults) -> None:
        """Write node `n`'s faults file; the node applies it within FAULTS_POLL seconds."""
        write_json_atomic(Path(n.data_dir) / FAULTS_FILE, replace(faults, updated=time.time()).to_json())

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
