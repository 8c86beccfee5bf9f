"""One node process per data dir: an exclusive, non-blocking ``flock`` on ``DATA_DIR/lock``.

Two nodes on one data dir would share an identity (one peer ID, two hosts) and write the
same sliver files. The lock is held from the moment a node opens its data dir until it
closes it; the kernel drops it when the process dies, however it dies. The file holds the
holder's PID so that the refusal can name it. ``flock`` locks belong to an open file
description, so a second open in the same process (an in-process test network restarting
a node that was not stopped) is refused too.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from ..errors import DataDirInUseError, StorageError

LOCK_FILE = "lock"


class DataDirLock:
    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> "DataDirLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot open {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                pid = f"pid {holder}" if holder else "pid unknown"
                raise DataDirInUseError(f"data dir {self.path.parent} is in use by another node ({pid}); "
                                        f"stop it or use another --data-dir") from None
            raise StorageError(f"cannot lock {self.path}: {exc.strerror}") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the lock is what matters; the PID only improves the message
        self._fd = fd
        return self

    def release(self) -> None:
        """Idempotent. Closing the descriptor drops the lock; the file stays (unlinking it
        could let two processes lock two different files of the same name)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def lock_data_dir(data_dir: Path) -> DataDirLock:
    """Lock ``data_dir`` for this process or raise DataDirInUseError naming the holder's PID."""
    return DataDirLock(data_dir).acquire()
