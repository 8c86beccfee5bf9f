"""Rate-limited log lines for failures a peer can cause at will (one line per boundary and peer)."""

from __future__ import annotations

import logging
import time
from typing import Any


class LogOnce:
    """One log line per failure, at most ``burst`` lines per ``period`` seconds per key (a
    boundary and a peer);
    lines held back are counted and reported with the next line let through."""

    def __init__(self, log: logging.Logger, period: float = 10.0, burst: int = 5):
        self.log = log
        self.period = period
        self.burst = burst
        self._window: dict[str, tuple[float, int, int]] = {}  # key -> (window start, shown, held back)

    def __call__(self, key: str, level: int, fmt: str, *args: Any) -> None:
        if not self.log.isEnabledFor(level):
            return  # lines nobody sees use up no one's burst
        key = f"{key}:{level}"
        now = time.monotonic()
        start, shown, held = self._window.get(key, (now, 0, 0))
        if now - start >= self.period:
            start, shown = now, 0
        if shown >= self.burst:
            self._window[key] = (start, shown, held + 1)
            return
        if held:
            fmt += " (%d similar failures not logged)"
            args = (*args, held)
        self._window[key] = (start, shown + 1, 0)
        if len(self._window) > 1024:  # keys are ours (boundary names), but stay bounded anyway
            self._window.clear()
        self.log.log(level, fmt, *args)


def describe(exc: BaseException) -> str:
    """An exception's type and a short message (a peer's bytes can make messages huge)."""
    text = str(exc)
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
