"""The scenario steps on the testnet itself (up, store, read, extend, delete, faults, partitions,
waits, asserts) and ACTIONS, every step by its action name.
"""

from __future__ import annotations

import hashlib
import random
import time

import trio

from .scenario_spec import ScenarioError, StepFailed, eval_bound, parse_size
from .scenario_run import Run, describe_error, faucet_spent, in_thread, read_one, shards_stored, with_client
from .scenario_wal import (
    mark_lost, step_check_rewards, step_stake, step_unstake, step_vote, step_wait_epoch, step_wait_price,
)


async def step_up(run: Run, step) -> str:
    from .cli import bring_up

    nodes = int(step.get("nodes", run.sc.nodes))
    shards = int(step.get("shards", run.sc.shards))
    run.sc.shards = shards
    lab, took = await in_thread(bring_up, run.run_dir / "net", nodes, shards, epoch_length=run.sc.epoch_length,
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
    result = await with_client(run.client_net(), lambda c: c.store(data, epochs=epochs, deletable=deletable),
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
    before = await faucet_spent(run)

    async def extend(client):
        return {name: (await client.extend(run.blobs[name]["id"], epochs)).end_epoch for name in names}

    ends = await with_client(run.client_net(), extend, float(step.get("timeout", 60)), run)
    paid = await faucet_spent(run) - before
    run.figures["paid"] = run.figures.get("paid", 0) + paid
    run.event(f"extend {','.join(names)} to {epochs} epochs")
    return f"extended {', '.join(f'{k} to epoch {v}' for k, v in ends.items())}, paid {paid} FROST"


async def step_delete(run: Run, step) -> str:
    names = run.blob_names(step)

    async def delete(client):
        return {name: await client.delete(run.blobs[name]["id"]) for name in names}

    counts = await with_client(run.client_net(), delete, float(step.get("timeout", 60)), run)
    for name in names:
        run.blobs.pop(name, None)  # no longer sampled nor read
    run.event(f"delete {','.join(names)}")
    return f"deleted {', '.join(f'{k} on {v} nodes' for k, v in counts.items())} (nothing paid comes back)"


async def step_read(run: Run, step) -> str:
    expect = step.get("expect", "ok")
    out = []
    for name in run.blob_names(step):
        t = time.monotonic()
        ok, detail = await read_one(run, name, float(step.get("timeout", 60)))
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
                await in_thread(run.lab.wipe, i, restart=False)
                await mark_lost(run, i)
                continue
            fn = {"kill": run.lab.kill, "stop": run.lab.stop, "start": run.lab.start, "wipe": run.lab.wipe}[kind]
            await in_thread(fn, i)
        run.event(f"{kind}{' (kept down)' if keep_down else ''} node {','.join(map(str, idx))}")
        return f"{kind} {idx}{' kept down' if keep_down else ''}"
    return step


async def step_kill_holders(run: Run, step) -> str:
    """Kill running nodes that together hold as many shards as possible, at most SHARDS (default f)."""
    target = eval_bound(step.get("shards", "f"), run.n)
    holders = await in_thread(run.lab.shard_holders)
    chosen, total = [], 0
    for idx, shards in sorted(holders.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        if shards and total + len(shards) <= target:
            chosen.append(idx)
            total += len(shards)
    if not chosen:
        raise StepFailed(f"no running node holds at most {target} shards")
    for i in chosen:
        await in_thread(run.lab.kill, i)
    run.figures.setdefault("killed_holders", []).append({"nodes": chosen, "shards": total, "target": target})
    run.event(f"kill holders of {total} shards: nodes {chosen}")
    return f"killed nodes {chosen} holding {total}/{target} shards"


async def step_add(run: Run, step) -> str:
    added = []
    for _ in range(int(step.get("count", 1))):
        n = await in_thread(run.lab.add)
        added.append(n.index)
    run.event(f"add node {','.join(map(str, added))}")
    return f"added {added}"


async def step_partition(run: Run, step) -> str:
    groups = await in_thread(run.lab.partition, step["groups"])
    run.event("partition " + "|".join(",".join(map(str, g)) for g in groups))
    return f"groups {groups}"


async def step_heal(run: Run, step) -> str:
    await in_thread(run.lab.heal)
    run.event("heal")
    return "healed"


async def step_slow(run: Run, step) -> str:
    idx = run.pick_nodes(step, "alive")
    for i in idx:
        await in_thread(run.lab.slow, i, int(step.get("delay_ms", 200)))
    run.event(f"slow node {idx} +{step.get('delay_ms', 200)} ms")
    return f"slowed {idx}"


async def step_wait_converged(run: Run, step) -> str:
    took = await in_thread(run.lab.wait_converged, float(step.get("timeout", 30)))
    run.event(f"converged ({took:.1f} s)")
    return f"converged after {took:.1f} s"


async def step_wait_repaired(run: Run, step) -> str:
    names = run.blob_names(step)
    timeout = float(step.get("timeout", 60))
    required = bool(step.get("required", True)) and run.require_repair
    t = time.monotonic()
    last = {}
    with trio.move_on_after(timeout):
        while True:
            try:
                last = await shards_stored(run, names)
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
        got = await shards_stored(run, names)
        return "; ".join(check(f"shards_stored({b})", got[b]) for b in names)
    if metric == "nodes_alive":
        return check("nodes_alive", sum(1 for n in run.lab.nodes if run.lab.alive(n)))
    if metric == "converged":
        ok = await in_thread(run.lab.converged)
        if not ok:
            raise StepFailed("assert converged: the nodes disagree on the live set or the map")
        return "converged"
    if metric == "readable":
        for b in run.blob_names(step):
            ok, detail = await read_one(run, b, float(step.get("timeout", 60)))
            if not ok:
                raise StepFailed(f"assert readable({b}): {detail}")
        return "readable"
    raise ScenarioError(f"unknown assert metric {metric!r}")


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
