"""A scenario run's state (the testnet, the blobs stored, samples, events, figures) and what every step
shares: a connected client, the sampler, the nodes' decided epochs.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

from .lab import Lab
from .scenario_spec import Scenario, ScenarioError, StepFailed


@dataclass
class Run:
    sc: Scenario
    run_dir: Path
    require_repair: bool
    log: object
    lab: Lab | None = None
    wal: dict | None = None  # WAL held at each node at the end of the run (wal_report)
    t0: float = 0.0
    rng: random.Random = None
    blobs: dict = field(default_factory=dict)  # name -> {"id": bytes, "id_str", "size", "sha256", "data"}
    samples: list = field(default_factory=list)
    events: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    expected_prices: tuple | None = None  # (storage, write): what the last vote step's quorum-below gives

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    def event(self, label: str) -> None:
        self.events.append((self.now(), label))
        self.log(f"[dim]{self.now():7.1f}s[/dim] {label}")

    @property
    def n(self) -> int:
        return self.sc.shards

    def client_net(self):
        return self.lab.client_network()

    def blob_names(self, step) -> list[str]:
        names = step.get("blob")
        if names is None:
            return list(self.blobs)
        names = [names] if isinstance(names, str) else list(names)
        for b in names:
            if b not in self.blobs:
                raise StepFailed(f"no blob named {b!r} stored yet")
        return names

    def pick_nodes(self, step, want: str) -> list[int]:
        spec = step.get("node", step.get("nodes", "random"))
        alive = [n.index for n in self.lab.nodes if self.lab.alive(n)]
        dead = [n.index for n in self.lab.nodes if not self.lab.alive(n)]
        if isinstance(spec, int):
            return [spec]
        if spec == "newest":  # the node added last (a scenario's size may differ in its CI form)
            return [max(n.index for n in self.lab.nodes)]
        if isinstance(spec, list):
            return [int(x) for x in spec]
        pool = {"random": alive if want == "alive" else dead, "random_alive": alive, "random_dead": dead}.get(spec)
        if pool is None:
            raise ScenarioError(f"bad node {spec!r}: an index, a list, or random / random_alive / random_dead")
        if not pool:
            raise StepFailed(f"no {want} node to pick")
        count = int(step.get("count", 1))
        return sorted(self.rng.sample(pool, min(count, len(pool))))


async def in_thread(fn, *args, **kw):
    return await trio.to_thread.run_sync(lambda: fn(*args, **kw))


EPOCH_CACHE: list[Path] = []  # the run's cache of verified epoch states, shared by its clients


async def with_client(net, fn, timeout: float, run: "Run | None" = None):
    """``fn(client)`` with a connected client; given ``run``, the client is the testnet's
    faucet key (stores pay from it on a priced testnet, and it may delete what it stored)."""
    from p2pwalrus.client.client import open_client

    key = None
    if run is not None and run.lab is not None:
        from .wal import faucet_key

        key = faucet_key(run.lab.dir)
    with trio.fail_after(timeout):
        async with open_client(net, key, epoch_cache=EPOCH_CACHE[-1] if EPOCH_CACHE else None) as client:
            if run is not None:
                client.payer_journal = run.run_dir / "wallet"
            await client.refresh_membership()
            return await fn(client)


def describe_error(exc: BaseException) -> str:
    """The leaf errors inside trio's exception groups: the group's own text names none."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe_error(sub) for sub in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


async def read_one(run: Run, name: str, timeout: float) -> tuple[bool, str]:
    b = run.blobs[name]
    try:
        data = await with_client(run.client_net(), lambda c: c.read(b["id"]), timeout)
    except Exception as exc:
        return False, describe_error(exc)
    if data != b["data"]:
        return False, "bytes differ from what was stored"
    return True, "bytes match"


async def shards_stored(run: Run, names: list[str]) -> dict[str, int]:
    async def get(client):
        return {b: (await client.blob_status(run.blobs[b]["id"]))["shards_stored"] for b in names}

    return await with_client(run.client_net(), get, 20.0)


async def faucet_spent(run: Run) -> int:
    """FROST the faucet has spent so far (its genesis balance minus what it holds now)."""
    from .wal import FAUCET_BALANCE

    async def balance(client):
        return (await client.store_payer().wallet.account()).balance if client.store_payer() else FAUCET_BALANCE

    return FAUCET_BALANCE - await with_client(run.client_net(), balance, 30, run)


def decided_epochs(run: Run) -> dict[int, dict]:
    """node index -> the epochs section of its node.json (running nodes that wrote one)."""
    out = {}
    for r in run.lab.status()["nodes"]:
        if r["alive"] and r.get("epochs"):
            out[r["index"]] = r["epochs"]
    return out


async def committee_view(run: Run):
    """The latest decided state, verified from genesis by a client."""
    async def get(client):
        return client.epochs

    return await with_client(run.client_net(), get, 20.0)


async def sampler(run: Run) -> None:
    while True:
        t = run.now()
        alive = sum(1 for n in list(run.lab.nodes) if run.lab.alive(n)) if run.lab else 0
        shards = {}
        if run.blobs and alive:
            async def statuses(client):
                out = {}
                for name, b in list(run.blobs.items()):
                    try:
                        out[name] = (await client.blob_status(b["id"]))["shards_stored"]
                    except Exception:
                        out[name] = None
                return out

            try:
                shards = await with_client(run.client_net(), statuses, max(5.0, run.sc.sample_interval * 4))
            except Exception:
                shards = {name: None for name in run.blobs}
        run.samples.append({"t": t, "alive": alive, "shards": shards})
        if run.lab is not None:
            try:
                await in_thread(watch_wal, run)
            except Exception as exc:  # a node.json being rewritten, say: the next sample looks again
                run.log(f"[dim]wal sample: {exc!r}[/dim]")
        await trio.sleep(max(0.0, run.sc.sample_interval - (run.now() - t)))


def watch_wal(run: Run) -> None:
    """Each sample: at every running node that applied a new epoch change's reward credits
    since the last sample, WAL against the genesis supply right then (``wal_per_change``:
    change -> node index -> supply, balances + stakes + funds, funds, rewards paid)."""
    seen = run.figures.setdefault("wal_per_change", {})
    for r in run.lab.status()["nodes"]:
        ledger = r.get("ledger")
        if not (r.get("alive") and ledger and ledger.get("rewarded_epoch", -1) >= 0):
            continue  # no change applied there yet (genesis)
        change = str(ledger["rewarded_epoch"] + 1)  # the change that credited the epoch before it
        row = seen.setdefault(change, {})
        if str(r["index"]) not in row:
            row[str(r["index"])] = {k: ledger.get(k) for k in ("supply", "total", "funds", "rewards_paid")}


def node_files(run: Run) -> list[dict]:
    return [st for n in run.lab.nodes if run.lab.alive(n) and (st := run.lab.node_status_file(n))]
