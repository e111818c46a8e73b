"""A ReplicaSet's pods: make their number match its target, and report them in its status.

The deployment controller calls this for every ReplicaSet of a Deployment after deciding the
targets (one pass sees the whole Deployment; `controllers.replicaset` runs only the
ReplicaSets no Deployment owns). Pods are made by `objects.podtemplate`, as every workload
controller makes them.

Invariants:
- Pods are named as Kubernetes names them, `generateName: <replicaset>-` (the base cut to 58
  characters, 5 random ones after it), owned by their ReplicaSet (controller=true), so a
  replacement is a new pod with a new name and uid. Creation stays exact through
  `Expectations`: once it created pods for a ReplicaSet, a pass neither creates nor deletes
  pods of it until the pod informer has observed those creates; a restarted process lists
  before it acts, so a crash half-way makes exactly the missing ones.
- Finished pods (Succeeded/Failed) are deleted and replaced like any missing replica.
- Surplus pods go in Kubernetes' order (`deletion_rank`): unscheduled before scheduled, Pending
  before Unknown before Running, not ready before ready, ready for less time before ready for
  longer, more container restarts before fewer, then the newest first.
- A deleted pod is gone from the store at once; the node syncer then stops its containers.
  Deleted pods are remembered (`Tombstones`) until the pod informer has seen them go, so a
  pass on a slightly stale cache neither counts them as running nor deletes another pod in
  their place.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

import structlog

from controlplane.controllers.deployment import status
from controlplane.objects import ObjectStore
from controlplane.objects.pods import deletion_rank, is_active
from controlplane.objects.podtemplate import (
    Expectations,
    Tombstones,
    create_generated,
    pod_from_template,
)
from controlplane.store import NotFound
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

IN_FLIGHT = 32  # pod writes in flight at once per pass


async def _bounded(writes: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run `writes`, at most IN_FLIGHT at once, each starting as soon as one ends (no waves:
    the first pods reach the scheduler while the last are being written)."""
    limit = asyncio.Semaphore(IN_FLIGHT)
    writes = list(writes)

    async def one(write: Coroutine[Any, Any, None]) -> None:
        async with limit:
            await write

    try:
        await asyncio.gather(*(one(w) for w in writes))
    except asyncio.CancelledError:
        # Cancelled (the controller stopping): the writes that never began never will.
        for write in writes:
            if inspect.getcoroutinestate(write) == inspect.CORO_CREATED:
                write.close()
        raise


class ReplicaSetPods:
    def __init__(
        self,
        objects: ObjectStore,
        *,
        tombstones: Tombstones,
        expectations: Expectations,
        observed: Callable[[], int],
    ) -> None:
        """`observed()`: the revision the pod informer has applied (see `Expectations`)."""
        self._objects = objects
        self._tombstones = tombstones
        self._expectations = expectations
        self._observed = observed

    def waiting(self, rs: objects_pb2.ReplicaSet) -> bool:
        """Are pods created here for `rs` still unseen by the pod informer?"""
        return not self._expectations.satisfied(rs.metadata.uid, seen=self._observed())

    async def converge(
        self, rs: objects_pb2.ReplicaSet, pods: Sequence[objects_pb2.Pod], *, target: int
    ) -> list[objects_pb2.Pod]:
        """Create or delete pods so `rs` has `target` active ones; returns those kept. Acts
        only once its earlier creates are observed (`waiting`); until then it keeps all."""
        active = [p for p in pods if is_active(p)]
        if self.waiting(rs):
            return active
        finished = [p for p in pods if not is_active(p)]
        await self.delete(finished)
        missing = target - len(active)
        if missing > 0:
            await self._create(rs, count=missing)
            return active
        if missing < 0:
            ranked = sorted(active, key=deletion_rank)
            await self.delete(ranked[:-missing])
            return ranked[-missing:]
        return active

    async def delete(self, pods: Sequence[objects_pb2.Pod]) -> None:
        async def delete(pod: objects_pb2.Pod) -> None:
            with contextlib.suppress(NotFound):
                await self._objects.delete(Kind.POD, pod.metadata.namespace, pod.metadata.name)
            self._tombstones.bury(pod)

        await _bounded(delete(p) for p in pods)

    async def write_status(self, rs: objects_pb2.ReplicaSet, counts: status.Counts) -> None:
        wanted = status.replicaset_status(rs, counts)
        if wanted == rs.status:
            return
        updated = objects_pb2.ReplicaSet()
        updated.CopyFrom(rs)
        updated.status.CopyFrom(wanted)
        with contextlib.suppress(NotFound):
            await self._objects.update_status(updated)

    async def _create(self, rs: objects_pb2.ReplicaSet, *, count: int) -> None:
        await _bounded(self._create_pod(rs) for _ in range(count))
        log.info("pods.created", replicaset=rs.metadata.name, count=count)

    async def _create_pod(self, rs: objects_pb2.ReplicaSet) -> None:
        pod = pod_from_template(rs.spec.template, owner=rs)  # generateName <replicaset>-
        await create_generated(self._objects, pod, expectations=self._expectations)
