"""Service task IDs from a counter (fast path patch 10) and parent tasks found by lookup (12),
for py-libp2p 0.8.1's anyio service manager.

What: ``libp2p.tools.anyio_service``'s ``FunctionTask._id`` comes from ``uuid.uuid4()``
(``tasks.uuid`` and ``trio_tasks.uuid``); ``patch()`` gives both modules a ``uuid`` whose
``uuid4()`` counts up instead.

Why: an ID is only ever hashed, so it needs to be unique in the process, not random; each
``uuid4()`` is a ``getrandom`` system call, and py-libp2p starts a task per RPC received:
4.5% of a 100-node in-process testnet's CPU.

(12) What: ``TrioManager._find_parent_task`` (which FunctionTask of this service is the
trio task calling ``run_task``?) is a dictionary lookup: each manager maps the trio task
running each of its FunctionTasks to it, from the moment ``_run_and_manage_task`` starts it
until it ends. Why: the library walks the service's whole task tree, a recursive generator,
for every task started, and GossipSub starts one per message received, in a service whose
tree holds a few tasks per connected peer: 3-4% of a 100-node in-process testnet's CPU.
The answer is the same: a trio task runs at most one FunctionTask of a manager, and a task
of another manager (or none) is not found, as before.

Pinned to libp2p 0.8.1: applied only by ``fastpath.enable()``, which checks the version.
"""

from __future__ import annotations

from typing import Any

_originals: dict[str, Any] = {}


def patch() -> None:
    """(10) Task IDs from a counter: unique in the process, and all they are used for is a hash;
    (12) a task's parent found by lookup."""
    import itertools
    import types
    import uuid

    from libp2p.tools.anyio_service import tasks, trio_tasks

    _originals["uuid"] = trio_tasks.uuid
    counter = itertools.count(1)
    shim = types.SimpleNamespace(uuid4=lambda: uuid.UUID(int=next(counter)))
    tasks.uuid = trio_tasks.uuid = shim
    patch_parent_lookup()


def patch_parent_lookup() -> None:
    """(12) ``_find_parent_task`` by a per-manager map from trio task to FunctionTask."""
    import trio

    from libp2p.tools.anyio_service.trio_manager import TrioManager
    from libp2p.tools.anyio_service.trio_tasks import FunctionTask

    orig_run = TrioManager._run_and_manage_task
    _originals.update(run_and_manage=orig_run, find_parent=TrioManager._find_parent_task)

    async def _run_and_manage_task(self: Any, task: Any) -> None:
        if not isinstance(task, FunctionTask):
            return await orig_run(self, task)
        running = self.__dict__.setdefault("_p2pwalrus_running", {})
        me = trio.lowlevel.current_task()  # task.run() runs in this very trio task
        running[me] = task
        try:
            await orig_run(self, task)
        finally:
            if running.get(me) is task:
                del running[me]

    def _find_parent_task(self: Any, trio_task: Any) -> Any:
        task = self.__dict__.get("_p2pwalrus_running", {}).get(trio_task)
        if task is not None and task.has_trio_task and task.trio_task is trio_task:
            return task
        return None

    TrioManager._run_and_manage_task = _run_and_manage_task
    TrioManager._find_parent_task = _find_parent_task


def unpatch() -> None:
    from libp2p.tools.anyio_service import tasks, trio_tasks
    from libp2p.tools.anyio_service.trio_manager import TrioManager

    tasks.uuid = trio_tasks.uuid = _originals["uuid"]
    TrioManager._run_and_manage_task = _originals["run_and_manage"]
    TrioManager._find_parent_task = _originals["find_parent"]
