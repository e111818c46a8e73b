"""The deployment controller: each Deployment runs exactly `spec.replicas` pods of its template.

Design (level-triggered; one `reconcile("namespace/name")` reads the world and fixes the gap):
- Each distinct pod template is a revision: a ReplicaSet `<deployment>-<template hash>` owned by
  the Deployment (controller=true), annotated `deployment.kubernetes.io/revision`, with
  `spec.replicas` as the target. This controller also manages the ReplicaSets' pods itself
  (there is no separate ReplicaSet controller yet): pods are owned by their ReplicaSet and named
  `<replicaset>-<suffix>` with suffixes derived from the ordinal (see `revisions`), so a retry
  after a crash creates exactly the pods that are missing and never duplicates.
- A template change makes a new ReplicaSet; for now the old ReplicaSets are scaled to 0 and
  their pods deleted at once (rolling updates will drive the ReplicaSets' replicas instead).
  A paused Deployment keeps scaling its newest ReplicaSet and starts no new revision.
- Surplus pods are removed in Kubernetes' order: unscheduled, then not ready, then newest.
- Status is written only when it changes. A Deployment that is gone needs nothing here: the
  garbage collector deletes ReplicaSets and pods whose controlling owner no longer exists.
Reads come from informers (possibly a little stale); every write is create-if-absent or a
compare-and-swap, so acting on a stale cache at worst fails and is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import structlog

from controlplane.cache.informer import Informer, Notice
from controlplane.controllers import revisions, status
from controlplane.controllers.clock import Clock, SystemClock
from controlplane.controllers.loop import Controller, Result
from controlplane.events import EventRecorder, EventType
from controlplane.objects import ObjectStore
from controlplane.store import AlreadyExists, NotFound, StoreError
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

CREATE_BATCH = 20  # pods created concurrently per reconcile step


class ForeignReplicaSet(StoreError):
    """A ReplicaSet with our name belongs to someone else (an old incarnation): wait for GC."""


class DeploymentReconciler:
    def __init__(
        self,
        objects: ObjectStore,
        *,
        deployments: Informer,
        replicasets: Informer,
        pods: Informer,
        events: EventRecorder | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._objects = objects
        self._deployments = deployments
        self._replicasets = replicasets
        self._pods = pods
        self._events = events
        self._clock = clock or SystemClock()

    # -------------------------------------------------------------- event mapping

    def key_for(self, notice: Notice) -> str | None:
        """Which Deployment a changed Deployment, ReplicaSet or Pod belongs to."""
        obj = notice.object
        namespace = obj.metadata.namespace
        if isinstance(obj, objects_pb2.Deployment):
            return f"{namespace}/{obj.metadata.name}"
        owner = revisions.controller_of(obj)
        if owner is None:
            return None
        if isinstance(obj, objects_pb2.Pod):
            if owner.kind != "ReplicaSet":
                return None
            replicaset = self._replicasets.get(namespace, owner.name)
            owner = revisions.controller_of(replicaset) if replicaset is not None else None
            if owner is None:
                return None
        return f"{namespace}/{owner.name}" if owner.kind == "Deployment" else None

    # ------------------------------------------------------------------ reconcile

    async def reconcile(self, key: str) -> Result:
        namespace, name = key.split("/", 1)
        deployment = self._deployments.get(namespace, name)
        if deployment is None:
            return Result()  # its ReplicaSets and pods are garbage now
        uid = deployment.metadata.uid
        owned = [rs for rs in self._replicasets.list(namespace) if revisions.owned_by(rs, uid)]
        current = await self._current_replicaset(deployment, owned)
        desired = deployment.spec.replicas if deployment.spec.HasField("replicas") else 1
        by_name = {rs.metadata.name: rs for rs in owned}
        if current is not None:
            by_name[current.metadata.name] = current  # possibly just created or re-numbered
        all_pods: list[objects_pb2.Pod] = []
        for rs_name, rs in sorted(by_name.items()):
            pods = [p for p in self._pods.list(namespace) if revisions.owned_by(p, rs.metadata.uid)]
            if current is not None and rs_name == current.metadata.name:
                await self._scale(deployment, rs, pods, desired)
            else:
                await self._retire(rs, pods)
            all_pods.extend(pods)
        if current is None:
            return Result()  # paused before its first revision: nothing to run yet
        return await self._write_status(deployment, current, all_pods, desired)

    async def _current_replicaset(
        self,
        deployment: objects_pb2.Deployment,
        owned: Sequence[objects_pb2.ReplicaSet],
    ) -> objects_pb2.ReplicaSet | None:
        """The ReplicaSet of the Deployment's template, created if missing (unless paused)."""
        hash_ = revisions.template_hash(deployment.spec.template)
        name = revisions.replicaset_name(deployment.metadata.name, hash_)
        newest = max((revisions.revision_of(rs) for rs in owned), default=0)
        for rs in owned:
            if rs.metadata.name == name:
                if deployment.spec.paused or revisions.revision_of(rs) == newest:
                    return rs
                # Back to an older template (a rollback): it becomes the newest revision.
                return await self._set_revision(rs, newest + 1)
        if deployment.spec.paused:
            return max(owned, key=revisions.revision_of, default=None)
        return await self._create_replicaset(
            deployment, name=name, hash_=hash_, revision=newest + 1
        )

    async def _set_revision(
        self, rs: objects_pb2.ReplicaSet, revision: int
    ) -> objects_pb2.ReplicaSet:
        updated = objects_pb2.ReplicaSet()
        updated.CopyFrom(rs)
        updated.metadata.annotations[revisions.REVISION_ANNOTATION] = str(revision)
        return await self._objects.update(updated)

    async def _create_replicaset(
        self,
        deployment: objects_pb2.Deployment,
        *,
        name: str,
        hash_: str,
        revision: int,
    ) -> objects_pb2.ReplicaSet:
        rs = objects_pb2.ReplicaSet()
        rs.metadata.name = name
        rs.metadata.namespace = deployment.metadata.namespace
        rs.metadata.labels.update(deployment.spec.template.metadata.labels)
        rs.metadata.labels[revisions.HASH_LABEL] = hash_
        rs.metadata.annotations[revisions.REVISION_ANNOTATION] = str(revision)
        rs.metadata.owner_references.add(
            api_version=Kind.DEPLOYMENT.info.api_version,
            kind=Kind.DEPLOYMENT.info.kind,
            name=deployment.metadata.name,
            uid=deployment.metadata.uid,
            controller=True,
            block_owner_deletion=True,
        )
        rs.spec.replicas = deployment.spec.replicas if deployment.spec.HasField("replicas") else 1
        rs.spec.min_ready_seconds = deployment.spec.min_ready_seconds
        rs.spec.selector.match_labels.update(deployment.spec.selector.match_labels)
        rs.spec.selector.match_labels[revisions.HASH_LABEL] = hash_
        rs.spec.template.CopyFrom(deployment.spec.template)
        rs.spec.template.metadata.labels[revisions.HASH_LABEL] = hash_
        try:
            created = await self._objects.create(rs)
        except AlreadyExists:
            created = await self._objects.get(Kind.REPLICASET, rs.metadata.namespace, name)
            if not revisions.owned_by(created, deployment.metadata.uid):
                raise ForeignReplicaSet(
                    f'replicasets "{name}" belongs to an earlier deployment of the same name; '
                    "waiting for it to be garbage-collected"
                ) from None
            return created
        log.info(
            "replicaset.created",
            deployment=deployment.metadata.name,
            replicaset=name,
            revision=revision,
        )
        await self._record(
            deployment,
            "ScalingReplicaSet",
            f"Created new replica set {name!r} (revision {revision})",
        )
        return created

    async def _scale(
        self,
        deployment: objects_pb2.Deployment,
        rs: objects_pb2.ReplicaSet,
        pods: list[objects_pb2.Pod],
        desired: int,
    ) -> None:
        if rs.spec.replicas != desired or not rs.spec.HasField("replicas"):
            updated = objects_pb2.ReplicaSet()
            updated.CopyFrom(rs)
            updated.spec.replicas = desired
            await self._objects.update(updated)
        active = [p for p in pods if status.is_active(p)]
        finished = [p for p in pods if not status.is_active(p)]
        await self._delete(finished)  # replaced below like any missing replica
        missing = desired - len(active)
        if missing > 0:
            await self._create_pods(
                deployment, rs, taken={p.metadata.name for p in pods}, count=missing
            )
        elif missing < 0:
            await self._delete(sorted(active, key=_deletion_rank)[:-missing])

    async def _retire(self, rs: objects_pb2.ReplicaSet, pods: list[objects_pb2.Pod]) -> None:
        if rs.spec.replicas != 0 or not rs.spec.HasField("replicas"):
            updated = objects_pb2.ReplicaSet()
            updated.CopyFrom(rs)
            updated.spec.replicas = 0
            await self._objects.update(updated)
        await self._delete(pods)

    async def _create_pods(
        self,
        deployment: objects_pb2.Deployment,
        rs: objects_pb2.ReplicaSet,
        *,
        taken: set[str],
        count: int,
    ) -> None:
        hash_ = rs.metadata.labels.get(revisions.HASH_LABEL, "")
        names: list[str] = []
        for name in revisions.pod_names(
            replicaset=rs.metadata.name, deployment_uid=deployment.metadata.uid, hash_=hash_
        ):
            if len(names) == count:
                break
            if name not in taken:
                names.append(name)
        for start in range(0, len(names), CREATE_BATCH):
            batch = names[start : start + CREATE_BATCH]
            await asyncio.gather(*(self._create_pod(rs, name) for name in batch))
        log.info("pods.created", deployment=deployment.metadata.name, count=len(names))

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

    async def _delete(self, pods: Sequence[objects_pb2.Pod]) -> None:
        async def delete(pod: objects_pb2.Pod) -> None:
            with contextlib.suppress(NotFound):
                await self._objects.delete(Kind.POD, pod.metadata.namespace, pod.metadata.name)

        for start in range(0, len(pods), CREATE_BATCH):
            await asyncio.gather(*(delete(p) for p in pods[start : start + CREATE_BATCH]))

    async def _write_status(
        self,
        deployment: objects_pb2.Deployment,
        current: objects_pb2.ReplicaSet,
        pods: Sequence[objects_pb2.Pod],
        desired: int,
    ) -> Result:
        now = self._clock.now()
        counts = status.count(
            pods,
            current_hash=current.metadata.labels.get(revisions.HASH_LABEL, ""),
            hash_label=revisions.HASH_LABEL,
            min_ready_seconds=deployment.spec.min_ready_seconds,
            now=now,
        )
        new_status = status.deployment_status(
            deployment, counts, desired=desired, replicaset=current.metadata.name, now=now
        )
        written = deployment
        if new_status != deployment.status:
            updated = objects_pb2.Deployment()
            updated.CopyFrom(deployment)
            updated.status.CopyFrom(new_status)
            written = await self._objects.update_status(updated)
        revision = current.metadata.annotations.get(revisions.REVISION_ANNOTATION, "")
        if (
            revision
            and deployment.metadata.annotations.get(revisions.REVISION_ANNOTATION) != revision
        ):
            annotated = objects_pb2.Deployment()
            annotated.CopyFrom(written)
            annotated.metadata.annotations[revisions.REVISION_ANNOTATION] = revision
            await self._objects.update(annotated)
        return Result(requeue_after=counts.recheck_in)

    async def _record(self, deployment: objects_pb2.Deployment, reason: str, message: str) -> None:
        if self._events is not None:
            await self._events.record(deployment, EventType.NORMAL, reason, message)


def _deletion_rank(pod: objects_pb2.Pod) -> tuple[int, int, int, str]:
    """Lower goes first: unscheduled, then not ready, then the newest (Kubernetes' order)."""
    created = pod.metadata.creation_timestamp
    return (
        0 if not pod.spec.node_name else 1,
        0 if not status.is_ready(pod) else 1,
        -(created.seconds * 10**9 + created.nanos),
        pod.metadata.name,
    )


def deployment_controller(
    objects: ObjectStore,
    *,
    deployments: Informer,
    replicasets: Informer,
    pods: Informer,
    events: EventRecorder | None = None,
    workers: int = 4,
    clock: Clock | None = None,
) -> Controller:
    """The deployment controller, subscribed to its three informers (which must also run)."""
    reconciler = DeploymentReconciler(
        objects,
        deployments=deployments,
        replicasets=replicasets,
        pods=pods,
        events=events,
        clock=clock,
    )
    controller = Controller(
        "controller.deployment",
        reconciler,
        workers=workers,
        clock=clock,
        wait_for=(deployments, replicasets, pods),
    )

    def enqueue(notice: Notice) -> None:
        key = reconciler.key_for(notice)
        if key is not None:
            controller.enqueue(key)

    for informer in (deployments, replicasets, pods):
        informer.add_handler(enqueue)
    return controller
