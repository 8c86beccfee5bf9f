"""Service task IDs from a counter (fast path patch 10), for py-libp2p 0.8.1's anyio service manager.

What: ``libp2p.tools.anyio_service``'s ``FunctionTask._id`` comes from ``uuid.uuid4()``
(``tasks.uuid`` and ``trio_tasks.uuid``); ``patch()`` gives both modules a ``uuid`` whose
``uuid4()`` counts up instead.

Why: an ID is only ever hashed, so it needs to be unique in the process, not random; each
``uuid4()`` is a ``getrandom`` system call, and py-libp2p starts a task per RPC received:
4.5% of a 100-node in-process testnet's CPU.

Pinned to libp2p 0.8.1: applied only by ``fastpath.enable()``, which checks the version.
"""

from __future__ import annotations

from typing import Any

_originals: dict[str, Any] = {}


def patch() -> None:
    """(10) Task IDs from a counter: unique in the process, and all they are used for is a hash."""
    import itertools
    import types
    import uuid

    from libp2p.tools.anyio_service import tasks, trio_tasks

    _originals["uuid"] = trio_tasks.uuid
    counter = itertools.count(1)
    shim = types.SimpleNamespace(uuid4=lambda: uuid.UUID(int=next(counter)))
    tasks.uuid = trio_tasks.uuid = shim


def unpatch() -> None:
    from libp2p.tools.anyio_service import tasks, trio_tasks

    tasks.uuid = trio_tasks.uuid = _originals["uuid"]
