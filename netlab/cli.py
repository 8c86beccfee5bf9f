"""The `netlab` command: a local p2pwalrus testnet of node processes, with fault injection.

    netlab demo                      # the quick start: up, store, read back, explain, wait
    netlab up --nodes 7 --shards 10  # start a testnet in ./netlab-run and wait until it formed
    netlab status                    # who is alive, live sets, shards, blobs, map agreement
    netlab kill 2 / stop 2 / start 2 / add / wipe 3
    netlab partition 0,1/2,3 / heal / slow 4 --delay-ms 200
    netlab run netlab/scenarios/lose_f.toml [--ci]
    netlab inproc --nodes 100 --shards 100
    netlab down                      # end every node process netlab started

The commands that change a running testnet (kill ... slow) are in cli_faults.py, the options
they all share in cli_options.py.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from .cli_options import DEFAULT_DIR, console, dir_option, fail
from .lab import Lab, LabError

__all__ = ["DEFAULT_DIR", "DEFAULT_NODES", "DEFAULT_SHARDS", "main", "bring_up", "print_hints", "quiet_libp2p",
           "console", "dir_option", "fail", "add_cmd", "heal_cmd", "kill_cmd", "partition_cmd", "slow_cmd",
           "start_cmd", "stop_cmd", "wipe_cmd"]

# 7 nodes x 10 shards (f = 3): about 85 MB and a little CPU per idle node, so 2 cores and
# < 1 GB hold it with room for a client; 10 shards over 7 nodes puts 1-2 shards on each
# node, so killing one or two nodes (<= f shards) keeps every blob readable, and no node
# holds n - 2f = 4 shards (no node can decode a blob alone).
DEFAULT_NODES = 7
DEFAULT_SHARDS = 10


class _Cli(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LabError as exc:
            fail(str(exc))
        except OSError as exc:
            if exc.filename is None:
                raise
            # A --dir that cannot be made or written (a file on the way, no permission).
            fail(f"{exc.filename}: {exc.strerror or exc}; pass --dir a directory you can write")
        except KeyboardInterrupt:
            fail("interrupted", 130)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """netlab: a local p2pwalrus testnet of node processes, with fault injection.

    Start here: `netlab demo`.
    """
    quiet_libp2p()


def quiet_libp2p() -> None:
    """py-libp2p logs every refused dial to a killed node (faults here are on purpose).

    It configures its loggers when imported, so import it first, then silence it.
    """
    import logging

    import p2pwalrus.node  # noqa: F401  (imports libp2p, without the parts we never use)

    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("libp2p"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


# --- up / down / status ------------------------------------------------------------------


def bring_up(directory, nodes: int, shards: int, *, base_port=None, epoch_length=3600.0, timeout=None,
             log=lambda m: None, storage_price: int = 0, write_price: int = 0) -> tuple[Lab, float]:
    from .lab import up_timeout

    timeout = timeout or up_timeout(nodes)
    t0 = time.monotonic()
    lab = Lab.create(directory, nodes, shards, base_port=base_port, epoch_length=epoch_length,
                     storage_price=storage_price, write_price=write_price)
    try:
        with lab.locked():
            lab.up(log=log)
        log(f"{nodes} node processes started; waiting until every node sees all {nodes} and they agree on the map")
        lab.wait_converged(timeout)
    except BaseException:
        lab.down()
        raise
    return lab, time.monotonic() - t0


@main.command("up")
@click.option("--nodes", "-n", type=click.IntRange(1, 64), default=DEFAULT_NODES, show_default=True,
              help="Storage node processes to start.")
@click.option("--shards", "-s", type=click.IntRange(4, 65535), default=DEFAULT_SHARDS, show_default=True,
              help="Shards of the network (every blob is encoded into this many sliver pairs).")
@dir_option
@click.option("--seed", type=int, default=None, help="Recorded in netlab.json (scenarios use it for their choices).")
@click.option("--base-port", type=click.IntRange(1024, 65000), default=None,
              help="Node i listens on BASE_PORT + i (default: free ports chosen now, kept across restarts).")
@click.option("--epoch-length", type=float, default=3600.0, show_default=True,
              help="Seconds per epoch: one agreement each, where stake moves shards (60 to watch it happen; "
                   "`store --epochs N` keeps a blob N of them).")
@click.option("--timeout", type=float, default=None,
              help="Give up forming the network after this many seconds (default: 60, or 3 per node above 20).")
@click.option("--gateway/--no-gateway", default=False, show_default=True,
              help="Also start the HTTP gateway (Walrus publisher/aggregator API, dashboard) on 127.0.0.1.")
@click.option("--gateway-port", type=click.IntRange(1024, 65535), default=None, help="Default: a free port.")
@click.option("--storage-price", default="0", show_default=True, metavar="AMOUNT",
              help="Genesis storage price per 1 MiB unit of encoded size per epoch (e.g. 1000FROST, 0.001WAL).")
@click.option("--write-price", default="0", show_default=True, metavar="AMOUNT",
              help="Genesis write price per 1 MiB unit, once per store.")
@click.option("--fresh", is_flag=True,
              help="If DIR already holds a stopped testnet, delete it (identities, data, logs) and start a new one.")
def up_cmd(nodes, shards, directory, seed, base_port, epoch_length, timeout, gateway, gateway_port, storage_price,
           write_price, fresh):
    """Start NODES storage node processes in a new testnet and wait until they form one network.

    A DIR that already holds a testnet is refused unless --fresh. The nodes run the
    network's shipped timings: an idle node costs a few small heartbeat frames per peer
    and period. Each node process takes about 85 MB; for hundreds of nodes on one
    machine, `netlab inproc`.
    """
    _refuse_existing_testnet(directory, fresh)
    con = console()
    from p2pwalrus.core.wal.amounts import AmountError, parse_amount

    try:
        prices = parse_amount(storage_price), parse_amount(write_price)
    except AmountError as exc:
        raise click.BadParameter(str(exc)) from None
    lab, took = bring_up(directory, nodes, shards, base_port=base_port, epoch_length=epoch_length, timeout=timeout,
                         log=lambda m: con.print(f"[dim]{m}[/dim]"), storage_price=prices[0], write_price=prices[1])
    if seed is not None:
        lab.meta["seed"] = seed
        lab.save()
    con.print(f"[green]testnet up[/green]: {nodes} nodes, {shards} shards, formed in {took:.1f} s")
    if gateway:
        try:
            url = lab.start_gateway(gateway_port)
        except LabError:
            lab.down()
            raise
        con.print(f"  gateway       {url}  (dashboard at {url}/)")
    print_hints(con, lab)


def _refuse_existing_testnet(directory, fresh: bool) -> None:
    """`netlab up` makes a new testnet: never silently delete one that is there already."""
    from .lab import STATE_FILE

    if not (Path(directory) / STATE_FILE).exists():
        return
    old = Lab.open(directory)
    running = [n for n in old.nodes if old.alive(n)]
    if running:
        raise LabError(f"a testnet is already running in {directory} ({len(running)} of {len(old.nodes)} nodes up): "
                       f"use it (`netlab status --dir {directory}`) or end it with `netlab down --dir {directory}`")
    if not fresh:
        last = len(old.nodes) - 1
        raise LabError(f"{directory} already holds a stopped testnet of {len(old.nodes)} node(s): "
                       f"`netlab start INDEX --dir {directory}` restarts its node INDEX (0..{last}) with its identity "
                       f"and data, one node per command, or `netlab up --fresh --dir {directory}` deletes it "
                       f"and starts a new one")


def print_hints(con, lab: Lab) -> None:
    """Print where the testnet's files are and the commands that use it."""
    net = lab.network_path
    d = lab.dir
    con.print(f"  network file  {net}")
    con.print(f"  state         {lab.state_path}  (logs: {d}/nodeXX/node.log)")
    con.print("Try:")
    con.print(f"  p2pwalrus --network {net} info")
    con.print(f"  p2pwalrus --network {net} store FILE")
    con.print(f"  p2pwalrus --network {net} read BLOB_ID -o OUT")
    con.print(f"  p2pwalrus --network {net} blob-status BLOB_ID")
    con.print(f"  p2pwalrus --network {net} daemon &   (then store and read start in ~0.1 s)")
    con.print(f"  netlab status --dir {d}   netlab kill 1 --dir {d}   netlab down --dir {d}")


@main.command("down")
@dir_option
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds before SIGKILL.")
def down_cmd(directory, timeout):
    """End every node process of the testnet (SIGTERM, then SIGKILL)."""
    lab = Lab.open(directory)
    with lab.locked():
        ended = lab.down(timeout)
    left = [n.index for n in lab.nodes if lab.alive(n)]
    if left:
        fail(f"node(s) {left} still running")
    click.echo(f"stopped {len(ended)} node process(es) in {lab.dir}")


@main.command("status")
@dir_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def status_cmd(directory, as_json):
    """Per node: alive?, peer ID, live-set size, shards, blobs; and whether all agree on the map."""
    lab = Lab.open(directory)
    st = lab.status()
    if as_json:
        for r in st["nodes"]:
            r.pop("live_peers", None)
        click.echo(json.dumps(st, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"netlab {st['dir']}  ({st['n_shards']} shards)")
    for col in ("node", "state", "pid", "peer id", "live", "epoch", "stake", "shards", "blobs", "map", "faults"):
        table.add_column(col)
    for r in st["nodes"]:
        state = "[green]up[/green]" if r["ready"] else "[yellow]starting[/yellow]" if r["alive"] else f"[red]{r['state']}[/red]"
        faults = ", ".join(x for x in (f"deny {r['denied']}" if r["denied"] else "",
                                       f"+{r['delay_ms']} ms" if r["delay_ms"] else "") if x)
        ep = r.get("epochs") or {}  # the decided epoch state the node holds (a network with a genesis)
        table.add_row(str(r["index"]), state, str(r["pid"] or "-"), r["peer_id"][-10:],
                      str(r["live"] if r["live"] is not None else "-"),
                      str(ep["decided_epoch"]) if ep else "-", f"{ep['stake'] // 10**9} WAL" if ep else "-",
                      ",".join(map(str, r["shards"])) or "-",
                      str(r["blobs"] if r["blobs"] is not None else "-"), r["map_digest"][:8] or "-", faults)
    con = console()
    con.print(table)
    verdict = "[green]converged[/green]" if st["converged"] else f"[yellow]not converged[/yellow] ({st['map_digests']} maps)"
    con.print(f"{st['nodes_alive']}/{st['nodes_total']} nodes alive, {verdict}"
              + (f", partition {st['partition']}" if st["partition"] else "")
              + ("" if st["wal_conserved"] else ", [red]WAL NOT CONSERVED at some node[/red]"))
    ledgers = [r["ledger"] for r in st["nodes"] if r.get("ledger")]
    if ledgers:  # what stores paid and what the holders were paid from it (issue 16)
        funds = sorted({x.get("funds", 0) for x in ledgers})
        rewards = sorted({x.get("rewards_paid", 0) for x in ledgers})
        prices = sorted({(x.get("storage_price", 0), x.get("write_price", 0)) for x in ledgers})
        con.print(f"storage funds {'/'.join(map(str, funds))} FROST, rewards paid {'/'.join(map(str, rewards))} "
                  f"FROST, prices {', '.join(f'{a}+{b}' for a, b in prices)} FROST per MiB unit (epoch + write)")


@main.command("watch")
@dir_option
@click.option("--every", type=click.FloatRange(1, 3600), default=10.0, show_default=True,
              help="Seconds between samples.")
@click.option("--for", "duration", type=click.FloatRange(1, 86400), default=600.0, show_default=True,
              help="Seconds to watch.")
@click.option("--json", "as_json", is_flag=True, help="End with the summary as a JSON object.")
def watch_cmd(directory, every, duration, as_json):
    """Sample the running testnet: CPU of its node processes, live-set sizes, shard maps.

    Exits 1 if the nodes were not one network (every node listing all running nodes, one
    shard map) at every sample."""
    from .watch import summary, watch

    lab = Lab.open(directory)
    samples = watch(lab, every, duration, emit=click.echo)
    res = summary(samples, lab)
    if as_json:
        click.echo(json.dumps(res, indent=2))
    else:
        click.echo(f"{res['nodes']} nodes over {res['seconds']:.0f} s: {res['cpu_mean_percent']:.1f}% of one core "
                   f"together on average (max {res['cpu_max_percent']:.1f}%), {res['rss_mb_mean']:.0f} MB per node; "
                   + ("one network throughout" if res["one_network_throughout"] else
                      f"NOT one network throughout (up to {res['max_maps']} maps, a live set of {res['min_live']})"))
    sys.exit(0 if res["one_network_throughout"] else 1)


# --- scenarios, demo, in-process ----------------------------------------------------------


@main.command("run")
@click.argument("scenario")
@click.option("--ci", is_flag=True, help="Use the scenario's [ci] form (few nodes, small blobs).")
@click.option("--dir", "directory", default=None, type=click.Path(file_okay=False),
              help="Run directory (default ./netlab-runs/NAME-TIME).")
@click.option("--keep", is_flag=True, help="Leave the testnet running afterwards.")
@click.option("--no-require-repair", is_flag=True,
              help="A wait_repaired step that times out is a warning, not a failure.")
@click.option("--seed", type=int, default=None, help="Override the scenario's seed.")
def run_cmd(scenario, ci, directory, keep, no_require_repair, seed):
    """Run a scenario file (or a shipped one by name: churn, economy, epochs, lose_f, partition, pay, wipe).

    Writes report.json, report.md and plot.png into the run directory.
    """
    from .scenario import load_scenario, run_scenario

    sc = load_scenario(scenario, ci=ci)
    if seed is not None:
        sc.seed = seed
    if directory is None:
        directory = Path("netlab-runs") / f"{sc.name}{'-ci' if ci else ''}-{time.strftime('%Y%m%d-%H%M%S')}"
    con = console()
    report = run_scenario(sc, Path(directory), keep=keep, require_repair=not no_require_repair,
                          log=lambda m: con.print(m))
    con.print(f"report: {Path(directory) / 'report.md'}  plot: {Path(directory) / 'plot.png'}")
    con.print("[green]PASSED[/green]" if report["ok"] else f"[red]FAILED[/red]: {report['failure']}")
    sys.exit(0 if report["ok"] else 1)


@main.command("demo")
@click.option("--nodes", "-n", type=click.IntRange(4, 32), default=5, show_default=True,
              help="Storage node processes to start.")
@click.option("--shards", "-s", type=click.IntRange(4, 1000), default=10, show_default=True,
              help="Shards of the network.")
@click.option("--size", default="256K", show_default=True, help="Size of the generated file.")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Keep the testnet until Ctrl-C (--no-wait: tear down now).")
@click.option("--dir", "directory", default=None, type=click.Path(file_okay=False),
              help="Testnet directory (default: a new temporary directory).")
def demo_cmd(nodes, shards, size, wait, directory):
    """The quick start: a small testnet, a file stored and read back, then commands to try."""
    from .demo import run_demo

    sys.exit(run_demo(nodes, shards, size, wait, directory, console()))


@main.command("inproc")
@click.option("--nodes", "-n", type=click.IntRange(2, 2000), default=100, show_default=True,
              help="Nodes to run in this process.")
@click.option("--shards", "-s", type=click.IntRange(4, 65535), default=100, show_default=True,
              help="Shards of the network.")
@click.option("--timeout", type=float, default=300.0, show_default=True,
              help="Seconds to wait for one network to form before reporting failure.")
@click.option("--json", "as_json", is_flag=True, help="Print the measurements as a JSON object.")
def inproc_cmd(nodes, shards, timeout, as_json):
    """Many nodes in this one process: time to form one network, and peak memory."""
    from .inproc import measure

    res = measure(nodes, shards, timeout=timeout, log=lambda m: click.echo(m, err=True))
    if as_json:
        click.echo(json.dumps(res, indent=2))
    else:
        click.echo(f"{nodes} nodes, {shards} shards: started in {res['start_seconds']:.1f} s, "
                   f"formed one network {res['converge_seconds']:.1f} s later "
                   f"({res['total_seconds']:.1f} s in all, {res['cpu_seconds']:.0f} s of CPU); "
                   f"peak RSS {res['peak_rss_mb']:.0f} MB "
                   f"({res['peak_rss_mb'] / nodes:.1f} MB per node)" if res["converged"] else
                   f"{nodes} nodes did NOT converge in {timeout:.0f} s: {res.get('detail')}")
    sys.exit(0 if res["converged"] else 1)


from .cli_faults import COMMANDS as _FAULT_COMMANDS  # noqa: E402  (kill, stop, start, add, wipe, partition, ...)
from .cli_faults import (  # noqa: E402
    add_cmd, heal_cmd, kill_cmd, partition_cmd, slow_cmd, start_cmd, stop_cmd, wipe_cmd,
)

for _command in _FAULT_COMMANDS:
    main.add_command(_command)

from .wal import faucet_cmd  # noqa: E402

main.add_command(faucet_cmd)


if __name__ == "__main__":
    main()
