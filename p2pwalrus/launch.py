"""The `p2pwalrus` program's first module: Ctrl-C while the CLI is still loading (its
imports take a second on a busy machine) ends with one line and status 130, like Ctrl-C
at any later moment, instead of a traceback from the middle of an import; and glibc's
malloc is told to keep freed buffers before anything large is allocated (malloc_tuning.py)."""

import os
import sys


# Commands that run until stopped: they give memory back beyond a bound (malloc_tuning.py).
LONG_RUNNING_COMMANDS = frozenset({"node", "gateway", "daemon"})


def _tune_malloc(args) -> None:
    argv = sys.argv[1:] if args is None else list(args)
    from .malloc_tuning import DAEMON, apply

    apply(long_running=any(a in LONG_RUNNING_COMMANDS for a in argv), settings=DAEMON if "daemon" in argv else None)


def entry(args=None) -> None:
    try:
        _tune_malloc(args)
        from .cli import entry as cli_entry
    except KeyboardInterrupt:
        sys.stderr.write("interrupted while starting; nothing was done\n")
        sys.stderr.flush()
        os._exit(130)
    cli_entry(args)
