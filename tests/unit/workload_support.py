"""A small control plane for the workload controllers' unit tests: informers and controllers
over one memory store, started and stopped as a unit, and a fake "node" that moves pods
through their phases as an agent's reports would.

Invariants: nothing sleeps for a fixed time; tests wait with `tests.unit.waiting`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from controlplane.cache.informer import Informer
from controlplane.objects import ObjectStore
from controlplane.reconcile.clock import Clock, settle
from controlplane.store import Conflict, NotFound
from controlplane.store.memory import MemoryStore
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2


class Plane:
    """`build(informers)` returns the controllers (Runnables) to run over `kinds`' informers."""

    def __init__(
        self,
        kinds: Iterable[Kind],
        build: Callable[[ObjectStore, dict[Kind, Informer]], list[Any]],
        *,
        clock: Clock | None = None,
        objects: ObjectStore | None = None,
    ) -> None:
        self.objects = objects or ObjectStore(MemoryStore())
        self.informers = {kind: Informer(self.objects, kind, clock=clock) for kind in kinds}
        self.controllers = build(self.objects, self.informers)
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Plane:
        for runnable in [*self.informers.values(), *self.controllers]:
            self._tasks.append(asyncio.create_task(runnable.run(), name=runnable.name))
        await settle()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def pods(self, namespace: str = "default") -> list[objects_pb2.Pod]:
        return sorted(self.informers[Kind.POD].list(namespace), key=lambda p: p.metadata.name)


async def set_phase(
    objects: ObjectStore,
    pod: objects_pb2.Pod,
    phase: str,
    *,
    ready: bool = False,
    finished_at: float | None = None,
    restarts: int = 0,
) -> None:
    """What an agent would report for `pod`: its phase, Ready, a container's end and restarts."""
    for _ in range(20):
        try:
            current = await objects.get(Kind.POD, pod.metadata.namespace, pod.metadata.name)
        except NotFound:
            return
        current.status.phase = phase
        del current.status.conditions[:]
        del current.status.container_statuses[:]
        if ready:
            current.status.conditions.add(
                type="Ready", status="True"
            ).last_transition_time.FromSeconds(1)
        status = current.status.container_statuses.add(name="main", restart_count=restarts)
        if finished_at is not None:
            terminated = status.state.terminated
            terminated.exit_code = 0 if phase == "Succeeded" else 1
            terminated.finished_at.FromNanoseconds(int(finished_at * 1e9))
        try:
            await objects.update_status(current)
            return
        except Conflict:
            continue
