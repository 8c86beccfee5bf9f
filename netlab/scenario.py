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

The jobs live in their own modules: scenario_spec.py reads and checks a file, scenario_run.py
holds a run's state and the client every step shares, scenario_steps.py and scenario_wal.py
are the steps, scenario_report.py writes the report; this module drives a run and keeps every
name importable from here.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import trio

from .lab import LabError
from .scenario_report import economy_lines, make_report, wal_report, write_report
from .scenario_run import EPOCH_CACHE, Run, describe_error, sampler, with_client
from .scenario_spec import (
    SCENARIO_DIR, TOP_KEYS, Scenario, ScenarioError, StepFailed, eval_bound, load_scenario, parse_scenario, parse_size,
)
from .scenario_steps import ACTIONS
from .scenario_wal import EXTREME_PRICE, collect_epoch_figures, economy_figures

__all__ = ["ACTIONS", "EXTREME_PRICE", "SCENARIO_DIR", "TOP_KEYS", "Run", "Scenario", "ScenarioError", "StepFailed",
           "collect_epoch_figures", "describe_error", "economy_figures", "economy_lines", "eval_bound",
           "load_scenario", "make_report", "parse_scenario", "parse_size", "run_scenario", "wal_report",
           "with_client", "write_report"]


async def _run_steps(run: Run) -> str | None:
    steps = run.sc.steps
    if steps[0]["action"] != "up":
        steps = [{"action": "up"}] + steps
    failure = None
    async with trio.open_nursery() as nursery:
        for i, step in enumerate(steps):
            if step["action"] != "up" and run.lab is not None and not nursery.child_tasks:
                nursery.start_soon(sampler, run)
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
    EPOCH_CACHE[:] = [run_dir / "client-epochs"]  # each sample's client pulls only new epoch states
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
