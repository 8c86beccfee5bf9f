"""Network definitions: one TOML file per network under bootstrap/ (shipped as package data), or any path.

`--network` takes a name from bootstrap/ or a path; the P2PWALRUS_NETWORK
environment variable and then `local` are the defaults. The bootstrap files are package
data (pyproject.toml), found beside this module in a checkout and in an installed package alike.
"""

from __future__ import annotations

import os
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import NetworkConfigError

if TYPE_CHECKING:
    from .core.wal.genesis import Genesis

BOOTSTRAP_DIR = Path(__file__).resolve().parent / "bootstrap"  # package data (a link to the checkout's bootstrap/)
DEFAULT_NETWORK = "local"
ENV_VAR = "P2PWALRUS_NETWORK"


@dataclass(frozen=True)
class Timings:
    """Upkeep timings of a network, in seconds: one set for a real network and netlab alike.

    Idle upkeep costs a few small frames per heartbeat link and interval, and nothing that
    grows with time spent idle: records are re-sent only when they change (or at
    ``record_refresh``), certificates and records are pulled only when digests differ."""

    heartbeat_interval: float = 5.0  # a beat on every heartbeat link (liveness.py)
    heartbeat_timeout: float = 15.0  # a link silent this long is dead: the peer froze or vanished
    record_refresh: float = 1200.0  # our node record is re-signed this often even if unchanged
    record_lifetime: float = 3600.0  # a signed node record expires after this (the backstop)
    refresh_interval: float = 600.0  # DHT routing-table refresh (py-libp2p's own period)
    repair_interval: float = 60.0  # repair sweep even without events (they trigger it at once)
    challenge_interval: float = 60.0  # storage challenges to random holders
    gossip_heartbeat: float = 1.0  # GossipSub heartbeat: mesh upkeep, an idle cost per peer
    gossip_degree: float = 6.0  # GossipSub mesh degree D (kept between D - 2 and 2 D): copies of each message per node
    uncertified_grace: float = 600.0  # slivers of a blob that got no certificate this long after its first upload are deleted


# Timings of earlier releases, when records were re-gossiped on a timer: still accepted in
# network files, and ignored.
RETIRED_TIMINGS = frozenset({"publish_interval", "member_ttl", "anti_entropy_interval", "pull_interval"})


@dataclass(frozen=True)
class NetworkConfig:
    name: str
    n_shards: int
    epoch_length: float  # seconds
    genesis_time: float  # unix time of epoch 0
    bootstrap: tuple[str, ...] = ()
    timings: Timings = field(default_factory=Timings)
    max_epochs_ahead: int = 1000
    source: str = ""
    # The [genesis] table (core/wal/genesis.py): committee, stakes, balances, prices. None: a
    # network with no ledger (no WAL), as every network file before it.
    genesis: "Genesis | None" = None

    def current_epoch(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        return max(0, int((now - self.genesis_time) // self.epoch_length))

    def epoch_start(self, epoch: int) -> float:
        return self.genesis_time + epoch * self.epoch_length

    def with_bootstrap(self, addrs) -> "NetworkConfig":
        from dataclasses import replace

        return replace(self, bootstrap=tuple(addrs))


def _require(table: dict, key: str, kind, where: str):
    if key not in table:
        raise NetworkConfigError(f"{where}: missing '{key}'")
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise NetworkConfigError(f"{where}: '{key}' must be {kind.__name__}, got {value!r}")
    return value


def parse_network(text: str, where: str = "<network>") -> NetworkConfig:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NetworkConfigError(f"{where}: not valid TOML ({exc})") from None
    name = _require(doc, "name", str, where)
    n_shards = _require(doc, "n_shards", int, where)
    epoch_length = _require(doc, "epoch_length", float, where)
    genesis = doc.get("genesis_time", 0.0)
    if not isinstance(genesis, (int, float)) or isinstance(genesis, bool):
        raise NetworkConfigError(f"{where}: 'genesis_time' must be a unix time")
    bootstrap = doc.get("bootstrap", [])
    if not isinstance(bootstrap, list) or not all(isinstance(a, str) for a in bootstrap):
        raise NetworkConfigError(f"{where}: 'bootstrap' must be a list of multiaddr strings")
    if not 4 <= n_shards <= 65535:
        raise NetworkConfigError(f"{where}: n_shards must be between 4 and 65535")
    if epoch_length <= 0:
        raise NetworkConfigError(f"{where}: epoch_length must be positive")
    timings_table = doc.get("timings", {})
    if not isinstance(timings_table, dict):
        raise NetworkConfigError(f"{where}: [timings] must be a table")
    known = Timings.__dataclass_fields__
    timings_table = {k: v for k, v in timings_table.items() if k not in RETIRED_TIMINGS}
    unknown = set(timings_table) - set(known)
    if unknown:
        raise NetworkConfigError(f"{where}: unknown timings {sorted(unknown)}; known: {sorted(known)}")
    timings = Timings(**{k: float(v) for k, v in timings_table.items()})
    max_epochs_ahead = int(doc.get("max_epochs_ahead", 1000))
    wal_genesis = None
    if "genesis" in doc:  # imported only here: commands on a network without one load no ledger code
        from .core.wal.genesis import GenesisError, genesis_from_table

        try:
            wal_genesis = genesis_from_table(doc["genesis"], network=name, n_shards=n_shards, genesis_time=float(genesis),
                                         epoch_length=epoch_length, max_epochs_ahead=max_epochs_ahead)
        except GenesisError as exc:
            raise NetworkConfigError(f"{where}: [genesis]: {exc}") from None
    return NetworkConfig(
        name=name,
        n_shards=n_shards,
        epoch_length=epoch_length,
        genesis_time=float(genesis),
        bootstrap=tuple(bootstrap),
        timings=timings,
        max_epochs_ahead=max_epochs_ahead,
        source=where,
        genesis=wal_genesis,
    )


_WHAT_TO_PASS = "pass --network a network name or the network.toml that `netlab up` wrote"


def known_networks() -> list[str]:
    """The names of the networks shipped with p2pwalrus (its bootstrap files)."""
    return sorted(p.stem for p in BOOTSTRAP_DIR.glob("*.toml"))


def bootstrap_file(name: str) -> Path | None:
    """The shipped network file of network `name`, or None if there is no such network."""
    if not name or os.sep in name or "/" in name or name.startswith("."):
        return None
    path = BOOTSTRAP_DIR / f"{name}.toml"
    return path if path.is_file() else None


def resolve_network_path(name_or_path: str | None) -> Path:
    choice = name_or_path or os.environ.get(ENV_VAR) or DEFAULT_NETWORK
    path = Path(choice).expanduser()
    is_name = path.suffix != ".toml" and os.sep not in choice and bootstrap_file(choice) is not None
    if path.is_dir() and not is_name:  # a netlab dir, say (a directory named like a network is not one)
        hint = f": did you mean {path / 'network.toml'}?" if (path / "network.toml").is_file() else ""
        raise NetworkConfigError(f"network file {path} is a directory; pass a network .toml file{hint}")
    if path.suffix == ".toml" or os.sep in choice or path.is_file():
        if not path.is_file():
            raise NetworkConfigError(f"network file {path} does not exist; {_WHAT_TO_PASS}")
        return path
    candidate = bootstrap_file(choice)
    if candidate is None:
        raise NetworkConfigError(f"unknown network {choice!r}: known networks are {known_networks()}, "
                                 "or pass a path to a .toml file")
    return candidate


def load_network(name_or_path: str | None = None) -> NetworkConfig:
    path = resolve_network_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NetworkConfigError(f"cannot read network file {path}: {exc.strerror}; {_WHAT_TO_PASS}") from None
    except UnicodeDecodeError as exc:
        raise NetworkConfigError(f"network file {path} is not a TOML text file (byte {exc.start} is not UTF-8); "
                                 f"{_WHAT_TO_PASS}") from None
    try:
        return parse_network(text, str(path))
    except NetworkConfigError as exc:
        raise NetworkConfigError(f"network file {exc}; fix the file, or {_WHAT_TO_PASS}") from None


def network_to_toml(cfg: NetworkConfig) -> str:
    lines = [
        f'name = "{cfg.name}"',
        f"n_shards = {cfg.n_shards}",
        f"epoch_length = {cfg.epoch_length}",
        f"genesis_time = {cfg.genesis_time}",
        f"max_epochs_ahead = {cfg.max_epochs_ahead}",
        "bootstrap = [",
        *[f'  "{a}",' for a in cfg.bootstrap],
        "]",
        "",
        "[timings]",
        *[f"{k} = {getattr(cfg.timings, k)}" for k in Timings.__dataclass_fields__],
    ]
    if cfg.genesis is not None:
        lines += ["", cfg.genesis.to_toml()]
    return "\n".join(lines) + "\n"
