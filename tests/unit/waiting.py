"""Waiting out the tasks that unit tests run in their own loop, never with fixed sleeps:
`eventually(check, what)` polls a condition; `idle(*controllers)` waits until controllers have
acted on everything they were handed (so "nothing else happened" can be asserted);
`edited(...)` changes an object a controller also writes, retrying on a Conflict as clients do.

Invariant: only an answer that `is True` ends a wait (a truthy list or a message does not),
so a check can return what it saw instead, and the failure shows it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

import pytest
from google.protobuf.message import Message

from controlplane.objects import ObjectStore
from controlplane.reconcile.clock import settle
from controlplane.reconcile.queue import WorkQueue
from controlplane.store import Conflict
from pilothouse.kinds import Kind


async def eventually(
    check: Callable[[], object], what: str, within: float = 30.0, *, interval: float = 0.01
) -> None:
    """Poll `check` (plain or async) every `interval` seconds until it returns True; fail
    with `what` and its last answer after `within` seconds. The default is generous (30 s):
    a wait ends as soon as its condition holds, so only a failing test pays for it, and a
    loaded machine (CI, parallel work) must not turn a slow success into a failure."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result is True:
            return
        if loop.time() > deadline:
            pytest.fail(f"{what}: got {result!r}")
        await asyncio.sleep(interval)


class Queued(Protocol):
    """What `idle` reads of a controller (controlplane.reconcile.controller.Controller)."""

    name: str
    queue: WorkQueue


async def idle(
    *controllers: Queued, besides: Callable[[], object] | None = None, within: float = 30.0
) -> None:
    """Wait until no controller has a key queued or being reconciled, after the loop has run
    every ready task (store watches deliver, informers notify): what they were handed is done.
    Keys waiting on a timer (`requeue_after`, a clock's deadline) are not counted. `besides`
    (a check as for `eventually`) must hold at the same moment, e.g. "no pod is left for the
    simulated agent to run", when something else also writes."""

    async def quiet() -> object:
        await settle()
        busy = {
            c.name: (len(c.queue), sorted(c.queue.processing))
            for c in controllers
            if len(c.queue) or c.queue.processing
        }
        if busy:
            return busy
        if besides is None:
            return True
        result = besides()
        return (await result) if asyncio.iscoroutine(result) else result

    await eventually(quiet, "the controllers never went idle (queued, processing)", within)


async def edited(
    objects: ObjectStore,
    kind: Kind,
    namespace: str,
    name: str,
    change: Callable[[Message], object],
) -> Message:
    """Read the object, `change` it and write it back (a compare-and-swap `update`); when a
    controller wrote it meanwhile (its status, say) read it again and redo the change, as
    kubectl edit and client-go's RetryOnConflict do. The stored object is returned."""
    for _ in range(50):
        current = await objects.get(kind, namespace, name)
        change(current)
        try:
            return await objects.update(current)
        except Conflict:
            await asyncio.sleep(0.01)
    pytest.fail(f"{kind.info.kind} {namespace}/{name}: 50 updates in a row met a Conflict")
