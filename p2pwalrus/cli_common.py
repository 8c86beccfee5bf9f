"""What the `p2pwalrus` commands share: the --network option, failing with one line, the
Ctrl-C note, sizes and blob IDs parsed, progress bars, the client's key and a connected
client for one command, and the atomic write behind `read -o`.

cli.py, cli_files.py, cli_wallet.py, cli_pay.py, cli_committee.py, quilt_cli.py and
gateway/cli.py all import from here, and from each other only public names. Light at
import (click only): `p2pwalrus --help` and `blob-id` never load libp2p or trio.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

NETWORK_HELP = "Network name (bootstrap/, shipped with p2pwalrus) or path to a network .toml (env P2PWALRUS_NETWORK, default: local)."


def network_option(f):
    """The --network option of a subcommand (accepted after its name; the group's comes before)."""
    return click.option("--network", "network", default=None, metavar="NAME_OR_FILE", help=NETWORK_HELP)(f)


def json_network_options(json_help: str = "Print a JSON object."):
    """--json, --network and the click context: what every command that asks the network and
    prints what it learns takes (in this order in its help)."""
    def decorate(f):
        return click.option("--json", "as_json", is_flag=True, help=json_help)(network_option(click.pass_context(f)))
    return decorate


def resolve_network(ctx: click.Context, local: str | None):
    """The network a command runs on: its own --network, else the group's, else the default."""
    from .config import load_network

    return load_network(local or (ctx.obj or {}).get("network"))


def ledger_network(ctx: click.Context, local: str | None):
    """Like resolve_network, for a command that needs the WAL ledger (a network with a genesis)."""
    from .client.wallet import NoLedgerError

    net = resolve_network(ctx, local)
    if net.genesis is None:
        raise NoLedgerError(f"network {net.name!r} ({net.source}) has no genesis, so no ledger: pass --network "
                            "the network.toml that `netlab up` wrote, or a network file with a [genesis] table")
    return net


def fail(message: str, code: int = 1):
    """End the command with one line on standard error and exit status `code`."""
    click.echo(message if code == 130 else f"error: {message}", err=True)
    if code == 130:
        # Interrupted: leave now. An interrupt during an import can leave the interpreter to
        # end by re-raising SIGINT at shutdown (status -2, not 130); there is nothing left
        # to tidy that the OS does not.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(130)
    sys.exit(code)


# What a Ctrl-C leaves behind, said in one line; commands update it as they go
# (a store: nothing certified, then certificate being published, then certified).
_interrupt_note = "interrupted"


def note_interrupt(text: str) -> None:
    """Set the line a Ctrl-C prints from now on."""
    global _interrupt_note
    _interrupt_note = text


def interrupt_note() -> str:
    return _interrupt_note


_libp2p_log_level = logging.CRITICAL


def setup_logging(verbose: int) -> None:
    global _libp2p_log_level
    level = logging.DEBUG if verbose >= 2 else logging.INFO if verbose >= 1 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr)
    # py-libp2p logs every refused negotiation and closed DHT stream: keep it for -vvv.
    _libp2p_log_level = logging.DEBUG if verbose >= 3 else logging.CRITICAL
    quiet_libp2p()


def quiet_libp2p() -> None:
    """Apply our level to py-libp2p's loggers. Call again once libp2p is imported: its import
    resets the 'libp2p' logger to WARNING (libp2p.utils.logging.setup_logging), and commands
    import it only when they need the network."""
    logging.getLogger("libp2p").setLevel(_libp2p_log_level)


def parse_size(text: str) -> int:
    """A byte count such as 1000000, 10M, 2GiB (fails the command on anything else)."""
    from .core.sizes import parse_size as parse

    try:
        return parse(text)
    except ValueError as exc:
        fail(str(exc))


def parse_blob_id(text: str) -> bytes:
    from .core.blob_id import parse_blob_id as parse

    return parse(text)


def read_padded(path: str, n_shards: int):
    """A file read straight into the encoder's padded buffer (no second copy of the blob)."""
    from .core import rs2

    if path == "-":
        data = sys.stdin.buffer.read()
        return data, len(data)
    try:
        size = Path(path).stat().st_size
    except FileNotFoundError:
        fail(f"{path}: no such file; check the path, or pass - to store standard input")
    except PermissionError:
        fail(f"{path}: permission denied; store a file you can read")
    if Path(path).is_dir():
        fail(f"{path} is a directory; store a file (tar it first)")
    buf = rs2.blob_buffer(size, n_shards)  # raises BlobTooLargeError, naming the limit
    try:
        with open(path, "rb") as fh:
            got = fh.readinto(memoryview(buf)[:size])
    except PermissionError:
        fail(f"{path}: permission denied; store a file you can read")
    if got != size:
        fail(f"{path} changed while being read ({got} of {size} bytes)")
    return buf, size


def write_atomically(out: str, write, *, with_path: bool = False) -> object:
    """`write(fh)` into a temporary file beside `out`, then rename it to `out`: a failed or
    interrupted write never leaves a partial file behind. The temporary file is made first,
    so an output that cannot be written fails before any work. Returns what `write` returned.
    `with_path`: `write(fh, path of the temporary file)`, for a writer in another process.

    No fsync, as with cp, curl or `tahoe get`: what was read can be read again from the
    network, and a 64 MiB fsync cost 0.3-0.5 s of a 1 s read here."""
    import tempfile

    target = Path(out)
    if not target.parent.is_dir():
        what = "is not a directory" if target.parent.exists() else "does not exist (create it first)"
        fail(f"cannot write {out}: {target.parent} {what}; pass -o a path in a directory you can write")
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}; pass -o a path in a directory you can write")
    try:
        with os.fdopen(fd, "wb") as fh:
            result = write(fh, tmp) if with_path else write(fh)
            try:
                fh.flush()
                os.replace(tmp, target)
            except OSError as exc:
                fail(f"cannot write {out}: {exc.strerror or exc}")
    finally:
        Path(tmp).unlink(missing_ok=True)
    return result


class RichProgress:
    """Client progress reported as a rich bar on standard error, when it is a terminal."""

    def __init__(self):
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

        self.bar = Progress(
            "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(), transient=True, console=__import__("rich.console").console.Console(stderr=True),
        )
        self.task = None

    def start(self, description: str, total: int) -> None:
        if self.task is not None:  # a new bar after the last (a chunked file after its manifest)
            self.bar.remove_task(self.task)
        self.bar.start()
        self.task = self.bar.add_task(description, total=total)

    def advance(self, amount: int) -> None:
        if self.task is not None:
            self.bar.advance(self.task, amount)

    def done(self) -> None:
        self.bar.stop()


def progress():
    """A bar on a terminal, else the client's silent progress."""
    from .client.client import Progress

    return RichProgress() if sys.stderr.isatty() else Progress()


def store_progress():
    """A store's progress, which also keeps the Ctrl-C note up to date."""
    from .core.blob_id import blob_id_to_str

    p = progress()
    note_interrupt("interrupted; nothing was certified")

    def certifying(blob_id: bytes) -> None:
        note_interrupt(f"interrupted while publishing the certificate of {blob_id_to_str(blob_id)}: "
                       "it may be certified (check with blob-status)")

    p.certifying = certifying
    return p


def client_dir() -> Path:
    """Where this client keeps its key, wallets and verified epoch states (P2PWALRUS_CLIENT_DIR)."""
    import platformdirs

    where = os.environ.get("P2PWALRUS_CLIENT_DIR")
    return Path(where) if where else Path(platformdirs.user_data_dir("p2pwalrus")) / "client"


def client_key():
    """The client's own key (it signs delete requests), kept under the user data dir."""
    from .p2p.identity import IdentityError, load_or_create_identity

    where = os.environ.get("P2PWALRUS_CLIENT_DIR")
    try:
        return load_or_create_identity(client_dir())
    except IdentityError as exc:
        raise IdentityError(f"{exc} (the client's key; set by P2PWALRUS_CLIENT_DIR)" if where else
                            f"{exc} (the client's key; P2PWALRUS_CLIENT_DIR names another place)") from None


# Set by commands that loaded the network stack: cli.entry then ends the process with os._exit
# once the output is flushed, skipping the interpreter's teardown of libp2p and its threads
# (measured: 0.12-0.32 s, median 0.16 s, after a blob-status on a 5-node netlab).
fast_exit = False


def with_client(net, fn):
    """Run `fn(client)` in a fresh trio loop with a connected client."""
    global fast_exit
    import trio

    # A client process talks to p2pwalrus nodes only: libp2p loads without TLS and RSA too
    # (p2p/patches/lean_import.py), unless the user chose otherwise.
    os.environ.setdefault("P2PWALRUS_LEAN_LIBP2P", "client")
    from .client.client import open_client

    quiet_libp2p()
    fast_exit = True
    # The ~60k objects the network stack's import made are out of every later collection
    # (a short process; automatic full collections otherwise walk them all again).
    import gc

    gc.freeze()

    cache = None
    if net.genesis is not None:  # decided epoch states this client verified, kept for the next command
        cache = client_dir() / "epochs"

    async def run():
        from .cli_pay import paying_note

        async with open_client(net, client_key(), epoch_cache=cache) as client:
            client.on_pay = paying_note  # the cost, on stderr, before anything is paid
            await client.refresh_membership()
            return await fn(client)

    return trio.run(run)


def serve_until_stopped(fn, *args) -> None:
    """Run a command that serves until a signal stops it (node, gateway, daemon: `fn` returns
    the signal): the collector tuned for a long life (gc_tuning.py), and Ctrl-C ends with
    status 130 as every command (128 + SIGINT; SIGTERM, a service stop, is 0)."""
    import signal

    import trio

    from .gc_tuning import apply as tune_gc

    tune_gc()
    if trio.run(fn, *args) == signal.SIGINT:
        sys.exit(130)


class BlobIdCommand(click.Command):
    """A command taking a BLOB_ID, which may begin with '-' (a base64url character): such a
    43-character argument is moved behind '--' so that it is not taken for an option."""

    def parse_args(self, ctx, args):
        import re

        if "--" not in args:
            ids = [a for a in args if re.fullmatch(r"-[A-Za-z0-9_-]{42}", a)]
            if len(ids) == 1:
                args = [a for a in args if a != ids[0]] + ["--", ids[0]]
        return super().parse_args(ctx, args)
