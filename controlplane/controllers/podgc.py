"""The pod garbage collector: a pod being deleted that nobody finished deleting is removed.

A graceful deletion (`ObjectStore.delete` with graceful pods) marks a pod and ends when its
node's agent reports it stopped (`nodes.reports`). When that report never comes (the node is
lost or gone, or the report was lost with a broken stream), the pod would stay Terminating
for ever; this controller removes it once its deletionTimestamp (the end of its grace
period) is `SLACK_S` seconds past, as Kubernetes' pod GC force-deletes terminating pods of
nodes that are out of service.

Invariants: keys are "namespace/name" of marked pods; the removal is conditional on the
pod's resourceVersion (nothing is removed on stale information); a pod is looked at again
exactly when it is due (`requeue_after`), not polled.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import structlog

from controlplane.cache.informer import Informer, Notice
from controlplane.objects import ChangeType, ObjectStore
from controlplane.reconcile import Result
from controlplane.reconcile.clock import Clock
from controlplane.reconcile.controller import Controller
from controlplane.store import NotFound
from pilothouse.conditions import seconds
from pilothouse.kinds import Kind

log = structlog.get_logger(__name__)

SLACK_S = 15.0


class PodGarbageCollector:
    def __init__(
        self,
        objects: ObjectStore,
        *,
        pods: Informer,
        now: Callable[[], float] = time.time,
        slack: float = SLACK_S,
    ) -> None:
        self._objects = objects
        self._pods = pods
        self._now = now
        self._slack = slack

    def keys_for(self, notice: Notice) -> list[str]:
        pod = notice.object
        if notice.type is ChangeType.DELETED or not pod.metadata.HasField("deletion_timestamp"):
            return []
        return [notice.key]

    async def reconcile(self, key: str) -> Result:
        namespace, name = key.split("/", 1)
        pod = self._pods.get(namespace, name)
        if pod is None or not pod.metadata.HasField("deletion_timestamp"):
            return Result()
        due = seconds(pod.metadata.deletion_timestamp) + self._slack
        left = due - self._now()
        if left > 0:
            return Result(requeue_after=left)
        with contextlib.suppress(NotFound):
            await self._objects.delete(
                Kind.POD,
                namespace,
                name,
                resource_version=pod.metadata.resource_version,
                grace_period_seconds=0,
            )
            log.warning(
                "pod.force_deleted",
                pod=key,
                node=pod.spec.node_name,
                why="its agent never reported it stopped",
            )
        return Result()


def pod_garbage_collector(
    objects: ObjectStore, *, pods: Informer, clock: Clock | None = None
) -> Controller:
    """The pod GC, subscribed to the pod informer (which must also run)."""
    collector = PodGarbageCollector(objects, pods=pods)
    controller = Controller("controller.podgc", collector, workers=1, clock=clock, wait_for=(pods,))

    def enqueue(notice: Notice) -> None:
        for key in collector.keys_for(notice):
            controller.enqueue(key)

    pods.add_handler(enqueue)
    return controller
