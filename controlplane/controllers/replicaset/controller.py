"""The reconciler of standalone ReplicaSets and ReplicationControllers.

One pass over one object (key "namespace/name"):
1. skip it when a controller owns it (a Deployment's revision: the deployment controller
   runs those) or it is gone;
2. claim its pods (`objects.adoption`: adopt matching orphans, release owned pods that no
   longer match);
3. unless pods it created are not yet observed (expectations) or it is Terminating: delete
   finished pods, create the missing ones (generateName, `objects.podtemplate`) or delete the
   surplus in Kubernetes' order (`objects.pods.deletion_rank`);
4. write its status (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas,
   observedGeneration) when it changed.

Invariants: level-triggered; creation is exact under expectations, deletion under tombstones;
pods controlled by another owner are never counted or touched.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import structlog
from google.protobuf.message import Message

from controlplane.cache.informer import Informer, Notice
from controlplane.controllers.reconciling import Reconciling
from controlplane.controllers.replicaset.workload import matcher, replicas_of, selector_of
from controlplane.events import EventType
from controlplane.objects import adoption, owners
from controlplane.objects.pods import deletion_rank, is_active, is_available, ready_since
from controlplane.objects.podtemplate import (
    Expectations,
    Tombstones,
    create_generated,
    pod_from_template,
)
from controlplane.reconcile import Result
from controlplane.store import NotFound
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

EXPECTED = 1.0  # s: another look while creates are not observed yet
BURST = 32  # pod writes in flight at once


@dataclass(kw_only=True, eq=False)
class ReplicaSetReconciler(Reconciling):
    kind: Kind  # REPLICASET or REPLICATIONCONTROLLER
    owners_informer: Informer
    pods: Informer
    _expectations: Expectations = field(init=False, default_factory=Expectations)
    _tombstones: Tombstones = field(init=False, default_factory=Tombstones)

    def controller_name(self) -> str:
        return f"controller.{self.kind.info.kind.lower()}"

    def caches(self) -> tuple[Informer, ...]:
        return (self.owners_informer, self.pods)

    def keys_for(self, notice: Notice) -> str | None:
        obj = notice.object
        namespace = obj.metadata.namespace
        if not isinstance(obj, objects_pb2.Pod):
            return f"{namespace}/{obj.metadata.name}"
        ref = owners.controller_of(obj)
        if ref is not None:
            return f"{namespace}/{ref.name}" if ref.kind == self.kind.info.kind else None
        # An orphan: any of our objects in its namespace whose selector matches may adopt it.
        for owner in self.owners_informer.list(namespace):
            if owners.controller_of(owner) is None and matcher(owner)(obj.metadata.labels):
                return f"{namespace}/{owner.metadata.name}"
        return None

    async def reconcile(self, key: str) -> Result:
        namespace, name = key.split("/", 1)
        owner = self.owners_informer.get(namespace, name)
        if owner is None:
            return Result()
        if owners.controller_of(owner) is not None:
            return Result()  # a Deployment's revision
        if not selector_of(owner):
            return Result()  # validation refuses this; nothing to select
        self._tombstones.prune(self.pods.get)
        candidates = self._tombstones.alive(self.pods.list(namespace))
        pods = await adoption.claim(self.objects, owner, candidates, matches=matcher(owner))
        uid = owner.metadata.uid
        waiting = not self._expectations.satisfied(uid, seen=self.pods.revision)
        if not waiting and not owner.metadata.HasField("deletion_timestamp"):
            pods = await self._converge(owner, pods)
        await self._write_status(owner, pods)
        if waiting or not self._expectations.satisfied(uid, seen=self.pods.revision):
            return Result(requeue_after=EXPECTED)
        return self._next_availability(owner, pods)

    async def _converge(self, owner: Message, pods: list[objects_pb2.Pod]) -> list[objects_pb2.Pod]:
        active = [p for p in pods if is_active(p)]
        finished = [p for p in pods if not is_active(p) and not _terminating(p)]
        await self._delete(finished)
        missing = replicas_of(owner) - len(active)
        if missing > 0:
            limit = asyncio.Semaphore(BURST)

            async def create() -> None:
                async with limit:
                    pod = pod_from_template(owner.spec.template, owner=owner)
                    await create_generated(self.objects, pod, expectations=self._expectations)

            await asyncio.gather(*(create() for _ in range(missing)))
            log.info(
                "pods.created",
                kind=self.kind.info.kind,
                owner=f"{owner.metadata.namespace}/{owner.metadata.name}",
                count=missing,
            )
            if self.events is not None:
                await self.events.record(
                    owner,
                    EventType.NORMAL,
                    "SuccessfulCreate",
                    f"Created {missing} pod(s) of {owner.metadata.name}",
                )
        elif missing < 0:
            ranked = sorted(active, key=deletion_rank)
            surplus = ranked[:-missing]
            await self._delete(surplus)
            active = ranked[-missing:]
            if self.events is not None:
                names = ", ".join(p.metadata.name for p in surplus)
                await self.events.record(
                    owner, EventType.NORMAL, "SuccessfulDelete", f"Deleted pod(s): {names}"
                )
        return active

    async def _delete(self, pods: list[objects_pb2.Pod]) -> None:
        async def one(pod: objects_pb2.Pod) -> None:
            with contextlib.suppress(NotFound):
                await self.objects.delete(Kind.POD, pod.metadata.namespace, pod.metadata.name)
            self._tombstones.bury(pod)

        await asyncio.gather(*(one(p) for p in pods))

    async def _write_status(self, owner: Message, pods: list[objects_pb2.Pod]) -> None:
        now = self.clock.now()
        active = [p for p in pods if is_active(p)]
        template_labels = owner.spec.template.metadata.labels
        wanted = objects_pb2.ReplicaSetStatus()
        wanted.CopyFrom(owner.status)
        wanted.replicas = len(active)
        wanted.fully_labeled_replicas = sum(
            1
            for p in active
            if all(p.metadata.labels.get(k) == v for k, v in template_labels.items())
        )
        wanted.ready_replicas = sum(1 for p in active if ready_since(p) is not None)
        wanted.available_replicas = sum(
            1
            for p in active
            if is_available(p, min_ready_seconds=owner.spec.min_ready_seconds, now=now)
        )
        wanted.observed_generation = owner.metadata.generation
        if wanted == owner.status:
            return
        updated = type(owner)()
        updated.CopyFrom(owner)
        updated.status.CopyFrom(wanted)
        with contextlib.suppress(NotFound):
            await self.objects.update_status(updated)

    def _next_availability(self, owner: Message, pods: list[objects_pb2.Pod]) -> Result:
        """A pod Ready but not yet for minReadySeconds becomes available later: look then."""
        min_ready = owner.spec.min_ready_seconds
        if not min_ready:
            return Result()
        now = self.clock.now()
        waits = [
            since + min_ready - now
            for p in pods
            if (since := ready_since(p)) is not None and since + min_ready > now
        ]
        return Result(requeue_after=min(waits)) if waits else Result()


def _terminating(pod: objects_pb2.Pod) -> bool:
    return pod.metadata.HasField("deletion_timestamp")
