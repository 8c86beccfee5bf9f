"""The `p2pwalrus` command: run a storage node, store and read blobs, inspect the network.

Each command is a thin layer over a library function; heavy imports (libp2p) happen
only in the commands that talk to the network, so `blob-id` and `--help` start fast.

This module is the group (its options, errors and exit); the commands live in cli_blobs.py,
cli_network.py, quilt_cli.py, cli_wallet.py, cli_pay.py, cli_committee.py, daemon_cli.py and gateway/cli.py.
"""

from __future__ import annotations

import sys

import click

from . import __version__
from . import cli_common
from .cli_common import NETWORK_HELP, fail, note_interrupt, setup_logging
from .errors import P2PWalrusError

__all__ = ["main", "entry", "blob_id_cmd", "blob_status_cmd", "delete_cmd", "extend_cmd", "health_cmd", "info_cmd",
           "list_blobs_cmd", "node_cmd", "read_cmd", "store_cmd"]


def _user_error(exc: BaseException) -> P2PWalrusError | None:
    """The P2PWalrusError inside `exc`, looking through trio's exception groups."""
    if isinstance(exc, P2PWalrusError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            found = _user_error(sub)
            if found is not None:
                return found
    return None


def _interrupted(exc: BaseException) -> bool:
    """Whether `exc` is a Ctrl-C, perhaps inside trio's exception groups (along with the
    Cancelled and other errors of the tasks it ended)."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_interrupted(sub) for sub in exc.exceptions)
    return False


class _Cli(click.Group):
    def resolve_command(self, ctx, args):
        name, cmd, rest = super().resolve_command(ctx, args)
        if name == "store":  # from its very start: a store interrupted early certified nothing
            note_interrupt("interrupted; nothing was certified")
        return name, cmd, rest

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BaseException as exc:
            if _interrupted(exc):
                fail(cli_common.interrupt_note(), 130)  # one line, exit 128 + SIGINT, no traceback
            err = _user_error(exc)
            if err is None:
                raise
            fail(str(err))


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--network", default=None, metavar="NAME_OR_FILE", help=NETWORK_HELP)
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.version_option(__version__, prog_name="p2pwalrus")
@click.pass_context
def main(ctx: click.Context, network: str | None, verbose: int) -> None:
    """p2pwalrus: a decentralized blob store, Walrus-compatible, on a peer-to-peer network.

    Quick start: `netlab demo` runs a local testnet and stores a file in it.
    """
    ctx.obj = {"network": network, "verbose": verbose}
    # Hand the GIL over every 1 ms, not every 5 ms (Python's default). The encoder, the
    # verifiers and the hashing release the GIL for each codec call and each symbol they
    # hash, and waited up to the switch interval to get it back each time while another
    # thread ran Python (imports, the event loop's framing); so do a node's verifications
    # next to its receiving loop, and a read's next to its fetching. A 32 MiB encode beside
    # a busy Python thread, machine at load 7-8, 7 runs each, median (range): 5 ms 0.92 s
    # (0.64-1.19), 1 ms 0.52 s (0.40-0.98), 0.2 ms 0.60 s (0.42-1.00): finer hand-overs
    # wait for the scheduler more often once the cores are oversubscribed.
    sys.setswitchinterval(_SWITCH_INTERVAL)
    if ctx.invoked_subcommand not in _SERVER_COMMANDS:
        # Every other command is a client process that talks to p2pwalrus nodes only: libp2p
        # loads without TLS, RSA and the rest (p2p/patches/lean_import.py), unless the user chose
        # otherwise. Set here, before any command imports the client: `read` imported it
        # (client/chunked.py) before _with_client set this, and loaded pycryptodome's RSA,
        # cffi's C parser and x509 on every read (~10% of a 1 MiB read's wall clock).
        import os

        os.environ.setdefault("P2PWALRUS_LEAN_LIBP2P", "client")
    setup_logging(verbose)


_SWITCH_INTERVAL = 0.001  # seconds


# Commands that run a long-lived host other libp2p peers may reach (TLS, RSA keys): libp2p loads
# with everything but the transports we never build.
_SERVER_COMMANDS = frozenset({"node", "gateway", "daemon"})


from .cli_blobs import COMMANDS as _BLOB_COMMANDS  # noqa: E402  (blob-id, store, read, blob-status, extend, delete)
from .cli_blobs import blob_id_cmd, blob_status_cmd, delete_cmd, extend_cmd, read_cmd, store_cmd  # noqa: E402

for _command in _BLOB_COMMANDS:
    main.add_command(_command)

from .cli_network import COMMANDS as _NETWORK_COMMANDS  # noqa: E402  (node, info, health, list-blobs)
from .cli_network import health_cmd, info_cmd, list_blobs_cmd, node_cmd  # noqa: E402

for _command in _NETWORK_COMMANDS:
    main.add_command(_command)

from .gateway.cli import gateway_cmd  # noqa: E402  (imports its heavy parts lazily)

main.add_command(gateway_cmd)

from .daemon_cli import daemon_cmd  # noqa: E402  (this client kept running: store and read start fast)

main.add_command(daemon_cmd)

from .quilt_cli import COMMANDS as _QUILT_COMMANDS  # noqa: E402  (store-quilt, read-quilt, publish)

for _command in _QUILT_COMMANDS:
    main.add_command(_command)

from .cli_wallet import COMMANDS as _WALLET_COMMANDS  # noqa: E402  (wallet, stake, unstake)

for _command in _WALLET_COMMANDS:
    main.add_command(_command)

from .cli_pay import COMMANDS as _PAY_COMMANDS  # noqa: E402  (price, vote)

for _command in _PAY_COMMANDS:
    main.add_command(_command)

from .cli_committee import COMMANDS as _COMMITTEE_COMMANDS  # noqa: E402  (committee)

for _command in _COMMITTEE_COMMANDS:
    main.add_command(_command)


def _exit_code(code) -> int:
    """The status `sys.exit(code)` would end the process with (printing a message, as it does)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def entry(args=None) -> None:
    """The `p2pwalrus` program (console script and `python -m p2pwalrus`).

    Runs the click group; after a command that used the network, flushes standard output
    and error and leaves with os._exit, so the process does not spend 0.1-0.3 s
    tearing down libp2p's modules and threads after its work is done. Everything a
    command writes is written (and `read -o` fsyncs its file) before it returns.
    Other commands, and errors that are not exits, end the ordinary way.
    """
    import os

    try:
        main.main(args=args)
        code = 0  # standalone mode always raises SystemExit; this is only for safety
    except SystemExit as exc:
        if not cli_common.fast_exit:
            raise
        code = _exit_code(exc.code)
    if not cli_common.fast_exit:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # e.g. a closed pipe: the output is lost, say so with the status
            code = code or 1
    os._exit(code)


if __name__ == "__main__":
    entry()
