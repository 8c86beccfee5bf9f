"""A nursery whose tasks live as long as an async with-block (the host's upkeep, membership's
loops): the one shape both ``open_host`` and ``open_membership`` had written out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio


@asynccontextmanager
async def task_group() -> AsyncIterator[trio.Nursery]:
    """``async with task_group() as nursery``: tasks started in ``nursery`` are cancelled
    (not awaited) when the block ends, however it ends."""
    async with trio.open_nursery() as nursery:
        try:
            yield nursery
        finally:
            nursery.cancel_scope.cancel()
