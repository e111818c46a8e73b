"""The deployment controller: each Deployment runs `spec.replicas` pods of its current template,
reached by its strategy, with its revisions kept as ReplicaSets.

One `reconcile("namespace/name")` pass, as Kubernetes' syncDeployment does it:
1. read the Deployment, its ReplicaSets (revisions) and their pods from the informers;
2. find the current revision (`history.find_current`); when rolling out, create it (image
   tags pinned to digests, `digests.pin`) or move an old one to the newest revision number
   (`revision_writes`);
3. decide each revision's target (`rollout`): a scaling event or a paused Deployment scales in
   proportion; otherwise one step of RollingUpdate or Recreate;
4. write the targets (`revision_writes`), make every ReplicaSet's pods match its target
   (`replicaset`), write the ReplicaSets' status;
5. write the Deployment's status (`completion`, with `status` and `progress`); on a complete
   rollout, mark the revision last-available and collect revisions beyond
   revisionHistoryLimit; on a progress deadline with `rollbackOnFailure`, roll back to the last
   fully available revision (`rollback`).

Invariants: level-triggered (a crash half-way is healed by the next pass: names are
deterministic, every write is create-if-absent or compare-and-swap). Reads come from informers
and may be a step behind; objects this controller wrote itself are used instead of older cached
copies (`writes.DeploymentWrites`), and pods it deleted are not counted, so a stale cache can
never make a rollout exceed maxSurge or drop below maxUnavailable. Recreate starts the new
revision only once no pod of an old one is left in the store (the node syncer stops a deleted
pod's containers shortly after). A Deployment that is gone needs nothing here: the garbage
collector deletes its ReplicaSets and their pods.
"""

from __future__ import annotations

from controlplane import digests
from controlplane.cache.informer import Informer, Notice
from controlplane.controllers.deployment import (
    completion,
    history,
    progress,
    revision_writes,
    revisions,
    rollout,
    status,
)
from controlplane.controllers.deployment.replicaset import ReplicaSetPods, Tombstones
from controlplane.controllers.deployment.writes import DeploymentWrites
from controlplane.events import EventRecorder
from controlplane.objects import ChangeType, ObjectStore, owners
from controlplane.objects.pods import is_active, ready_since
from controlplane.reconcile import Result
from controlplane.reconcile.clock import Clock, SystemClock
from controlplane.reconcile.controller import Controller
from pilothouse.v1 import objects_pb2


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
        self._writes = DeploymentWrites(objects, events=events)
        self._deployments = deployments
        self._replicasets = replicasets
        self._pods = pods
        self._clock = clock or SystemClock()
        self._resolver = resolver or digests.NoDigests()
        self._tombstones = Tombstones()
        self._replicaset_pods = ReplicaSetPods(objects, tombstones=self._tombstones)

    # -------------------------------------------------------------- event mapping

    def key_for(self, notice: Notice) -> str | None:
        """Which Deployment a changed Deployment, ReplicaSet or Pod belongs to."""
        obj = notice.object
        namespace = obj.metadata.namespace
        if isinstance(obj, objects_pb2.Deployment):
            return f"{namespace}/{obj.metadata.name}"
        owner = owners.controller_of(obj)
        if owner is None:
            return None
        if isinstance(obj, objects_pb2.Pod):
            if owner.kind != "ReplicaSet" or not _pod_counts_changed(notice):
                return None
            replicaset = self._replicasets.get(namespace, owner.name)
            owner = owners.controller_of(replicaset) if replicaset is not None else None
            if owner is None:
                return None
        return f"{namespace}/{owner.name}" if owner.kind == "Deployment" else None

    # ------------------------------------------------------------------ reconcile

    async def reconcile(self, key: str) -> Result:
        namespace, name = key.split("/", 1)
        cached = self._deployments.get(namespace, name)
        if cached is None:
            self._writes.forget_deployment(namespace, name)
            return Result()  # its ReplicaSets and pods are garbage now
        deployment: objects_pb2.Deployment = self._writes.fresh(cached)
        uid = deployment.metadata.uid
        self._tombstones.prune(self._pods.get)
        self._writes.forget_replicasets(namespace, cached=self._replicasets.get)
        owned = [
            self._writes.fresh(rs)
            for rs in self._replicasets.list(namespace)
            if owners.owned_by(rs, uid)
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
                current = await revision_writes.create(
                    self._writes,
                    deployment,
                    revision=newest_old + 1,
                    replicas=initial,
                    strategy=strategy,
                    resolver=self._resolver,
                )
                started = progress.Reason.NEW_RS_CREATED
                owned.append(current)
                pods[current.metadata.name] = []
            elif current is not None and revisions.revision_of(current) <= newest_old:
                current = await revision_writes.set_revision(
                    self._writes, deployment, current, newest_old + 1
                )
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
            current = await revision_writes.sync_annotations(self._writes, deployment, current)
            owned = [current if rs.metadata.name == current.metadata.name else rs for rs in owned]
        total = status.Counts()
        targets = 0
        updated = 0
        for index, rs in enumerate(owned):
            if rs.metadata.name in plan:
                rs = await revision_writes.resize(
                    self._writes,
                    deployment,
                    rs,
                    plan[rs.metadata.name],
                    desired=desired,
                    strategy=strategy,
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
        return await completion.finish(
            self._writes,
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
            ref = owners.controller_of(pod)
            if ref is not None and ref.uid in by_uid:
                result[by_uid[ref.uid]].append(pod)
        return result


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
        or owners.controller_of(old) != owners.controller_of(pod)
        or is_active(old) != is_active(pod)
        or ready_since(old) != ready_since(pod)
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
