"""A scenario file read and checked: its keys, its steps' actions, sizes and bounds (the format: netlab/scenario.py).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from p2pwalrus.core import sizes
from p2pwalrus.core.thresholds import max_faulty


SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"


TOP_KEYS = {"name", "description", "nodes", "shards", "seed", "sample_interval", "size", "epoch_length", "steps",
            "ci", "up_timeout", "storage_price", "write_price"}


class ScenarioError(Exception):
    pass


class StepFailed(Exception):
    pass


@dataclass
class Scenario:
    name: str
    nodes: int
    shards: int
    steps: list[dict]
    description: str = ""
    seed: int = 1
    sample_interval: float = 1.0
    size: str = "256K"
    epoch_length: float = 3600.0
    up_timeout: float = 60.0
    ci: bool = False
    source: str = ""
    storage_price: int = 0  # genesis prices (FROST per 1 MiB unit): stores pay from the testnet's faucet
    write_price: int = 0


def parse_size(text) -> int:
    try:
        return sizes.parse_size(text)
    except ValueError as exc:
        raise ScenarioError(str(exc)) from None


def eval_bound(value, n: int) -> int:
    """'n', 'f', 'n-f', 'n-2f', '2f+1', 7 -> an integer for n shards."""
    if isinstance(value, int):
        return value
    f = max_faulty(n)
    text = str(value).replace(" ", "").lower()
    if not re.fullmatch(r"[+-]?(\d*[nf]?)([+-]\d*[nf]?)*", text) or not text:
        raise ScenarioError(f"bad bound {value!r}: use n, f, n-f, n-2f, 2f+1 or an integer")
    total = 0
    for sign, num, var in re.findall(r"([+-]?)(\d*)([nf]?)", text):
        if not num and not var:
            continue
        k = int(num) if num else 1
        k *= {"": 1, "n": n, "f": f}[var]
        total += -k if sign == "-" else k
    return total


def load_scenario(name_or_path: str, *, ci: bool = False) -> Scenario:
    path = Path(name_or_path)
    if not path.is_file():
        shipped = SCENARIO_DIR / f"{name_or_path}.toml"
        if not shipped.is_file():
            known = sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))
            raise ScenarioError(f"no scenario file {name_or_path!r}; shipped scenarios: {known}")
        path = shipped
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML ({exc})") from None
    return parse_scenario(doc, ci=ci, source=str(path))


def parse_scenario(doc: dict, *, ci: bool = False, source: str = "<scenario>") -> Scenario:
    from .scenario_steps import ACTIONS  # the steps (and trio) load only once a file is read

    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise ScenarioError(f"{source}: unknown keys {sorted(unknown)}")
    doc = dict(doc)
    overrides = doc.pop("ci", {})
    if ci:
        doc.update(overrides)
    steps = doc.get("steps", [])
    if not steps:
        raise ScenarioError(f"{source}: no [[steps]]")
    for i, st in enumerate(steps):
        if "action" not in st:
            raise ScenarioError(f"{source}: step {i} has no action")
        if st["action"] not in ACTIONS:
            raise ScenarioError(f"{source}: step {i}: unknown action {st['action']!r}; known: {sorted(ACTIONS)}")
    return Scenario(
        name=doc.get("name", Path(source).stem), nodes=int(doc.get("nodes", 7)), shards=int(doc.get("shards", 10)),
        steps=[dict(s) for s in steps], description=doc.get("description", ""), seed=int(doc.get("seed", 1)),
        sample_interval=float(doc.get("sample_interval", 1.0)), size=str(doc.get("size", "256K")),
        epoch_length=float(doc.get("epoch_length", 3600.0)), up_timeout=float(doc.get("up_timeout", 60.0)),
        ci=ci, source=source, storage_price=amount_of(doc.get("storage_price", 0)),
        write_price=amount_of(doc.get("write_price", 0)))


def amount_of(value) -> int:
    from p2pwalrus.core.wal.amounts import AmountError, parse_amount

    try:
        return parse_amount(value)
    except AmountError as exc:
        raise ScenarioError(str(exc)) from None
