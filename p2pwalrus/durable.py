"""Files written crash-safely: old or new after a crash, never half (node and client both use
it: a node's ledger and votes, a wallet's journal). Standard library only."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from .errors import StorageError


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Temp file in the same directory, rename over ``path``: readers see the old file or the
    new one, never half. ``durable``: fsync the file before and the directory after, so a
    crash keeps it too (views rewritten at every change, such as node.json, skip that). The
    temp name is the writer's own (process and thread), so concurrent writers never share one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None
