"""The reconciler of StatefulSets: stable names, stable volumes, one pod per ordinal at most.

One pass over one StatefulSet (key "namespace/name"):
1. its revisions: the ControllerRevision of its current template is the update revision; the
   current revision is `status.currentRevision` (the update revision when there is none);
2. its pods by ordinal (`web-0` … ; adopted and released by selector);
3. unless it is Terminating, `ordinals.plan` decides one step: pods to make (after their
   claims, `claims.ensure_claims`) and pods to delete (failed, surplus, or replaced by a
   rolling update); deleted pods are Terminating until their node stopped them, and their
   ordinal is not made again before they are gone (see `ordinals`);
4. with whenScaled Delete, the claims of ordinals at or above `replicas` whose pods are gone
   are deleted;
5. status: replicas, ready/available/current/updated counts, the two revisions (the current
   one becomes the update one once every pod has it).

Pods get the template, the labels `controller-revision-hash` (the revision's name),
`statefulset.kubernetes.io/pod-name` and `apps.kubernetes.io/pod-index`, the hostname of their
name and the subdomain of the governing Service (`web-0.web.<ns>.svc.<domain>`), and their
claims as volumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass

import structlog

from controlplane.cache.informer import Informer
from controlplane.controllers.reconciling import Reconciling
from controlplane.controllers.statefulset import claims, ordinals
from controlplane.events import EventType
from controlplane.objects import adoption, owners, revisions
from controlplane.objects.pods import is_active, is_available, ready_since
from controlplane.objects.podtemplate import pod_from_template
from controlplane.reconcile import Result
from controlplane.store import AlreadyExists, NotFound
from pilothouse import selectors
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

POD_NAME = "statefulset.kubernetes.io/pod-name"
POD_INDEX = "apps.kubernetes.io/pod-index"


def ordinal_of(set_name: str, pod_name: str) -> int | None:
    match = re.fullmatch(rf"{re.escape(set_name)}-(0|[1-9][0-9]*)", pod_name)
    return int(match.group(1)) if match else None


@dataclass(kw_only=True, eq=False)
class StatefulSetReconciler(Reconciling):
    statefulsets: Informer
    pods: Informer
    controllerrevisions: Informer

    NAME = "controller.statefulset"
    OWNER = objects_pb2.StatefulSet

    def caches(self) -> tuple[Informer, ...]:
        return (self.statefulsets, self.pods, self.controllerrevisions)

    def watched(self) -> tuple[Informer, ...]:
        return (self.statefulsets, self.pods)

    async def reconcile(self, key: str) -> Result:
        namespace, name = key.split("/", 1)
        sts = self.statefulsets.get(namespace, name)
        if sts is None:
            return Result()
        now = self.clock.now()
        pods = await self._pods_of(sts)
        by_ordinal = {o: p for p in pods if (o := ordinal_of(name, p.metadata.name)) is not None}
        strays = [p for p in pods if ordinal_of(name, p.metadata.name) is None]
        replicas = sts.spec.replicas if sts.spec.HasField("replicas") else 1
        status = objects_pb2.StatefulSetStatus()
        status.CopyFrom(sts.status)
        min_ready = sts.spec.min_ready_seconds

        def healthy(pod: objects_pb2.Pod) -> bool:
            return is_active(pod) and pod.status.phase == "Running" and ready_since(pod) is not None

        if not sts.metadata.HasField("deletion_timestamp"):
            history = revisions.owned_revisions(self.controllerrevisions.list(namespace), sts)
            update = await revisions.ensure(self.objects, sts, history)
            update_name = update.metadata.name
            current_name = status.current_revision or update_name
            strategy = sts.spec.update_strategy
            rolling = strategy.type != "OnDelete"
            partition = strategy.rolling_update.partition if rolling else 0
            step = ordinals.plan(
                replicas=replicas,
                parallel=sts.spec.pod_management_policy == "Parallel",
                rolling=rolling,
                partition=partition,
                pods=by_ordinal,
                update_revision=update_name,
                current_revision=current_name,
                revision_of=_revision_of,
                healthy=healthy,
            )
            await self._delete(sts, [*step.delete, *strays])
            await self._create(sts, step.create, history=[*history, update])
            await self._release_scaled_claims(sts, replicas, by_ordinal)
            status.update_revision = update_name
            at_update = [p for p in by_ordinal.values() if _revision_of(p) == update_name]
            if (
                len(at_update) >= replicas
                and all(o < replicas for o in by_ordinal)
                and all(healthy(p) for p in at_update)
            ):
                current_name = update_name
            status.current_revision = current_name
            used = {_revision_of(p) for p in pods} | {update_name, current_name}
            if sts.spec.HasField("revision_history_limit"):
                await revisions.trim(
                    self.objects,
                    [r for r in history if r.metadata.name not in used],
                    limit=sts.spec.revision_history_limit,
                    in_use=set(),
                )
        existing = list(by_ordinal.values())
        status.replicas = sum(1 for p in existing if is_active(p))
        status.ready_replicas = sum(1 for p in existing if healthy(p))
        status.available_replicas = sum(
            1 for p in existing if is_available(p, min_ready_seconds=min_ready, now=now)
        )
        status.current_replicas = sum(
            1 for p in existing if is_active(p) and _revision_of(p) == status.current_revision
        )
        status.updated_replicas = sum(
            1 for p in existing if is_active(p) and _revision_of(p) == status.update_revision
        )
        status.observed_generation = sts.metadata.generation
        await self.write_status(sts, status)
        if min_ready:
            waits = [
                since + min_ready - now
                for p in existing
                if (since := ready_since(p)) is not None and since + min_ready > now
            ]
            if waits:
                return Result(requeue_after=min(waits))
        return Result()

    async def _pods_of(self, sts: objects_pb2.StatefulSet) -> list[objects_pb2.Pod]:
        candidates = self.pods.list(sts.metadata.namespace)
        if not sts.spec.selector.match_labels:
            return [p for p in candidates if owners.owned_by(p, sts.metadata.uid)]
        wanted = selectors.from_match_labels(sts.spec.selector.match_labels)
        return await adoption.claim(self.objects, sts, candidates, matches=wanted.matches)

    async def _create(
        self,
        sts: objects_pb2.StatefulSet,
        wanted: list[tuple[int, str]],
        *,
        history: list[objects_pb2.ControllerRevision],
    ) -> None:
        by_name = {r.metadata.name: r for r in history}
        name = sts.metadata.name
        for ordinal, revision_name in wanted:
            pod_name = f"{name}-{ordinal}"
            revision = by_name.get(revision_name)
            template = (
                revisions.template_of(revision) if revision is not None else sts.spec.template
            )
            pod = pod_from_template(
                template,
                owner=sts,
                name=pod_name,
                labels={
                    revisions.HASH_LABEL: revision_name,
                    POD_NAME: pod_name,
                    POD_INDEX: str(ordinal),
                },
            )
            pod.spec.hostname = pod_name
            pod.spec.subdomain = sts.spec.service_name
            claims.attach(pod, sts)
            await claims.ensure_claims(self.objects, sts, pod_name)
            try:
                await self.objects.create(pod)
            except AlreadyExists:
                continue  # made already, or its predecessor is still terminating
            log.info("statefulset.pod_created", pod=f"{sts.metadata.namespace}/{pod_name}")
            if self.events is not None:
                await self.events.record(
                    sts,
                    EventType.NORMAL,
                    "SuccessfulCreate",
                    f"create Pod {pod_name} in StatefulSet {name} successful",
                )

    async def _delete(self, sts: objects_pb2.StatefulSet, pods: list[objects_pb2.Pod]) -> None:
        async def one(pod: objects_pb2.Pod) -> None:
            with contextlib.suppress(NotFound):
                await self.objects.delete(
                    Kind.POD,
                    pod.metadata.namespace,
                    pod.metadata.name,
                    resource_version=pod.metadata.resource_version,
                )
            log.info("statefulset.pod_deleted", pod=f"{pod.metadata.namespace}/{pod.metadata.name}")
            if self.events is not None:
                await self.events.record(
                    sts,
                    EventType.NORMAL,
                    "SuccessfulDelete",
                    f"delete Pod {pod.metadata.name} in StatefulSet {sts.metadata.name} successful",
                )

        await asyncio.gather(*(one(p) for p in pods))

    async def _release_scaled_claims(
        self, sts: objects_pb2.StatefulSet, replicas: int, by_ordinal: dict[int, objects_pb2.Pod]
    ) -> None:
        if sts.spec.persistent_volume_claim_retention_policy.when_scaled != "Delete":
            return
        prefix = f"{sts.metadata.name}-"
        for template in sts.spec.volume_claim_templates:
            start = f"{template.metadata.name}-{prefix}"
            listing = await self.objects.list(Kind.PERSISTENTVOLUMECLAIM, sts.metadata.namespace)
            for claim in listing.items:
                if not claim.metadata.name.startswith(start):
                    continue
                ordinal = ordinal_of(
                    sts.metadata.name, claim.metadata.name[len(template.metadata.name) + 1 :]
                )
                if ordinal is not None and ordinal >= replicas and ordinal not in by_ordinal:
                    await claims.delete_claims(self.objects, sts, f"{prefix}{ordinal}")


def _revision_of(pod: objects_pb2.Pod) -> str:
    return pod.metadata.labels.get(revisions.HASH_LABEL, "")
