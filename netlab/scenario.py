"""Scenario files: a scripted timeline of stores, reads and faults on a netlab testnet.

A scenario is TOML::

    name = "lose_f"
    description = "..."
    nodes = 7            # testnet size (an `up` step is implied if the first step is not one)
    shards = 10
    seed = 1             # every random choice (blob bytes, "random" nodes) derives from it
    sample_interval = 1.0
    size = "1M"          # default blob size for store steps

    [[steps]]
    action = "store"     # store | read | kill | stop | start | wipe | add | kill_holders |
    blob = "a"           # partition | heal | slow | wait_converged | wait_repaired |
                         # assert | sleep | up | stake | unstake | wait_epoch
    [ci]                 # overrides for `netlab run --ci` (any top-level key, plus `steps`)
    nodes = 5
    size = "64K"

Step fields: ``node`` (index, list, or "random"/"random_alive"/"random_dead"/"newest"),
``blob`` (name; default: every blob stored so far), ``size``, ``timeout``,
``required`` (wait_repaired: fail the run on timeout, default true), ``groups``
("0,1/2,3"), ``delay_ms``, ``seconds``, ``shards`` (kill_holders: "f" or a count),
``metric``/``min``/``max`` (assert; metric is shards_stored, nodes_alive, converged
or readable; bounds may be "n", "f", "n-f", "n-2f", "2f+1" or integers), ``amount``
(stake: "1000WAL"), ``member``/``changes`` (wait_epoch: NODE in or out of the decided
committee, or that many more decided epochs).

The report carries ``wal_conserved`` (every running node's WAL against the genesis supply,
at the end) and, on a testnet with epochs, ``figures.epochs``: each change's agreement
time, rounds and shards moved, and the repair bytes per shard handed over.

While it runs, a sampler records every ``sample_interval`` seconds: t, nodes alive and
shards stored per blob (from blob-status). The run directory gets report.json,
report.md and plot.png; the testnet is in RUN_DIR/net and is torn down at the end.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import trio

from .lab import Lab, LabError

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
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)i?B?\s*", str(text).upper())
    if not m:
        raise ScenarioError(f"bad size {text!r}: use e.g. 65536, 64K, 1M")
    return int(float(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2)])


def eval_bound(value, n: int) -> int:
    """'n', 'f', 'n-f', 'n-2f', '2f+1', 7 -> an integer for n shards."""
    if isinstance(value, int):
        return value
    f = (n - 1) // 3
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
        ci=ci, source=source, storage_price=_amount(doc.get("storage_price", 0)),
        write_price=_amount(doc.get("write_price", 0)))


def _amount(value) -> int:
    from p2pwalrus.core.wal.amounts import AmountError, parse_amount

    try:
        return parse_amount(value)
    except AmountError as exc:
        raise ScenarioError(str(exc)) from None


# --- the run ------------------------------------------------------------------------------


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


async def _in_thread(fn, *args, **kw):
    return await trio.to_thread.run_sync(lambda: fn(*args, **kw))


_EPOCH_CACHE: list[Path] = []  # the run's cache of verified epoch states, shared by its clients


async def _with_client(net, fn, timeout: float, run: "Run | None" = None):
    """``fn(client)`` with a connected client; given ``run``, the client is the testnet's
    faucet key (stores pay from it on a priced testnet, and it may delete what it stored)."""
    from p2pwalrus.client.client import open_client

    key = None
    if run is not None and run.lab is not None:
        from .wal import faucet_key

        key = faucet_key(run.lab.dir)
    with trio.fail_after(timeout):
        async with open_client(net, key, epoch_cache=_EPOCH_CACHE[-1] if _EPOCH_CACHE else None) as client:
            if run is not None:
                client.payer_journal = run.run_dir / "wallet"
            await client.refresh_membership()
            return await fn(client)


async def _sampler(run: Run) -> None:
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
                shards = await _with_client(run.client_net(), statuses, max(5.0, run.sc.sample_interval * 4))
            except Exception:
                shards = {name: None for name in run.blobs}
        run.samples.append({"t": t, "alive": alive, "shards": shards})
        if run.lab is not None:
            try:
                await _in_thread(_watch_wal, run)
            except Exception as exc:  # a node.json being rewritten, say: the next sample looks again
                run.log(f"[dim]wal sample: {exc!r}[/dim]")
        await trio.sleep(max(0.0, run.sc.sample_interval - (run.now() - t)))


async def step_up(run: Run, step) -> str:
    from .cli import bring_up

    nodes = int(step.get("nodes", run.sc.nodes))
    shards = int(step.get("shards", run.sc.shards))
    run.sc.shards = shards
    lab, took = await _in_thread(bring_up, run.run_dir / "net", nodes, shards, epoch_length=run.sc.epoch_length,
                                 timeout=float(step.get("timeout", run.sc.up_timeout)),
                                 storage_price=run.sc.storage_price, write_price=run.sc.write_price)
    run.lab = lab
    run.figures["up_seconds"] = round(took, 2)
    run.event(f"up: {nodes} nodes, {shards} shards in {took:.1f} s")
    return f"{nodes} nodes formed one network in {took:.1f} s"


async def step_store(run: Run, step) -> str:
    name = step.get("blob", f"blob{len(run.blobs)}")
    size = parse_size(step.get("size", run.sc.size))
    data = random.Random(f"{run.sc.seed}/{name}").randbytes(size)
    epochs = int(step.get("epochs", 2))
    deletable = bool(step.get("deletable", False))
    t = time.monotonic()
    result = await _with_client(run.client_net(), lambda c: c.store(data, epochs=epochs, deletable=deletable),
                                float(step.get("timeout", 120)), run)
    run.figures["paid"] = run.figures.get("paid", 0) + result.cost
    took = time.monotonic() - t
    if step.get("price") == "voted":  # the store paid the prices the votes decided, and no other
        from p2pwalrus.core.wal.pricing import store_cost

        if run.expected_prices is None:
            raise ScenarioError("a store with price = \"voted\" needs a vote step before it")
        want = store_cost(*run.expected_prices, size, run.n, epochs).total
        run.figures.setdefault("stores_at_voted_price", []).append({"blob": name, "cost": result.cost,
                                                                    "expected": want})
        if result.cost != want:
            raise StepFailed(f"store {name} paid {result.cost} FROST, not {want} at the voted prices "
                             f"{run.expected_prices}")
    from p2pwalrus.core.blob_id import blob_id_to_str

    run.blobs[name] = {"id": result.blob_id, "id_str": blob_id_to_str(result.blob_id), "size": size,
                       "sha256": hashlib.sha256(data).hexdigest(), "data": data, "store_seconds": round(took, 2),
                       "stored_at": run.now(), "shards_confirmed": result.shards_confirmed}
    run.event(f"store {name} ({size} B) -> {blob_id_to_str(result.blob_id)[:12]}")
    return f"stored {size} B on {result.shards_confirmed}/{run.n} shards in {took:.1f} s"


async def step_extend(run: Run, step) -> str:
    names = run.blob_names(step)
    epochs = int(step.get("epochs", 5))
    before = await _paid(run)

    async def extend(client):
        return {name: (await client.extend(run.blobs[name]["id"], epochs)).end_epoch for name in names}

    ends = await _with_client(run.client_net(), extend, float(step.get("timeout", 60)), run)
    paid = await _paid(run) - before
    run.figures["paid"] = run.figures.get("paid", 0) + paid
    run.event(f"extend {','.join(names)} to {epochs} epochs")
    return f"extended {', '.join(f'{k} to epoch {v}' for k, v in ends.items())}, paid {paid} FROST"


async def step_delete(run: Run, step) -> str:
    names = run.blob_names(step)

    async def delete(client):
        return {name: await client.delete(run.blobs[name]["id"]) for name in names}

    counts = await _with_client(run.client_net(), delete, float(step.get("timeout", 60)), run)
    for name in names:
        run.blobs.pop(name, None)  # no longer sampled nor read
    run.event(f"delete {','.join(names)}")
    return f"deleted {', '.join(f'{k} on {v} nodes' for k, v in counts.items())} (nothing paid comes back)"


async def _paid(run: Run) -> int:
    """FROST the faucet has spent so far (its genesis balance minus what it holds now)."""
    from .wal import FAUCET_BALANCE

    async def balance(client):
        return (await client.store_payer().wallet.account()).balance if client.store_payer() else FAUCET_BALANCE

    return FAUCET_BALANCE - await _with_client(run.client_net(), balance, 30, run)


def describe_error(exc: BaseException) -> str:
    """The leaf errors inside trio's exception groups: the group's own text names none."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe_error(sub) for sub in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


async def _read_one(run: Run, name: str, timeout: float) -> tuple[bool, str]:
    b = run.blobs[name]
    try:
        data = await _with_client(run.client_net(), lambda c: c.read(b["id"]), timeout)
    except Exception as exc:
        return False, describe_error(exc)
    if data != b["data"]:
        return False, "bytes differ from what was stored"
    return True, "bytes match"


async def step_read(run: Run, step) -> str:
    expect = step.get("expect", "ok")
    out = []
    for name in run.blob_names(step):
        t = time.monotonic()
        ok, detail = await _read_one(run, name, float(step.get("timeout", 60)))
        run.figures.setdefault("reads", []).append({"blob": name, "t": run.now(), "ok": ok,
                                                    "seconds": round(time.monotonic() - t, 2), "detail": detail})
        if ok != (expect == "ok"):
            raise StepFailed(f"read {name}: expected {expect}, got {'ok' if ok else 'failure'} ({detail})")
        out.append(f"{name}: {'ok' if ok else 'failed as expected'}")
    run.event("read " + ", ".join(out))
    return "; ".join(out)


def _fault(kind):
    async def step(run: Run, step) -> str:
        want = "dead" if kind == "start" else "alive"
        idx = run.pick_nodes(step, want)
        keep_down = kind == "wipe" and not step.get("restart", True)
        for i in idx:
            if keep_down:  # its data dir deleted and the node kept down: all its shards lost
                await _in_thread(run.lab.wipe, i, restart=False)
                await _mark_lost(run, i)
                continue
            fn = {"kill": run.lab.kill, "stop": run.lab.stop, "start": run.lab.start, "wipe": run.lab.wipe}[kind]
            await _in_thread(fn, i)
        run.event(f"{kind}{' (kept down)' if keep_down else ''} node {','.join(map(str, idx))}")
        return f"{kind} {idx}{' kept down' if keep_down else ''}"
    return step


async def step_kill_holders(run: Run, step) -> str:
    """Kill running nodes that together hold as many shards as possible, at most SHARDS (default f)."""
    target = eval_bound(step.get("shards", "f"), run.n)
    holders = await _in_thread(run.lab.shard_holders)
    chosen, total = [], 0
    for idx, shards in sorted(holders.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        if shards and total + len(shards) <= target:
            chosen.append(idx)
            total += len(shards)
    if not chosen:
        raise StepFailed(f"no running node holds at most {target} shards")
    for i in chosen:
        await _in_thread(run.lab.kill, i)
    run.figures.setdefault("killed_holders", []).append({"nodes": chosen, "shards": total, "target": target})
    run.event(f"kill holders of {total} shards: nodes {chosen}")
    return f"killed nodes {chosen} holding {total}/{target} shards"


async def step_add(run: Run, step) -> str:
    added = []
    for _ in range(int(step.get("count", 1))):
        n = await _in_thread(run.lab.add)
        added.append(n.index)
    run.event(f"add node {','.join(map(str, added))}")
    return f"added {added}"


async def step_partition(run: Run, step) -> str:
    groups = await _in_thread(run.lab.partition, step["groups"])
    run.event("partition " + "|".join(",".join(map(str, g)) for g in groups))
    return f"groups {groups}"


async def step_heal(run: Run, step) -> str:
    await _in_thread(run.lab.heal)
    run.event("heal")
    return "healed"


async def step_slow(run: Run, step) -> str:
    idx = run.pick_nodes(step, "alive")
    for i in idx:
        await _in_thread(run.lab.slow, i, int(step.get("delay_ms", 200)))
    run.event(f"slow node {idx} +{step.get('delay_ms', 200)} ms")
    return f"slowed {idx}"


async def step_wait_converged(run: Run, step) -> str:
    took = await _in_thread(run.lab.wait_converged, float(step.get("timeout", 30)))
    run.event(f"converged ({took:.1f} s)")
    return f"converged after {took:.1f} s"


async def _shards_stored(run: Run, names: list[str]) -> dict[str, int]:
    async def get(client):
        return {b: (await client.blob_status(run.blobs[b]["id"]))["shards_stored"] for b in names}

    return await _with_client(run.client_net(), get, 20.0)


async def step_wait_repaired(run: Run, step) -> str:
    names = run.blob_names(step)
    timeout = float(step.get("timeout", 60))
    required = bool(step.get("required", True)) and run.require_repair
    t = time.monotonic()
    last = {}
    with trio.move_on_after(timeout):
        while True:
            try:
                last = await _shards_stored(run, names)
            except Exception as exc:
                last = {"error": describe_error(exc)}
            if last and all(last.get(b) == run.n for b in names):
                took = time.monotonic() - t
                run.figures.setdefault("repair_seconds", []).append(round(took, 2))
                run.event(f"repaired {','.join(names)} ({took:.1f} s)")
                return f"all {run.n} shards stored after {took:.1f} s"
            await trio.sleep(1.0)
    msg = f"not repaired after {timeout:.0f} s: shards stored {last}"
    run.figures.setdefault("repair_timeouts", []).append({"t": run.now(), "shards": last})
    run.event(f"wait_repaired timed out {last}")
    if required:
        raise StepFailed(msg)
    return "WARNING " + msg


async def step_assert(run: Run, step) -> str:
    metric = step.get("metric", "shards_stored")
    lo = eval_bound(step["min"], run.n) if "min" in step else None
    hi = eval_bound(step["max"], run.n) if "max" in step else None

    def check(label, value):
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise StepFailed(f"assert {label} = {value} not in [{lo}, {hi}]")
        return f"{label} = {value}"

    if metric == "shards_stored":
        names = run.blob_names(step)
        got = await _shards_stored(run, names)
        return "; ".join(check(f"shards_stored({b})", got[b]) for b in names)
    if metric == "nodes_alive":
        return check("nodes_alive", sum(1 for n in run.lab.nodes if run.lab.alive(n)))
    if metric == "converged":
        ok = await _in_thread(run.lab.converged)
        if not ok:
            raise StepFailed("assert converged: the nodes disagree on the live set or the map")
        return "converged"
    if metric == "readable":
        for b in run.blob_names(step):
            ok, detail = await _read_one(run, b, float(step.get("timeout", 60)))
            if not ok:
                raise StepFailed(f"assert readable({b}): {detail}")
        return "readable"
    raise ScenarioError(f"unknown assert metric {metric!r}")


# --- WAL and epochs (a testnet with a genesis: netlab/wal.py) ---------------------------------


async def _faucet_wallet(run: Run, fn, timeout: float = 60.0):
    """``fn(client, wallet)`` with the faucet's wallet (its key and journal in DIR/faucet)."""
    from p2pwalrus.client.wallet import Wallet

    from .wal import FAUCET_DIR, faucet_key

    key = faucet_key(run.lab.dir)

    async def go(client):
        return await fn(client, Wallet(client, key, run.lab.dir / FAUCET_DIR / "wallet"))

    from p2pwalrus.client.client import open_client

    with trio.fail_after(timeout):
        async with open_client(run.client_net(), key) as client:
            await client.refresh_membership()
            return await go(client)


async def step_stake(run: Run, step) -> str:
    """The faucet stakes AMOUNT (default 1000WAL) with node NODE: it joins the committee (or
    weighs more) from the next epoch change."""
    from p2pwalrus.core.wal.amounts import format_amount, parse_amount

    (idx,) = run.pick_nodes(step, "alive")[:1]
    amount = parse_amount(str(step.get("amount", "1000WAL")))
    peer = run.lab.node(idx).peer_id
    cert = await _faucet_wallet(run, lambda c, w: w.stake(peer, amount), float(step.get("timeout", 60)))
    run.event(f"stake {format_amount(amount)} with node {idx}")
    return f"staked {format_amount(amount)} with node {idx} (faucet sequence {cert.order.sequence})"


async def step_unstake(run: Run, step) -> str:
    """Node NODE's own key takes back all its stake (the faucet first gives its account 1 WAL,
    so it exists): it leaves the committee at the next epoch change."""
    from p2pwalrus.client.client import open_client
    from p2pwalrus.client.wallet import Wallet
    from p2pwalrus.core.wal.amounts import format_amount
    from p2pwalrus.p2p.identity import load_or_create_identity

    (idx,) = run.pick_nodes(step, "alive")[:1]
    entry = run.lab.node(idx)
    timeout = float(step.get("timeout", 60))
    await _faucet_wallet(run, lambda c, w: w.transfer(entry.peer_id, 10**9), timeout)
    key = await _in_thread(load_or_create_identity, Path(entry.data_dir))

    async def go(client):
        wallet = Wallet(client, key, run.run_dir / f"node{idx}-wallet")
        view = await wallet.account()
        amount = view.stakes.get(entry.peer_id, 0)
        if not amount:
            raise StepFailed(f"node {idx} has no stake of its own to take back")
        await wallet.unstake(entry.peer_id, amount)
        return amount

    with trio.fail_after(timeout):
        async with open_client(run.client_net(), key) as client:
            await client.refresh_membership()
            amount = await go(client)
    run.event(f"unstake node {idx} ({format_amount(amount)})")
    return f"node {idx} took back {format_amount(amount)}"


def _decided(run: Run) -> dict[int, dict]:
    """node index -> the epochs section of its node.json (running nodes that wrote one)."""
    out = {}
    for r in run.lab.status()["nodes"]:
        if r["alive"] and r.get("epochs"):
            out[r["index"]] = r["epochs"]
    return out


async def _committee(run: Run):
    """The latest decided state, verified from genesis by a client."""
    async def get(client):
        return client.epochs

    return await _with_client(run.client_net(), get, 20.0)


async def step_wait_epoch(run: Run, step) -> str:
    """Until every running node holds a decided state that has NODE in its committee
    (``member = true``) or not (``member = false``), or (without NODE) until CHANGES more
    epochs were decided at every running node (default 1)."""
    timeout = float(step.get("timeout", 3 * run.sc.epoch_length + 30))
    member = step.get("member")
    node_idx = run.pick_nodes(step, "alive")[0] if member is not None else None
    peer = run.lab.node(node_idx).peer_id if node_idx is not None else None
    start = min((e["decided_epoch"] for e in _decided(run).values()), default=0)
    target = start + int(step.get("changes", 1))
    t = time.monotonic()
    with trio.move_on_after(timeout):
        while True:
            if peer is not None:
                view = await _committee(run)
                have = peer in view.current.stakes
                epochs = _decided(run)
                if have == bool(member) and epochs and all(e["digest"] == view.current.digest.hex()
                                                           for e in epochs.values()):
                    break
            else:
                epochs = _decided(run)
                if epochs and all(e["decided_epoch"] >= target for e in epochs.values()):
                    break
            await trio.sleep(1.0)
        took = time.monotonic() - t
        latest = max(e["decided_epoch"] for e in _decided(run).values())
        what = (f"node {node_idx} {'in' if member else 'out of'} the committee" if peer is not None
                else f"epoch {latest} decided everywhere")
        if step.get("wal", True):
            await _wal_snapshot(run, f"epoch {latest}")
        run.event(f"{what} ({took:.1f} s)")
        return f"{what} after {took:.1f} s"
    raise StepFailed(f"epoch wait timed out after {timeout:.0f} s: decided epochs {_decided(run)}")


async def collect_epoch_figures(run: Run) -> None:
    """Epoch changes (time, round, shards moved) and what the hand-overs cost, from the nodes'
    node.json and the chain; WAL conservation at every running node."""
    from p2pwalrus.core.wal.placement_stake import moved_shards

    status = await _in_thread(run.lab.status)
    run.figures["wal_conserved"] = status["wal_conserved"]
    up = [r for r in status["nodes"] if r["alive"] and r.get("epochs")]
    if not up:
        return
    try:
        view = await _committee(run)
    except Exception as exc:
        run.figures["epochs_error"] = describe_error(exc)
        return
    per_epoch: dict[int, list[dict]] = {}
    for r in up:
        for c in r["epochs"].get("changes", []):
            per_epoch.setdefault(c["epoch"], []).append(c)
    changes, moved_total = [], 0
    for state in view.states[1:]:
        prev = view.states[state.epoch - 1]
        moved = len(moved_shards(prev.shards_by_node, state.shards_by_node))
        moved_total += moved
        seen = per_epoch.get(state.epoch, [])
        changes.append({
            "epoch": state.epoch, "members": len(state.committee), "shards_moved": moved,
            "agreement_seconds_max": max((c["seconds"] for c in seen), default=None),
            "decided_after_epoch_start_max": max((c["after_start"] for c in seen), default=None),
            "round": max((c["round"] for c in seen), default=None)})
    repair = [r.get("repair") or {} for r in (await _in_thread(_node_files, run))]
    moved_bytes = sum(x.get("bytes_moved", 0) for x in repair)
    sync_bytes = sum(x.get("sync_bytes", 0) for x in repair)
    pairs = sum(x.get("pairs_restored", 0) for x in repair)
    run.figures["epochs"] = {
        "changes": changes, "shards_moved": moved_total,
        "repair_bytes": moved_bytes, "sync_bytes": sync_bytes, "pairs_restored": pairs,
        "pairs_synced": sum(x.get("pairs_synced", 0) for x in repair),
        "bytes_per_shard_handed_over": round(moved_bytes / moved_total) if moved_total else None,
        "bytes_per_pair_restored": round(moved_bytes / pairs) if pairs else None,
    }


def _watch_wal(run: Run) -> None:
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


def _node_files(run: Run) -> list[dict]:
    return [st for n in run.lab.nodes if run.lab.alive(n) and (st := run.lab.node_status_file(n))]


# --- the economy: price votes, rewards per node per epoch, conservation after each change ----


EXTREME_PRICE = (1 << 64) - 1  # FROST: the highest price a vote may carry


async def _mark_lost(run: Run, idx: int) -> None:
    """Remember that node IDX lost all its shards while epoch E was running (E: the newest
    decided epoch then): it must earn nothing for the first epoch it spends wholly down."""
    decided = max((e["decided_epoch"] for e in _decided(run).values()), default=0)
    run.figures.setdefault("lost", []).append({"node": idx, "peer_id": run.lab.node(idx).peer_id,
                                               "decided_epoch": decided, "t": run.now()})


async def step_vote(run: Run, step) -> str:
    """Every running committee member votes STORAGE_PRICE and WRITE_PRICE (the `p2pwalrus vote`
    command's own code writes each node's vote.json); with ``extreme = "f"`` members of total
    weight at most f (the heaviest first) vote the highest price there is instead. The price
    the quorum-below rule gives over the current weights is kept for ``wait_price``."""
    from p2pwalrus.cli_pay import cast_vote
    from p2pwalrus.core.wal.pricing import PriceVote, decide_prices

    view = await _committee(run)
    current = view.current
    weights = dict(current.weights)
    storage, write = _amount(step.get("storage_price", 0)), _amount(step.get("write_price", 0))
    peers = {n.peer_id: n.index for n in run.lab.nodes}
    running = {n.peer_id for n in run.lab.nodes if run.lab.alive(n)}
    extreme: list[str] = []
    if "extreme" in step:
        budget = eval_bound(step["extreme"], run.n)
        for peer, w in sorted(weights.items(), key=lambda pw: (-pw[1], pw[0])):
            if peer in running and w and sum(weights[p] for p in extreme) + w <= budget:
                extreme.append(peer)
    votes = {}
    net = run.lab.client_network()
    for peer in sorted(weights):
        if peer not in running or peer not in peers:
            continue  # no vote: the member votes the current prices (decide_prices)
        price = (EXTREME_PRICE, EXTREME_PRICE) if peer in extreme else (storage, write)
        await _in_thread(cast_vote, net, Path(run.lab.node(peers[peer]).data_dir), f"{price[0]}FROST",
                         f"{price[1]}FROST", None, [])
        votes[peer] = PriceVote(*price)
    expected = decide_prices(weights, run.n, votes, current.prices)
    run.figures.setdefault("votes", []).append({
        "t": run.now(), "epoch": current.epoch, "storage_price": storage, "write_price": write,
        "extreme_nodes": sorted(peers[p] for p in extreme), "extreme_weight": sum(weights[p] for p in extreme),
        "f": (run.n - 1) // 3, "expected": list(expected)})
    run.expected_prices = expected
    run.event(f"vote {storage}/{write} FROST, nodes {sorted(peers[p] for p in extreme)} extreme")
    return (f"{len(votes)} nodes voted ({len(extreme)} of weight {sum(weights[p] for p in extreme)} <= f the "
            f"highest price): quorum-below gives storage {expected[0]}, write {expected[1]} FROST")


async def step_wait_price(run: Run, step) -> str:
    """Until the decided state (at every running node) carries the prices the last ``vote``
    step's quorum-below gives; fails if another price is decided after the votes."""
    expected = getattr(run, "expected_prices", None)
    if expected is None:
        raise ScenarioError("wait_price needs a vote step before it")
    timeout = float(step.get("timeout", 3 * run.sc.epoch_length + 30))
    t = time.monotonic()
    with trio.move_on_after(timeout):
        while True:
            view = await _committee(run)
            p = view.current.prices
            now = (p.storage_price_per_unit, p.write_price_per_unit)
            epochs = _decided(run)
            if now == tuple(expected) and all(e["digest"] == view.current.digest.hex() for e in epochs.values()):
                break
            await trio.sleep(1.0)
        run.figures.setdefault("price_changes", []).append({"epoch": view.current.epoch, "prices": list(now),
                                                            "expected": list(expected)})
        await _wal_snapshot(run, f"price change (epoch {view.current.epoch})")
        run.event(f"price {now[0]}/{now[1]} decided in epoch {view.current.epoch}")
        return f"epoch {view.current.epoch} decided the quorum-below prices {now} after {time.monotonic() - t:.1f} s"
    raise StepFailed(f"the decided prices never became {tuple(expected)} in {timeout:.0f} s")


async def _wal_snapshot(run: Run, label: str) -> dict:
    """Conservation at every running node after an epoch change: supply against balances +
    stakes + unspent funds (rewards paid are inside the balances), once every running node
    applied the reward credits of the newest decided state (waits a few seconds for that)."""
    rows, top = [], 0
    with trio.move_on_after(10.0):
        while True:
            rows = [r for r in (await _in_thread(run.lab.status))["nodes"] if r.get("alive") and r.get("ledger")]
            decided = {r["index"]: (r.get("epochs") or {}).get("decided_epoch", 0) for r in rows}
            top = max(decided.values(), default=0)
            if all(r["ledger"].get("rewarded_epoch", -1) >= top - 1 for r in rows):
                break
            await trio.sleep(0.5)
    if not rows:
        return {}
    nodes = {str(r["index"]): {k: r["ledger"].get(k) for k in ("supply", "total", "funds", "rewards_paid",
                                                               "rewarded_epoch", "storage_price", "write_price")}
             for r in rows}
    snap = {"after": label, "t": run.now(), "decided_epoch": top, "nodes": nodes,
            "conserved": bool(nodes) and all(v["total"] == v["supply"] for v in nodes.values())}
    run.figures.setdefault("wal_by_change", []).append(snap)
    if not snap["conserved"]:
        raise StepFailed(f"WAL not conserved after {label}: {nodes}")
    return snap


async def economy_figures(run: Run) -> dict | None:
    """Per decided epoch: its prices, its storage fund paid out and each node's reward (from
    the decided chain: state e + 1 credits epoch e's rewards); the check of the rewards rule
    for nodes that lost their shards."""
    view = await _committee(run)
    index = {n.peer_id: n.index for n in run.lab.nodes}
    epochs = []
    for state in view.states:
        credits = dict(state.reward_credits)
        prev = view.states[state.epoch - 1] if state.epoch else None
        epochs.append({
            "epoch": state.epoch,
            "storage_price": state.prices.storage_price_per_unit, "write_price": state.prices.write_price_per_unit,
            "shards": {str(index.get(p, p)): w for p, w in sorted(state.weights.items())},
            # rewards earned in the epoch before this state (credited by it)
            "rewards_for_epoch": prev.epoch if prev is not None else None,
            "rewards": {str(index.get(p, p)): credits.get(p, 0)
                        for p in sorted(set(prev.weights) | set(credits), key=lambda p: index.get(p, 1 << 30))}
            if prev is not None else {},
            "paid": sum(credits.values())})
    return {"epochs": epochs}


async def step_check_rewards(run: Run, step) -> str:
    """The rewards rule on the decided chain: each node that lost all its shards (a ``wipe``
    step with ``restart = false``) earned nothing for the first epoch it spent wholly down,
    while every other member that held shards then earned its share (more than 0), and it
    had earned before."""
    lost = run.figures.get("lost") or []
    if not lost:
        raise ScenarioError("check_rewards needs a wipe step with restart = false before it")
    econ = await economy_figures(run)
    by_epoch = {e["epoch"]: e for e in econ["epochs"]}
    out = []
    for item in lost:
        idx, e = str(item["node"]), item["decided_epoch"] + 1
        credit = by_epoch.get(e + 1)
        if credit is None:
            raise StepFailed(f"epoch {e + 1} (crediting epoch {e}) is not decided yet: add a wait_epoch step")
        if credit["rewards"].get(idx, 0) != 0:
            raise StepFailed(f"node {idx} lost its shards before epoch {e} and still earned "
                             f"{credit['rewards'][idx]} FROST for it")
        shards = by_epoch[e]["shards"]
        others = {k: v for k, v in credit["rewards"].items() if k != idx and shards.get(k)}
        if credit["paid"] and not all(v > 0 for v in others.values()):
            raise StepFailed(f"epoch {e}: a holder that kept its shards earned nothing: {credit['rewards']}")
        earlier = [by_epoch[x]["rewards"].get(idx, 0) for x in range(1, e) if x in by_epoch]
        item.update(epoch=e, earned=credit["rewards"].get(idx, 0), others=others, earned_before=sum(earlier))
        out.append(f"node {idx}: 0 FROST for epoch {e} (others {sorted(others.values())}), "
                   f"{sum(earlier)} FROST before")
    run.figures["rewards_rule"] = lost
    return "; ".join(out)


async def step_sleep(run: Run, step) -> str:
    await trio.sleep(float(step.get("seconds", 1)))
    return f"slept {step.get('seconds', 1)} s"


ACTIONS = {
    "up": step_up, "store": step_store, "read": step_read, "kill": _fault("kill"), "stop": _fault("stop"),
    "start": _fault("start"), "wipe": _fault("wipe"), "kill_holders": step_kill_holders, "add": step_add,
    "partition": step_partition, "heal": step_heal, "slow": step_slow, "wait_converged": step_wait_converged,
    "wait_repaired": step_wait_repaired, "assert": step_assert, "sleep": step_sleep, "extend": step_extend,
    "delete": step_delete,
    "stake": step_stake, "unstake": step_unstake, "wait_epoch": step_wait_epoch,
    "vote": step_vote, "wait_price": step_wait_price, "check_rewards": step_check_rewards,
}


async def _run_steps(run: Run) -> str | None:
    steps = run.sc.steps
    if steps[0]["action"] != "up":
        steps = [{"action": "up"}] + steps
    failure = None
    async with trio.open_nursery() as nursery:
        for i, step in enumerate(steps):
            if step["action"] != "up" and run.lab is not None and not nursery.child_tasks:
                nursery.start_soon(_sampler, run)
            rec = {"i": i, "action": step["action"], "args": {k: v for k, v in step.items() if k != "action"},
                   "t_start": run.now()}
            try:
                rec["detail"] = await ACTIONS[step["action"]](run, step)
                rec["ok"] = True
            except (StepFailed, LabError, ScenarioError) as exc:
                rec["ok"], rec["detail"] = False, str(exc)
                failure = f"step {i} ({step['action']}): {exc}"
            except Exception as exc:
                rec["ok"], rec["detail"] = False, describe_error(exc)
                failure = f"step {i} ({step['action']}): {describe_error(exc)}"
            rec["t_end"] = run.now()
            run.steps.append(rec)
            run.log(f"[dim]{rec['t_end']:7.1f}s[/dim] {'[green]ok[/green]' if rec['ok'] else '[red]FAIL[/red]'} "
                    f"{step['action']}: {rec['detail']}")
            if failure:
                break
        await trio.sleep(min(2.0, run.sc.sample_interval * 2))  # a last sample or two after the final step
        nursery.cancel_scope.cancel()
    run.wal = wal_report(run.lab)  # before the testnet is torn down
    if run.lab is not None:
        try:
            await collect_epoch_figures(run)
        except Exception as exc:  # figures must never hide the run's outcome
            run.figures["epochs_error"] = describe_error(exc)
        if run.sc.storage_price or run.figures.get("wal_by_change"):
            try:
                run.figures["economy"] = await economy_figures(run)
            except Exception as exc:
                run.figures["economy_error"] = describe_error(exc)
    return failure


def run_scenario(sc: Scenario, run_dir: Path, *, keep: bool = False, require_repair: bool = True,
                 log=print) -> dict:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    run = Run(sc, run_dir, require_repair, log, rng=random.Random(sc.seed))
    _EPOCH_CACHE[:] = [run_dir / "client-epochs"]  # each sample's client pulls only new epoch states
    run.t0 = time.monotonic()
    started = time.time()
    failure = None
    try:
        failure = trio.run(_run_steps, run)
    except KeyboardInterrupt:
        failure = "interrupted"
    finally:
        if run.lab is not None and not keep:
            run.lab.down()
    report = make_report(run, failure, started)
    write_report(run, report)
    return report


# --- reports ------------------------------------------------------------------------------


def make_report(run: Run, failure: str | None, started: float) -> dict:
    n = run.sc.shards
    f = (n - 1) // 3
    blobs = {}
    for name, b in run.blobs.items():
        series = [(s["t"], s["shards"].get(name)) for s in run.samples if s["shards"].get(name) is not None]
        vals = [v for _, v in series]
        below = [t for t, v in series if v < n]
        blobs[name] = {"blob_id": b["id_str"], "size": b["size"], "sha256": b["sha256"],
                       "store_seconds": b["store_seconds"], "stored_at": b["stored_at"],
                       "min_shards_stored": min(vals) if vals else None,
                       "final_shards_stored": vals[-1] if vals else None,
                       "seconds_below_n": round(sum(run.sc.sample_interval for _ in below), 1),
                       "ever_below_n_minus_2f": any(v < n - 2 * f for v in vals)}
    alive = [s["alive"] for s in run.samples]
    return {
        "scenario": run.sc.name, "description": run.sc.description, "source": run.sc.source, "ci": run.sc.ci,
        "seed": run.sc.seed, "nodes": run.sc.nodes, "n_shards": n, "f": f,
        "started": started, "duration_seconds": run.now(), "ok": failure is None, "failure": failure,
        "figures": {**run.figures, "min_nodes_alive": min(alive) if alive else None,
                    "max_nodes_alive": max(alive) if alive else None, "samples": len(run.samples)},
        "blobs": blobs, "steps": run.steps, "events": [{"t": t, "what": w} for t, w in run.events],
        "samples": run.samples, "testnet_dir": str(run.run_dir / "net"),
        "wal": run.wal,
    }


def wal_report(lab) -> dict | None:
    """WAL held at each running node (balances + stakes + funds, as its node.json says)
    against the genesis supply, its storage funds and the rewards it paid out (issue 16)."""
    if lab is None:
        return None
    try:
        rows = lab.status()["nodes"]
    except Exception:
        return None
    nodes = {}
    for r in rows:
        ledger = r.get("ledger")
        if r.get("alive") and ledger:
            nodes[r.get("peer_id") or str(r.get("index"))] = {
                k: ledger.get(k) for k in ("supply", "total", "funds", "rewards_paid", "storage_price",
                                           "write_price")}
    if not nodes:
        return None
    return {"conserved": all(v["total"] == v["supply"] for v in nodes.values()), "nodes": nodes}


def write_report(run: Run, report: dict) -> None:
    d = run.run_dir
    (d / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    n, f = report["n_shards"], report["f"]
    lines = [
        f"# netlab run: {report['scenario']}{' (CI form)' if report['ci'] else ''}",
        "",
        report["description"] or "",
        "",
        f"**{'PASSED' if report['ok'] else 'FAILED'}**" + (f": {report['failure']}" if report["failure"] else ""),
        f" in {report['duration_seconds']:.1f} s; {report['nodes']} nodes, n = {n} shards, f = {f} "
        f"(certified at n-f = {n - f}, readable from n-2f = {n - 2 * f}); seed {report['seed']}.",
        "",
        "| t (s) | step | result |",
        "|---:|---|---|",
    ]
    for s in report["steps"]:
        lines.append(f"| {s['t_start']:.1f} | {s['action']} | {'ok' if s['ok'] else '**FAIL**'}: "
                     f"{str(s.get('detail', '')).replace('|', '/')} |")
    lines += ["", "| blob | size | stored in | min shards stored | final | below n for |", "|---|---:|---:|---:|---:|---:|"]
    for name, b in report["blobs"].items():
        lines.append(f"| {name} `{b['blob_id'][:12]}` | {b['size']} | {b['store_seconds']} s | "
                     f"{b['min_shards_stored']} | {b['final_shards_stored']} | {b['seconds_below_n']} s |")
    fig = report["figures"]
    lines += ["", f"Nodes alive: {fig.get('min_nodes_alive')}..{fig.get('max_nodes_alive')}; "
                  f"up in {fig.get('up_seconds')} s; repairs: {fig.get('repair_seconds', [])} s; "
                  f"repair timeouts: {len(fig.get('repair_timeouts', []))}.",
              ""]
    wal = report.get("wal")
    if wal:
        v = next(iter(wal["nodes"].values()))
        lines += [f"WAL {'conserved' if wal['conserved'] else '**NOT CONSERVED**'} at every running node "
                        f"(supply {v['supply']} FROST; funds {sorted({x['funds'] for x in wal['nodes'].values()})}, "
                        f"rewards paid {sorted({x['rewards_paid'] for x in wal['nodes'].values()})}; "
                        f"stores and extensions paid {fig.get('paid', 0)} FROST).", ""]
    elif "wal_conserved" in fig:
        lines += [f"WAL conserved at every running node: {'yes' if fig['wal_conserved'] else '**NO**'}.", ""]
    ep = fig.get("epochs")
    if ep:
        lines += ["| epoch | members | shards moved | agreement (s, slowest node) | decided after epoch start (s) | round |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for c in ep["changes"]:
            lines.append(f"| {c['epoch']} | {c['members']} | {c['shards_moved']} | {c['agreement_seconds_max']} | "
                         f"{c['decided_after_epoch_start_max']} | {c['round']} |")
        lines += ["", f"Shards handed over: {ep['shards_moved']}; repair moved {ep['repair_bytes']} B "
                      f"({ep['sync_bytes']} B copied from previous holders, {ep['pairs_synced']} of "
                      f"{ep['pairs_restored']} pairs): {ep['bytes_per_shard_handed_over']} B per shard handed over, "
                      f"{ep['bytes_per_pair_restored']} B per pair restored.", ""]
    lines += economy_lines(fig)
    lines += ["![shards stored and nodes alive](plot.png)", ""]
    (d / "report.md").write_text("\n".join(lines))
    try:
        from .plot import plot_timeseries

        png = plot_timeseries(report["samples"], run.events, n, list(report["blobs"]),
                              title=f"{report['scenario']} n={n} f={f}")
        (d / "plot.png").write_bytes(png)
    except Exception as exc:  # a plot must never hide the report
        run.log(f"plot failed: {exc!r}")


def economy_lines(fig: dict) -> list[str]:
    """report.md: conservation at every node after each change, prices and rewards per epoch."""
    lines = []
    snaps = fig.get("wal_by_change") or []
    if snaps:
        lines += ["WAL at every running node after each change (supply = balances + stakes + unspent funds; "
                  "rewards paid are inside the balances):", "",
                  "| after | node | supply | balances+stakes+funds | unspent funds | rewards paid | rewarded epoch | conserved |",
                  "|---|---:|---:|---:|---:|---:|---:|---|"]
        for sn in snaps:
            for idx, v in sorted(sn["nodes"].items(), key=lambda kv: int(kv[0])):
                lines.append(f"| {sn['after']} | {idx} | {v['supply']} | {v['total']} | {v['funds']} | "
                             f"{v['rewards_paid']} | {v['rewarded_epoch']} | "
                             f"{'yes' if v['total'] == v['supply'] else '**NO**'} |")
        lines.append("")
    per = fig.get("wal_per_change") or {}
    if per:
        lines += ["WAL at each running node as soon as it applied each epoch change (sampled every "
                  "`sample_interval`):", "",
                  "| change to epoch | nodes | conserved at all | unspent funds | rewards paid |",
                  "|---:|---|---|---|---|"]
        for change, row in sorted(per.items(), key=lambda kv: int(kv[0])):
            ok = all(v["total"] == v["supply"] for v in row.values())
            lines.append(f"| {change} | {','.join(sorted(row, key=int))} | {'yes' if ok else '**NO**'} | "
                         f"{sorted({v['funds'] for v in row.values()})} | "
                         f"{sorted({v['rewards_paid'] for v in row.values()})} |")
        lines.append("")
    for v in fig.get("votes") or []:
        lines += [f"Vote at epoch {v['epoch']}: {v['storage_price']}/{v['write_price']} FROST (storage/write per "
                  f"unit), nodes {v['extreme_nodes']} (weight {v['extreme_weight']}, f = {v['f']}) voting the "
                  f"highest price; quorum-below gives {v['expected'][0]}/{v['expected'][1]}.", ""]
    for c in fig.get("price_changes") or []:
        lines += [f"Decided in epoch {c['epoch']}: prices {c['prices'][0]}/{c['prices'][1]} "
                  f"(expected {c['expected'][0]}/{c['expected'][1]}).", ""]
    for st in fig.get("stores_at_voted_price") or []:
        lines += [f"Store {st['blob']} after the change paid {st['cost']} FROST (at the voted prices: "
                  f"{st['expected']}).", ""]
    econ = (fig.get("economy") or {}).get("epochs") or []
    if econ:
        nodes = sorted({k for e in econ for k in e["rewards"]} | {k for e in econ for k in e["shards"]},
                       key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
        lines += ["Prices per epoch and rewards per node (FROST credited by epoch e's state for epoch e - 1):", "",
                  "| epoch | storage price | write price | rewards for epoch | paid | "
                  + " | ".join(f"node {k}" for k in nodes) + " |",
                  "|---:|---:|---:|---:|---:|" + "---:|" * len(nodes)]
        for e in econ:
            lines.append(f"| {e['epoch']} | {e['storage_price']} | {e['write_price']} | "
                         f"{'' if e['rewards_for_epoch'] is None else e['rewards_for_epoch']} | {e['paid']} | "
                         + " | ".join(str(e["rewards"].get(k, "")) for k in nodes) + " |")
        lines.append("")
    for item in fig.get("rewards_rule") or []:
        lines += [f"Node {item['node']} lost all its shards (wiped, kept down) while epoch {item['decided_epoch']} "
                  f"ran: it earned {item.get('earned')} FROST for epoch {item.get('epoch')} (the holders that kept "
                  f"theirs: {sorted((item.get('others') or {}).values())}), {item.get('earned_before')} FROST "
                  "before.", ""]
    return lines
