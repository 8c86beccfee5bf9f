"""The fault-injection file, DATA_DIR/faults.json: its format, defined once.

netlab writes it (netlab/lab.py: partitions, slow links) and a storage node reads it
every few seconds (node/faults.py). Pure: no I/O, no event loop; ``parse`` validates
what a node must not trust blindly and ``to_json`` is what netlab writes.

    {"deny": ["12D3KooW...", ...],   peers this node refuses (a partition)
     "delay_ms": 250,                added to each of its answers, 0..60000
     "corrupt_slivers": false,       serve slivers with their first bytes flipped (a liar)
     "updated": 1764756000.0}        when netlab wrote it (optional; every write changes the file)

Unknown keys are ignored, so an older node reads a newer file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

FILE_NAME = "faults.json"
MAX_DELAY_MS = 60_000


@dataclass(frozen=True)
class Faults:
    """The faults one node applies; the default is none."""

    deny: frozenset[str] = field(default_factory=frozenset)
    delay_ms: int | float = 0
    corrupt_slivers: bool = False
    updated: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "deny", frozenset(self.deny))

    @property
    def delay(self) -> float:
        """The added delay, in seconds."""
        return self.delay_ms / 1000

    def to_json(self) -> dict:
        """The JSON object netlab writes (deny sorted: the same faults, the same bytes)."""
        obj = {"deny": sorted(self.deny), "delay_ms": self.delay_ms, "corrupt_slivers": self.corrupt_slivers}
        if self.updated is not None:
            obj["updated"] = self.updated
        return obj


NONE = Faults()


def parse(raw: bytes | str | dict) -> Faults:
    """A faults file's bytes (or its decoded object) as Faults; ValueError says what is wrong."""
    if isinstance(raw, (bytes, bytearray, memoryview, str)):
        try:
            obj = json.loads(bytes(raw) if not isinstance(raw, str) else raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"not JSON: {exc}") from None
    else:
        obj = raw
    if not isinstance(obj, dict):
        raise ValueError("faults must be a JSON object")
    deny = obj.get("deny", [])
    if not isinstance(deny, list) or not all(isinstance(p, str) for p in deny):
        raise ValueError("'deny' must be a list of peer IDs")
    delay_ms = obj.get("delay_ms", 0)
    if (isinstance(delay_ms, bool) or not isinstance(delay_ms, (int, float)) or not math.isfinite(delay_ms)
            or not 0 <= delay_ms <= MAX_DELAY_MS):
        raise ValueError(f"'delay_ms' must be between 0 and {MAX_DELAY_MS}")
    corrupt = obj.get("corrupt_slivers", False)
    if not isinstance(corrupt, bool):
        raise ValueError("'corrupt_slivers' must be true or false")
    updated = obj.get("updated")
    if updated is not None and (isinstance(updated, bool) or not isinstance(updated, (int, float))):
        raise ValueError("'updated' must be a number (a Unix time)")
    return Faults(deny=frozenset(deny), delay_ms=delay_ms, corrupt_slivers=corrupt,
                  updated=float(updated) if updated is not None else None)
