"""What the netlab commands share: the testnet directory option, a console that never wraps what
is meant to be copied, and the one-line error exit.
"""

from __future__ import annotations

import sys

import click

DEFAULT_DIR = "./netlab-run"


def console(stderr: bool = False):
    from rich.console import Console

    if (sys.stderr if stderr else sys.stdout).isatty():
        return Console(stderr=stderr, highlight=False)
    # Piped or redirected: rich would wrap at 80 columns, breaking the paths, commands and
    # blob IDs that are meant to be copied. Never wrap; tables take the width they need.
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=10_000)


def fail(message: str, code: int = 1):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def dir_option(f):
    return click.option("--dir", "directory", default=DEFAULT_DIR, show_default=True, type=click.Path(file_okay=False),
                        help="Testnet directory (network.toml, netlab.json, one data dir per node).")(f)
