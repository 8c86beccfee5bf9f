"""The `p2pwalrus` program's first module: Ctrl-C while the CLI is still loading (its
imports take a second on a busy machine) ends with one line and status 130, like Ctrl-C
at any later moment, instead of a traceback from the middle of an import."""

import os
import sys


def entry(args=None) -> None:
    try:
        from .cli import entry as cli_entry
    except KeyboardInterrupt:
        sys.stderr.write("interrupted while starting; nothing was done\n")
        sys.stderr.flush()
        os._exit(130)
    cli_entry(args)
