"""The deployment controller: each Deployment runs `spec.replicas` pods of its current template,
reached by its strategy, with its revisions kept as ReplicaSets.

One `reconcile("namespace/name")` pass, as Kubernetes' syncDeployment does it:
1. read the Deployment, its ReplicaSets (revisions) and their pods from the informers;
2. find the current revision (`history.find_current`); when rolling out, create it (image
   tags pinned to digests, `digests.pin`) or move an old one to the newest revision number;
3. decide each revision's target (`rollout`): a scaling event or a paused Deployment scales in
   proportion; otherwise one step of RollingUpdate or Recreate;
4. write the targets, make every ReplicaSet's pods match its target (`replicaset`), write the
   ReplicaSets' status;
5. write the Deployment's status (`status`, `progress`); on a complete rollout, mark the
   revision last-available and collect revisions beyond revisionHistoryLimit; on a progress
   deadline with `rollbackOnFailure`, roll back to the last fully available revision.

Invariants: level-triggered (a crash half-way is healed by the next pass: names are
deterministic, every write is create-if-absent or compare-and-swap). Reads come from informers
and may be a step behind; objects this controller wrote itself are used instead of older cached
copies, and pods it deleted are not counted, so a stale cache can never make a rollout exceed
maxSurge or drop below maxUnavailable. Recreate starts the new revision only once no pod of an
old one is left in the store (the node syncer stops a deleted pod's containers shortly after).
A Deployment that is gone needs nothing here: the garbage collector deletes its ReplicaSets and
their pods.
"""

from __future__ import annotations

import contextlib
import enum
import time

import structlog
from google.protobuf.message import Message

from controlplane import digests
from controlplane.cache.informer import Informer, Notice
from controlplane.controllers import history, progress, revisions, rollout, status
from controlplane.controllers.clock import Clock, SystemClock
from controlplane.controllers.loop import Controller, Result
from controlplane.controllers.replicaset import ReplicaSetPods, Tombstones
from controlplane.events import EventRecorder, EventType
from controlplane.objects import ChangeType, ObjectStore
from controlplane.store import AlreadyExists, NotFound, StoreError
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)


class Reason(enum.Enum):
    SCALING = "ScalingReplicaSet"
    DIGEST_UNRESOLVED = "ImageDigestUnresolved"
    DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    ROLLBACK = "DeploymentRollback"
    NO_ROLLBACK_TARGET = "DeploymentRollbackSkipped"


class ForeignReplicaSet(StoreError):
    """A ReplicaSet with our name belongs to someone else (an old incarnation): wait for GC."""


def _iso(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


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
        resolver: digests.DigestResolver | None = None,
    ) -> None:
        self._objects = objects
        self._deployments = deployments
        self._replicasets = replicasets
        self._pods = pods
        self._events = events
        self._clock = clock or SystemClock()
        self._resolver = resolver or digests.NoDigests()
        self._tombstones = Tombstones()
        self._replicaset_pods = ReplicaSetPods(objects, tombstones=self._tombstones)
        self._written: dict[tuple[str, str, str], Message] = {}

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
            if owner.kind != "ReplicaSet" or not _pod_counts_changed(notice):
                return None
            replicaset = self._replicasets.get(namespace, owner.name)
            owner = revisions.controller_of(replicaset) if replicaset is not None else None
            if owner is None:
                return None
        return f"{namespace}/{owner.name}" if owner.kind == "Deployment" else None

    # ------------------------------------------------------- freshest known state

    def _fresh(self, obj: Message) -> Message:
        """`obj` from a cache, or the newer version this controller wrote itself."""
        key = (obj.kind or type(obj).__name__, obj.metadata.namespace, obj.metadata.name)
        mine = self._written.get(key)
        if mine is None:
            return obj
        if int(mine.metadata.resource_version or 0) > int(obj.metadata.resource_version or 0):
            return mine
        del self._written[key]
        return obj

    def _remember(self, obj: Message) -> Message:
        key = (obj.kind or type(obj).__name__, obj.metadata.namespace, obj.metadata.name)
        self._written[key] = obj
        return obj

    # ------------------------------------------------------------------ reconcile

    async def reconcile(self, key: str) -> Result:
        namespace, name = key.split("/", 1)
        cached = self._deployments.get(namespace, name)
        if cached is None:
            for k in [k for k in self._written if k[1] == namespace]:
                if k[0] == "Deployment" and k[2] == name:
                    del self._written[k]
            return Result()  # its ReplicaSets and pods are garbage now
        deployment: objects_pb2.Deployment = self._fresh(cached)
        uid = deployment.metadata.uid
        self._tombstones.prune(self._pods.get)
        for k in [k for k in self._written if k[0] == "ReplicaSet" and k[1] == namespace]:
            if self._replicasets.get(namespace, k[2]) is None:
                del self._written[k]  # deleted (or not cached yet: creating again finds it)
        owned = [
            self._fresh(rs)
            for rs in self._replicasets.list(namespace)
            if revisions.owned_by(rs, uid)
        ]
        pods = self._pods_by_replicaset(namespace, owned)
        desired = progress.desired_of(deployment)
        strategy = rollout.strategy_of(deployment.spec, desired)
        now = self._clock.now()
        min_ready = deployment.spec.min_ready_seconds

        def counts_of(rs: objects_pb2.ReplicaSet) -> status.Counts:
            return status.count(pods[rs.metadata.name], min_ready_seconds=min_ready, now=now)

        current = history.find_current(deployment.spec.template, owned)
        views = {rs.metadata.name: _view(rs, counts_of(rs)) for rs in owned}
        started: progress.Reason | None = None
        if deployment.spec.paused or rollout.is_scaling_event(desired, list(views.values())):
            plan = rollout.scale(
                replicas=desired,
                strategy=strategy,
                new=views[current.metadata.name] if current is not None else None,
                olds=[v for n, v in views.items() if current is None or n != current.metadata.name],
                status_replicas=deployment.status.replicas,
            )
        else:
            olds = [rs for rs in owned if current is None or rs is not current]
            newest_old = max((revisions.revision_of(rs) for rs in olds), default=0)
            old_views = [views[rs.metadata.name] for rs in olds]
            old_pods_gone = all(not pods[rs.metadata.name] for rs in olds)
            may_create = not strategy.recreate or (
                old_pods_gone and all(v.replicas == 0 for v in old_views)
            )
            if current is None and may_create:
                initial = rollout.new_replicas(
                    replicas=desired,
                    strategy=strategy,
                    new=rollout.Revision("", newest_old + 1, 0, 0, now),
                    revisions=[*old_views, rollout.Revision("", 0, 0, 0, now)],
                )
                current = await self._create_replicaset(
                    deployment, revision=newest_old + 1, replicas=initial, strategy=strategy
                )
                started = progress.Reason.NEW_RS_CREATED
                owned.append(current)
                pods[current.metadata.name] = []
            elif current is not None and revisions.revision_of(current) <= newest_old:
                current = await self._set_revision(deployment, current, newest_old + 1)
                started = progress.Reason.FOUND_NEW_RS
                owned = [
                    current if rs.metadata.name == current.metadata.name else rs for rs in owned
                ]
            new_view = _view(current, counts_of(current)) if current is not None else None
            if strategy.recreate:
                plan = rollout.recreate(
                    replicas=desired, new=new_view, olds=old_views, old_pods_gone=old_pods_gone
                )
            elif new_view is not None:
                plan = rollout.rolling(
                    replicas=desired, strategy=strategy, new=new_view, olds=old_views
                )
            else:
                plan = {}
        if current is not None:
            current = await self._sync_annotations(deployment, current)
            owned = [current if rs.metadata.name == current.metadata.name else rs for rs in owned]
        total = status.Counts()
        targets = 0
        updated = 0
        for index, rs in enumerate(owned):
            if rs.metadata.name in plan:
                rs = await self._resize(
                    deployment, rs, plan[rs.metadata.name], desired=desired, strategy=strategy
                )
                owned[index] = rs
            kept = await self._replicaset_pods.converge(
                rs, pods[rs.metadata.name], deployment_uid=uid, target=rs.spec.replicas
            )
            counts = status.count(kept, min_ready_seconds=min_ready, now=now)
            await self._replicaset_pods.write_status(rs, counts)
            total += counts
            targets += rs.spec.replicas
            if current is not None and rs.metadata.name == current.metadata.name:
                updated = counts.replicas
        return await self._finish(
            deployment,
            current=current,
            owned=owned,
            pods=pods,
            total=total,
            targets=targets,
            updated=updated,
            strategy=strategy,
            started=started,
            now=now,
        )

    def _pods_by_replicaset(
        self, namespace: str, owned: list[objects_pb2.ReplicaSet]
    ) -> dict[str, list[objects_pb2.Pod]]:
        by_uid = {rs.metadata.uid: rs.metadata.name for rs in owned}
        result: dict[str, list[objects_pb2.Pod]] = {rs.metadata.name: [] for rs in owned}
        for pod in self._tombstones.alive(self._pods.list(namespace)):
            ref = revisions.controller_of(pod)
            if ref is not None and ref.uid in by_uid:
                result[by_uid[ref.uid]].append(pod)
        return result

    # ------------------------------------------------------------------ finishing

    async def _finish(
        self,
        deployment: objects_pb2.Deployment,
        *,
        current: objects_pb2.ReplicaSet | None,
        owned: list[objects_pb2.ReplicaSet],
        pods: dict[str, list[objects_pb2.Pod]],
        total: status.Counts,
        targets: int,
        updated: int,
        strategy: rollout.Strategy,
        started: progress.Reason | None,
        now: float,
    ) -> Result:
        desired = progress.desired_of(deployment)
        new_status = status.deployment_counts(
            deployment,
            total=total,
            updated=updated,
            targets=targets,
            max_unavailable=strategy.max_unavailable(desired),
            now=now,
        )
        was_timed_out = _timed_out(deployment.status)
        moved = progress.progressing(
            deployment,
            new_status,
            replicaset=current.metadata.name if current is not None else None,
            started=started,
            now=now,
        )
        del new_status.conditions[:]
        new_status.conditions.extend(moved.conditions)
        written = deployment
        if new_status != deployment.status:
            updated_deployment = objects_pb2.Deployment()
            updated_deployment.CopyFrom(deployment)
            updated_deployment.status.CopyFrom(new_status)
            written = self._remember(await self._objects.update_status(updated_deployment))
        if current is not None:
            revision = current.metadata.annotations.get(revisions.REVISION_ANNOTATION, "")
            if revision and written.metadata.annotations.get(revisions.REVISION_ANNOTATION) != (
                revision
            ):
                annotated = objects_pb2.Deployment()
                annotated.CopyFrom(written)
                annotated.metadata.annotations[revisions.REVISION_ANNOTATION] = revision
                written = self._remember(await self._objects.update(annotated))
        if current is not None and moved.complete and not deployment.spec.paused:
            await self._mark_available(current, now=now)
        await self._collect(deployment, current=current, owned=owned, pods=pods)
        if moved.timed_out and not was_timed_out and current is not None:
            await self._record(
                deployment,
                EventType.WARNING,
                Reason.DEADLINE_EXCEEDED,
                f"Rollout of revision {revisions.revision_of(current)} (replica set "
                f'"{current.metadata.name}") made no progress for '
                f"{deployment.spec.progress_deadline_seconds} s",
            )
        if (
            moved.timed_out
            and current is not None
            and deployment.spec.rollback_on_failure
            and not deployment.spec.paused
        ):
            await self._roll_back(written, current=current, owned=owned, now=now)
        waits = [w for w in (total.recheck_in, moved.requeue_after) if w is not None]
        return Result(requeue_after=min(waits) if waits else None)

    async def _mark_available(self, rs: objects_pb2.ReplicaSet, *, now: float) -> None:
        annotations = rs.metadata.annotations
        if history.LAST_AVAILABLE in annotations and history.ROLLOUT_FAILED not in annotations:
            return
        marked = objects_pb2.ReplicaSet()
        marked.CopyFrom(rs)
        marked.metadata.annotations[history.LAST_AVAILABLE] = _iso(now)
        marked.metadata.annotations.pop(history.ROLLOUT_FAILED, None)
        self._remember(await self._objects.update(marked))

    async def _collect(
        self,
        deployment: objects_pb2.Deployment,
        *,
        current: objects_pb2.ReplicaSet | None,
        owned: list[objects_pb2.ReplicaSet],
        pods: dict[str, list[objects_pb2.Pod]],
    ) -> None:
        olds = [rs for rs in owned if current is None or rs.metadata.name != current.metadata.name]
        for rs in history.collectable(
            olds,
            limit=history.history_limit(deployment),
            pods={n: len(p) for n, p in pods.items()},
        ):
            with contextlib.suppress(NotFound):
                await self._objects.delete(
                    Kind.REPLICASET,
                    rs.metadata.namespace,
                    rs.metadata.name,
                    resource_version=rs.metadata.resource_version,
                )
            self._written.pop(("ReplicaSet", rs.metadata.namespace, rs.metadata.name), None)
            log.info(
                "replicaset.collected",
                deployment=deployment.metadata.name,
                replicaset=rs.metadata.name,
                revision=revisions.revision_of(rs),
            )

    async def _roll_back(
        self,
        deployment: objects_pb2.Deployment,
        *,
        current: objects_pb2.ReplicaSet,
        owned: list[objects_pb2.ReplicaSet],
        now: float,
    ) -> None:
        """Back to the last fully available revision, once per failed revision."""
        first_failure = history.ROLLOUT_FAILED not in current.metadata.annotations
        if first_failure:
            failed = objects_pb2.ReplicaSet()
            failed.CopyFrom(current)
            failed.metadata.annotations[history.ROLLOUT_FAILED] = _iso(now)
            self._remember(await self._objects.update(failed))
        target = history.rollback_target(owned, current=current.metadata.name)
        failed_revision = revisions.revision_of(current)
        deadline = deployment.spec.progress_deadline_seconds
        if target is None:
            if first_failure:
                await self._record(
                    deployment,
                    EventType.WARNING,
                    Reason.NO_ROLLBACK_TARGET,
                    f"Revision {failed_revision} exceeded its progress deadline of {deadline} s "
                    "but no earlier revision was ever fully available: not rolling back",
                )
            return
        if history.find_current(deployment.spec.template, [current]) is None:
            return  # the template changed meanwhile: a person took over
        target_revision = revisions.revision_of(target)
        why = (
            f'revision {failed_revision} (replica set "{current.metadata.name}") made no '
            f"progress within its deadline of {deadline} s; rolled back to revision "
            f'{target_revision} (replica set "{target.metadata.name}"), the last one that '
            "was fully available"
        )
        rolled = objects_pb2.Deployment()
        rolled.CopyFrom(deployment)
        rolled.spec.template.CopyFrom(history.template_of(target))
        rolled.metadata.annotations[history.ROLLBACK_REASON] = why
        cause = target.metadata.annotations.get(history.CHANGE_CAUSE)
        if cause is not None:
            rolled.metadata.annotations[history.CHANGE_CAUSE] = cause
        else:
            rolled.metadata.annotations.pop(history.CHANGE_CAUSE, None)
        self._remember(await self._objects.update(rolled))
        log.warning(
            "deployment.rolled_back",
            deployment=deployment.metadata.name,
            failed_revision=failed_revision,
            revision=target_revision,
        )
        await self._record(
            deployment,
            EventType.WARNING,
            Reason.ROLLBACK,
            f'Rolled back deployment "{deployment.metadata.name}" to revision '
            f"{target_revision}: {why}",
        )

    # ------------------------------------------------------------- ReplicaSet writes

    async def _create_replicaset(
        self,
        deployment: objects_pb2.Deployment,
        *,
        revision: int,
        replicas: int,
        strategy: rollout.Strategy,
    ) -> objects_pb2.ReplicaSet:
        hash_ = revisions.template_hash(deployment.spec.template)
        name = revisions.replicaset_name(deployment.metadata.name, hash_)
        pinned = await digests.pin(deployment.spec.template, self._resolver)
        for failure in pinned.failures:
            await self._record(
                deployment,
                EventType.WARNING,
                Reason.DIGEST_UNRESOLVED,
                f'Container "{failure.container}" keeps image "{failure.image}" as tagged in '
                f"revision {revision} (its digest could not be resolved: {failure.reason})",
            )
        desired = progress.desired_of(deployment)
        rs = objects_pb2.ReplicaSet()
        rs.metadata.name = name
        rs.metadata.namespace = deployment.metadata.namespace
        rs.metadata.labels.update(deployment.spec.template.metadata.labels)
        rs.metadata.labels[revisions.HASH_LABEL] = hash_
        annotations = rs.metadata.annotations
        annotations[revisions.REVISION_ANNOTATION] = str(revision)
        annotations[history.DESIRED_REPLICAS] = str(desired)
        annotations[history.MAX_REPLICAS] = str(desired + strategy.surge)
        cause = deployment.metadata.annotations.get(history.CHANGE_CAUSE)
        if cause is not None:
            annotations[history.CHANGE_CAUSE] = cause
        rs.metadata.owner_references.add(
            api_version=Kind.DEPLOYMENT.info.api_version,
            kind=Kind.DEPLOYMENT.info.kind,
            name=deployment.metadata.name,
            uid=deployment.metadata.uid,
            controller=True,
            block_owner_deletion=True,
        )
        rs.spec.replicas = replicas
        rs.spec.min_ready_seconds = deployment.spec.min_ready_seconds
        rs.spec.selector.match_labels.update(deployment.spec.selector.match_labels)
        rs.spec.selector.match_labels[revisions.HASH_LABEL] = hash_
        rs.spec.template.CopyFrom(pinned.template)
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
            return self._remember(created)
        log.info(
            "replicaset.created",
            deployment=deployment.metadata.name,
            replicaset=name,
            revision=revision,
            replicas=replicas,
        )
        await self._record(
            deployment,
            EventType.NORMAL,
            Reason.SCALING,
            f"Scaled up replica set {name} to {replicas} (new revision {revision})",
        )
        return self._remember(created)

    async def _set_revision(
        self, deployment: objects_pb2.Deployment, rs: objects_pb2.ReplicaSet, revision: int
    ) -> objects_pb2.ReplicaSet:
        """An old template is back (a rollback): its ReplicaSet becomes the newest revision."""
        updated = objects_pb2.ReplicaSet()
        updated.CopyFrom(rs)
        updated.metadata.annotations[revisions.REVISION_ANNOTATION] = str(revision)
        log.info(
            "replicaset.revived",
            deployment=deployment.metadata.name,
            replicaset=rs.metadata.name,
            old_revision=revisions.revision_of(rs),
            revision=revision,
        )
        return self._remember(await self._objects.update(updated))

    async def _sync_annotations(
        self, deployment: objects_pb2.Deployment, rs: objects_pb2.ReplicaSet
    ) -> objects_pb2.ReplicaSet:
        """The current revision follows the Deployment's change-cause and minReadySeconds."""
        cause = deployment.metadata.annotations.get(history.CHANGE_CAUSE)
        if (cause is None or rs.metadata.annotations.get(history.CHANGE_CAUSE) == cause) and (
            rs.spec.min_ready_seconds == deployment.spec.min_ready_seconds
        ):
            return rs
        updated = objects_pb2.ReplicaSet()
        updated.CopyFrom(rs)
        if cause is not None:
            updated.metadata.annotations[history.CHANGE_CAUSE] = cause
        updated.spec.min_ready_seconds = deployment.spec.min_ready_seconds
        return self._remember(await self._objects.update(updated))

    async def _resize(
        self,
        deployment: objects_pb2.Deployment,
        rs: objects_pb2.ReplicaSet,
        replicas: int,
        *,
        desired: int,
        strategy: rollout.Strategy,
    ) -> objects_pb2.ReplicaSet:
        annotations = {
            history.DESIRED_REPLICAS: str(desired),
            history.MAX_REPLICAS: str(desired + strategy.surge),
        }
        if rs.spec.replicas == replicas and all(
            rs.metadata.annotations.get(k) == v for k, v in annotations.items()
        ):
            return rs
        updated = objects_pb2.ReplicaSet()
        updated.CopyFrom(rs)
        updated.spec.replicas = replicas
        updated.metadata.annotations.update(annotations)
        written = self._remember(await self._objects.update(updated))
        if rs.spec.replicas != replicas:
            direction = "up" if replicas > rs.spec.replicas else "down"
            log.info(
                "replicaset.scaled",
                deployment=deployment.metadata.name,
                replicaset=rs.metadata.name,
                replicas=replicas,
            )
            await self._record(
                deployment,
                EventType.NORMAL,
                Reason.SCALING,
                f"Scaled {direction} replica set {rs.metadata.name} to {replicas}",
            )
        return written

    async def _record(
        self, deployment: objects_pb2.Deployment, type_: EventType, reason: Reason, message: str
    ) -> None:
        if self._events is not None:
            await self._events.record(deployment, type_, reason, message)


def _view(rs: objects_pb2.ReplicaSet, counts: status.Counts) -> rollout.Revision:
    stamp = rs.metadata.creation_timestamp
    return rollout.Revision(
        name=rs.metadata.name,
        number=revisions.revision_of(rs),
        replicas=rs.spec.replicas,
        available=min(counts.available, rs.spec.replicas),
        created=stamp.seconds + stamp.nanos / 1e9,
        desired_annotation=history.int_annotation(rs, history.DESIRED_REPLICAS),
        max_annotation=history.int_annotation(rs, history.MAX_REPLICAS),
    )


def _pod_counts_changed(notice: Notice) -> bool:
    """Could this pod change make a pass act or write differently? A pass reads a pod's
    owner, whether it is active and since when it is Ready (`status.count`); a binding, a
    PodScheduled condition or a container status alone change none of them."""
    old, pod = notice.old, notice.object
    if notice.type is not ChangeType.MODIFIED or old is None:
        return True
    return (
        old.metadata.uid != pod.metadata.uid
        or revisions.controller_of(old) != revisions.controller_of(pod)
        or status.is_active(old) != status.is_active(pod)
        or status.ready_since(old) != status.ready_since(pod)
    )


def _timed_out(deployment_status: objects_pb2.DeploymentStatus) -> bool:
    condition = status.find_condition(deployment_status.conditions, progress.PROGRESSING)
    return condition is not None and condition.reason == progress.Reason.TIMED_OUT.value


def deployment_controller(
    objects: ObjectStore,
    *,
    deployments: Informer,
    replicasets: Informer,
    pods: Informer,
    events: EventRecorder | None = None,
    workers: int = 4,
    clock: Clock | None = None,
    resolver: digests.DigestResolver | None = None,
) -> Controller:
    """The deployment controller, subscribed to its three informers (which must also run).

    `resolver` pins image tags to digests in new revisions (default: off)."""
    reconciler = DeploymentReconciler(
        objects,
        deployments=deployments,
        replicasets=replicasets,
        pods=pods,
        events=events,
        clock=clock,
        resolver=resolver,
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
