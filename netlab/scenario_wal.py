"""Scenario steps on a testnet with a genesis (netlab/wal.py): stakes, epoch changes, price votes,
rewards, and the figures a report shows of them (WAL conserved after each change).
"""

from __future__ import annotations

import time
from pathlib import Path

import trio

from .scenario_spec import ScenarioError, StepFailed, amount_of, eval_bound
from .scenario_run import Run, committee_view, decided_epochs, describe_error, in_thread, node_files
from p2pwalrus.core.thresholds import max_faulty


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
    key = await in_thread(load_or_create_identity, Path(entry.data_dir))

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


async def step_wait_epoch(run: Run, step) -> str:
    """Until every running node holds a decided state that has NODE in its committee
    (``member = true``) or not (``member = false``), or (without NODE) until CHANGES more
    epochs were decided at every running node (default 1)."""
    timeout = float(step.get("timeout", 3 * run.sc.epoch_length + 30))
    member = step.get("member")
    node_idx = run.pick_nodes(step, "alive")[0] if member is not None else None
    peer = run.lab.node(node_idx).peer_id if node_idx is not None else None
    start = min((e["decided_epoch"] for e in decided_epochs(run).values()), default=0)
    target = start + int(step.get("changes", 1))
    t = time.monotonic()
    with trio.move_on_after(timeout):
        while True:
            if peer is not None:
                view = await committee_view(run)
                have = peer in view.current.stakes
                epochs = decided_epochs(run)
                if have == bool(member) and epochs and all(e["digest"] == view.current.digest.hex()
                                                           for e in epochs.values()):
                    break
            else:
                epochs = decided_epochs(run)
                if epochs and all(e["decided_epoch"] >= target for e in epochs.values()):
                    break
            await trio.sleep(1.0)
        took = time.monotonic() - t
        latest = max(e["decided_epoch"] for e in decided_epochs(run).values())
        what = (f"node {node_idx} {'in' if member else 'out of'} the committee" if peer is not None
                else f"epoch {latest} decided everywhere")
        if step.get("wal", True):
            await _wal_snapshot(run, f"epoch {latest}")
        run.event(f"{what} ({took:.1f} s)")
        return f"{what} after {took:.1f} s"
    raise StepFailed(f"epoch wait timed out after {timeout:.0f} s: decided epochs {decided_epochs(run)}")


async def collect_epoch_figures(run: Run) -> None:
    """Epoch changes (time, round, shards moved) and what the hand-overs cost, from the nodes'
    node.json and the chain; WAL conservation at every running node."""
    from p2pwalrus.core.wal.placement_stake import moved_shards

    status = await in_thread(run.lab.status)
    run.figures["wal_conserved"] = status["wal_conserved"]
    up = [r for r in status["nodes"] if r["alive"] and r.get("epochs")]
    if not up:
        return
    try:
        view = await committee_view(run)
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
    repair = [r.get("repair") or {} for r in (await in_thread(node_files, run))]
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


EXTREME_PRICE = (1 << 64) - 1  # FROST: the highest price a vote may carry


async def mark_lost(run: Run, idx: int) -> None:
    """Remember that node IDX lost all its shards while epoch E was running (E: the newest
    decided epoch then): it must earn nothing for the first epoch it spends wholly down."""
    decided = max((e["decided_epoch"] for e in decided_epochs(run).values()), default=0)
    run.figures.setdefault("lost", []).append({"node": idx, "peer_id": run.lab.node(idx).peer_id,
                                               "decided_epoch": decided, "t": run.now()})


async def step_vote(run: Run, step) -> str:
    """Every running committee member votes STORAGE_PRICE and WRITE_PRICE (the `p2pwalrus vote`
    command's own code writes each node's vote.json); with ``extreme = "f"`` members of total
    weight at most f (the heaviest first) vote the highest price there is instead. The price
    the quorum-below rule gives over the current weights is kept for ``wait_price``."""
    from p2pwalrus.cli_pay import cast_vote
    from p2pwalrus.core.wal.pricing import PriceVote, decide_prices

    view = await committee_view(run)
    current = view.current
    weights = dict(current.weights)
    storage, write = amount_of(step.get("storage_price", 0)), amount_of(step.get("write_price", 0))
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
        await in_thread(cast_vote, net, Path(run.lab.node(peers[peer]).data_dir), f"{price[0]}FROST",
                        f"{price[1]}FROST", None, [])
        votes[peer] = PriceVote(*price)
    expected = decide_prices(weights, run.n, votes, current.prices)
    run.figures.setdefault("votes", []).append({
        "t": run.now(), "epoch": current.epoch, "storage_price": storage, "write_price": write,
        "extreme_nodes": sorted(peers[p] for p in extreme), "extreme_weight": sum(weights[p] for p in extreme),
        "f": max_faulty(run.n), "expected": list(expected)})
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
            view = await committee_view(run)
            p = view.current.prices
            now = (p.storage_price_per_unit, p.write_price_per_unit)
            epochs = decided_epochs(run)
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
            rows = [r for r in (await in_thread(run.lab.status))["nodes"] if r.get("alive") and r.get("ledger")]
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
    view = await committee_view(run)
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
