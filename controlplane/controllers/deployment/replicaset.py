"""A ReplicaSet's pods: make their number match its target, and report them in its status.

The deployment controller calls this for every ReplicaSet of a Deployment after deciding the
targets (there is no separate ReplicaSet controller: one pass sees the whole Deployment).

Invariants:
- Pods are named `<replicaset>-<suffix>` by ordinal (see `revisions`), owned by their
  ReplicaSet (controller=true): a retry after a crash creates exactly the missing ones, and a
  create that finds the name taken was our own earlier write.
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
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

import structlog

from controlplane.controllers.deployment import revisions, status
from controlplane.objects import ObjectStore
from controlplane.objects.pods import is_active, ready_since
from controlplane.store import AlreadyExists, NotFound
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

IN_FLIGHT = 32  # pod writes in flight at once per pass
_PHASE_RANK = {"Pending": 0, "": 0, "Unknown": 1, "Running": 2}


def deletion_rank(pod: objects_pb2.Pod) -> tuple[int, int, int, float, int, int, str]:
    """Lower goes first when scaling down (Kubernetes' ActivePods ordering)."""
    since = ready_since(pod)
    created = pod.metadata.creation_timestamp
    restarts = sum(c.restart_count for c in pod.status.container_statuses)
    return (
        0 if not pod.spec.node_name else 1,
        _PHASE_RANK.get(pod.status.phase, 2),
        0 if since is None else 1,
        -(since or 0.0),  # ready more recently goes first
        -restarts,
        -(created.seconds * 10**9 + created.nanos),
        pod.metadata.name,
    )


async def _bounded(writes: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run `writes`, at most IN_FLIGHT at once, each starting as soon as one ends (no waves:
    the first pods reach the scheduler while the last are being written)."""
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def one(write: Coroutine[Any, Any, None]) -> None:
        async with limit:
            await write

    await asyncio.gather(*(one(w) for w in writes))


class Tombstones:
    """Pods this process deleted that the pod informer may still show (by uid)."""

    def __init__(self) -> None:
        self._uids: dict[tuple[str, str], str] = {}

    def bury(self, pod: objects_pb2.Pod) -> None:
        self._uids[(pod.metadata.namespace, pod.metadata.name)] = pod.metadata.uid

    def alive(self, pods: Iterable[objects_pb2.Pod]) -> list[objects_pb2.Pod]:
        """`pods` (a cache listing) without the ones deleted here."""
        return [
            p
            for p in pods
            if self._uids.get((p.metadata.namespace, p.metadata.name)) != p.metadata.uid
        ]

    def prune(self, lookup: Callable[[str, str], objects_pb2.Pod | None]) -> None:
        """Forget the pods that `lookup` (the pod informer) no longer shows as they were."""
        for (namespace, name), uid in list(self._uids.items()):
            seen = lookup(namespace, name)
            if seen is None or seen.metadata.uid != uid:
                del self._uids[(namespace, name)]

    def __len__(self) -> int:
        return len(self._uids)


class ReplicaSetPods:
    def __init__(self, objects: ObjectStore, *, tombstones: Tombstones) -> None:
        self._objects = objects
        self._tombstones = tombstones

    async def converge(
        self,
        rs: objects_pb2.ReplicaSet,
        pods: Sequence[objects_pb2.Pod],
        *,
        deployment_uid: str,
        target: int,
    ) -> list[objects_pb2.Pod]:
        """Create or delete pods so `rs` has `target` active ones; returns those kept."""
        active = [p for p in pods if is_active(p)]
        finished = [p for p in pods if not is_active(p)]
        await self.delete(finished)
        missing = target - len(active)
        if missing > 0:
            await self._create(
                rs,
                deployment_uid=deployment_uid,
                taken={p.metadata.name for p in pods},
                count=missing,
            )
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

    async def _create(
        self, rs: objects_pb2.ReplicaSet, *, deployment_uid: str, taken: set[str], count: int
    ) -> None:
        hash_ = rs.metadata.labels.get(revisions.HASH_LABEL, "")
        names: list[str] = []
        for name in revisions.pod_names(
            replicaset=rs.metadata.name, deployment_uid=deployment_uid, hash_=hash_
        ):
            if len(names) == count:
                break
            if name not in taken:
                names.append(name)
        await _bounded(self._create_pod(rs, n) for n in names)
        log.info("pods.created", replicaset=rs.metadata.name, count=len(names))

    async def _create_pod(self, rs: objects_pb2.ReplicaSet, name: str) -> None:
        pod = objects_pb2.Pod()
        pod.metadata.name = name
        pod.metadata.namespace = rs.metadata.namespace
        pod.metadata.labels.update(rs.spec.template.metadata.labels)
        pod.metadata.annotations.update(rs.spec.template.metadata.annotations)
        pod.metadata.owner_references.add(
            api_version=Kind.REPLICASET.info.api_version,
            kind=Kind.REPLICASET.info.kind,
            name=rs.metadata.name,
            uid=rs.metadata.uid,
            controller=True,
            block_owner_deletion=True,
        )
        pod.spec.CopyFrom(rs.spec.template.spec)
        pod.spec.node_name = ""
        pod.status.phase = "Pending"
        # AlreadyExists: made by an earlier pass whose result our cache has not seen yet.
        with contextlib.suppress(AlreadyExists):
            await self._objects.create(pod)
