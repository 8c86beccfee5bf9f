"""A blob's encoding started ahead, in its own thread (no network stack imported here)."""

from __future__ import annotations

import threading
import time

from ..core import rs2


class BackgroundEncoding:
    """A blob's RS2 encoding running in its own thread from the moment this is made.

    The CLI makes one right after reading the file, so that the encoding (mostly GIL-free:
    codec, hashing and numpy copies) overlaps loading the network stack, dialling and
    pulling the membership. `wait()` hands the result to a trio task without blocking the
    loop; a failure is raised there. A daemon thread: a process that ends early does not
    wait for it.
    """

    def __init__(self, data, n_shards: int, length: int | None = None):
        self._done = threading.Event()
        self._result: rs2.EncodedBlob | None = None
        self._error: BaseException | None = None
        self.seconds = 0.0
        self.waited = 0.0  # how long wait() waited
        self._thread = threading.Thread(target=self._run, args=(data, n_shards, length),
                                        name="p2pwalrus-encode", daemon=True)
        self._thread.start()

    def _run(self, data, n_shards: int, length: int | None) -> None:
        t0 = time.perf_counter()
        try:
            self._result = rs2.encode_blob(data, n_shards, length=length)
        except BaseException as exc:  # handed to wait()
            self._error = exc
        finally:
            self.seconds = time.perf_counter() - t0
            self._done.set()

    async def wait(self) -> rs2.EncodedBlob:
        import trio

        t0 = time.perf_counter()
        if not self._done.is_set():
            await trio.to_thread.run_sync(self._done.wait, abandon_on_cancel=True)
        self.waited = time.perf_counter() - t0
        if self._error is not None:
            raise self._error
        return self._result
