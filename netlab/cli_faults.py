"""The netlab commands that change a running testnet: kill, stop, start, add and wipe a node,
partition and heal the network, slow a node's links (each may wait until it converged again).
"""

from __future__ import annotations

import click

from .lab import Lab
from .cli_options import dir_option


def wait_option(f):
    return click.option("--wait/--no-wait", default=False, show_default=True,
                        help="Wait until the network has converged again (live sets and map).")(f)


def after(lab: Lab, wait: bool, timeout: float = 60.0) -> None:
    if wait:
        took = lab.wait_converged(timeout)
        click.echo(f"converged after {took:.1f} s")


def _node_command(name: str, done: str, doc: str):
    """`netlab NAME INDEX`: Lab.NAME(INDEX) under the directory's lock, then DONE (formatted
    with index and n, the node's entry) and, with --wait, until the network converged again."""
    def command(index, directory, wait):
        lab = Lab.open(directory)
        with lab.locked():
            n = getattr(lab, name)(index)
        click.echo(done.format(index=index, n=n))
        after(lab, wait)

    command.__name__, command.__doc__ = f"{name}_cmd", doc
    return click.command(name)(click.argument("index", type=int)(dir_option(wait_option(command))))


kill_cmd = _node_command("kill", "killed node {index} ({n.peer_id})", "SIGKILL node INDEX (a crash: no goodbye).")
stop_cmd = _node_command("stop", "stopped node {index} ({n.peer_id})", "SIGTERM node INDEX (a graceful shutdown).")
start_cmd = _node_command("start", "started node {index} ({n.peer_id}) pid {n.pid}",
                          "Restart node INDEX with its identity, data dir and port.")


@click.command("add")
@dir_option
@wait_option
def add_cmd(directory, wait):
    """A new node joins, bootstrapped from the network file."""
    lab = Lab.open(directory)
    with lab.locked():
        n = lab.add()
    click.echo(f"added node {n.index} ({n.peer_id}) on port {n.port}, pid {n.pid}")
    after(lab, wait)


@click.command("wipe")
@click.argument("index", type=int)
@dir_option
@click.option("--new-identity", is_flag=True, help="Delete the identity key too (a different node comes back).")
@wait_option
def wipe_cmd(index, directory, new_identity, wait):
    """Node INDEX loses its disk: kill it, delete its data (identity kept), restart it empty."""
    lab = Lab.open(directory)
    with lab.locked():
        n = lab.wipe(index, new_identity=new_identity)
    click.echo(f"wiped node {index}: restarted empty as {n.peer_id}, pid {n.pid}")
    after(lab, wait)


@click.command("partition")
@click.argument("groups")
@dir_option
def partition_cmd(groups, directory):
    """Split the network: GROUPS like 0,1/2,3 (unlisted nodes join the last group).

    Needs node support: each node applies DATA_DIR/faults.json (peer deny-list).
    """
    lab = Lab.open(directory)
    with lab.locked():
        got = lab.partition(groups)
    click.echo("partitioned: " + " | ".join(",".join(map(str, g)) for g in got))


@click.command("heal")
@dir_option
def heal_cmd(directory):
    """Undo a partition."""
    lab = Lab.open(directory)
    with lab.locked():
        lab.heal()
    click.echo("healed")


@click.command("slow")
@click.argument("index", type=int)
@click.option("--delay-ms", type=click.IntRange(0, 60000), required=True, help="Added latency; 0 removes it.")
@dir_option
def slow_cmd(index, delay_ms, directory):
    """Add DELAY_MS of latency to node INDEX's traffic (needs node support: faults.json)."""
    lab = Lab.open(directory)
    with lab.locked():
        lab.slow(index, delay_ms)
    click.echo(f"node {index}: +{delay_ms} ms")


COMMANDS = (kill_cmd, stop_cmd, start_cmd, add_cmd, wipe_cmd, partition_cmd, heal_cmd, slow_cmd)
