"""A scenario run's report: report.json, report.md (steps, blobs, WAL, epochs, the economy) and plot.png.
"""

from __future__ import annotations

import json

from .scenario_run import Run
from p2pwalrus.core.thresholds import max_faulty


def make_report(run: Run, failure: str | None, started: float) -> dict:
    n = run.sc.shards
    f = max_faulty(n)
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
