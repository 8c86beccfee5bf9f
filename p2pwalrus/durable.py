"""Files written crash-safely: old or new after a crash, never half (node and client both use
it: a node's ledger and votes, a wallet's journal). Standard library only."""

from __future__ import annotations

import errno
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


_ALIGN = 4096
_KEEP_BUFFER = 8 << 20  # an I/O thread keeps its aligned buffer up to this size (larger: one use)
_direct = threading.local()


def _aligned_buffer(size: int):
    """A page-aligned buffer of at least `size` bytes: this thread's, or a new one for one use."""
    import mmap

    if size > _KEEP_BUFFER:
        return mmap.mmap(-1, size)
    buf = getattr(_direct, "buf", None)
    if buf is None or len(buf) < size:
        if buf is not None:
            buf.close()
        buf = _direct.buf = mmap.mmap(-1, max(size, 4 << 20))
    return buf


def write_direct(fd: int, header: bytes, data: memoryview) -> bool:
    """`header` then `data` written to the empty file `fd` with O_DIRECT (Linux), through a
    page-aligned buffer, padded to 4 KiB and cut back to their size; no fsync. False, with
    nothing written, if the file system refuses O_DIRECT (tmpfs). Used for large contents
    that are not read back soon: a buffered write first copies them into page-cache pages,
    which on this machine's virtual CPUs cost more than the rest of writing them."""
    import fcntl

    size = len(header) + data.nbytes
    padded = -(-size // _ALIGN) * _ALIGN
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return False
        raise
    buf = _aligned_buffer(padded)
    buf[: len(header)] = header
    buf[len(header): size] = data
    buf[size:padded] = bytes(padded - size)
    view = memoryview(buf)
    try:
        done = 0
        while done < padded:
            try:
                done += os.write(fd, view[done:padded])
            except OSError as exc:
                if exc.errno == errno.EINVAL and done == 0:
                    fcntl.fcntl(fd, fcntl.F_SETFL, flags)
                    return False
                raise
    finally:
        view.release()
        if buf is not getattr(_direct, "buf", None):
            buf.close()
    os.ftruncate(fd, size)  # the padding off again (a caller that fsyncs makes the size durable too)
    return True
