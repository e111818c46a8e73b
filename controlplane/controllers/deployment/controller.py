"""The deployment controller: each Deployment runs `spec.replicas` pods of its current template,
reached by its strategy, with its revisions kept as ReplicaSets.

One `reconcile("namespace/name")` pass, as Kubernetes' syncDeployment does it, in named steps
over one `context.Context`:
1. `_observe`: the Deployment, its ReplicaSets (revisions) and their pods from the informers,
   and the current revision (`history.find_current`);
2. paused, or `spec.replicas` changed (`_is_scaling`): `_scale` shares the replicas among the
   revisions in proportion (`rollout.scale`); otherwise a rollout: `_sync_replicasets` creates
   the current revision (image tags pinned to digests, `digests.pin`) or moves an old one to
   the newest revision number (`revision_writes`), then `_roll` takes one step of RollingUpdate
   or Recreate (`rollout`);
3. `_converge`: the targets written (`revision_writes`), every ReplicaSet's pods made to match
   its target and its status written (`replicaset`);
4. `completion.finish`: the Deployment's status (with `status` and `progress`); on a complete
   rollout, the revision marked last-available and revisions beyond revisionHistoryLimit
   collected; on a progress deadline with `rollbackOnFailure`, a rollback to the last fully
   available revision (`rollback`).

Invariants: level-triggered (a crash half-way is healed by the next pass: ReplicaSet names are
deterministic, pods are created under expectations (`objects.podtemplate`), every other write is
create-if-absent or compare-and-swap). Reads come from informers
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
from controlplane.controllers.deployment.context import Context, Totals
from controlplane.controllers.deployment.replicaset import ReplicaSetPods
from controlplane.controllers.deployment.writes import DeploymentWrites
from controlplane.events import EventRecorder
from controlplane.objects import ChangeType, ObjectStore, owners
from controlplane.objects.pods import is_active, ready_since
from controlplane.objects.podtemplate import Expectations, Tombstones
from controlplane.reconcile import Result
from controlplane.reconcile.clock import Clock, SystemClock
from controlplane.reconcile.controller import Controller
from pilothouse.v1 import objects_pb2

EXPECTED = 1.0  # s: another look while pods created here are not observed yet


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
        self._replicaset_pods = ReplicaSetPods(
            objects,
            tombstones=self._tombstones,
            expectations=Expectations(),
            observed=lambda: pods.revision,
        )

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
        ctx = self._observe(key)
        if ctx is None:
            return Result()  # gone: its ReplicaSets and pods are garbage now
        if ctx.deployment.metadata.HasField("deletion_timestamp"):
            return Result()  # Terminating (--cascade foreground/orphan): the GC finishes it
        if ctx.deployment.spec.paused or self._is_scaling(ctx):
            plan = self._scale(ctx)
        else:
            await self._sync_replicasets(ctx)
            plan = self._roll(ctx)
        totals = await self._converge(ctx, plan)
        result = await completion.finish(self._writes, ctx, totals)
        if any(self._replicaset_pods.waiting(rs) for rs in ctx.replicasets):
            # Its creates are usually observed in milliseconds (and that enqueues it again);
            # this look is for the case where no event will come.
            return Result(requeue_after=min(result.requeue_after or EXPECTED, EXPECTED))
        return result

    def _observe(self, key: str) -> Context | None:
        """Step 1: the Deployment, its revisions and their pods, freshest copies first."""
        namespace, name = key.split("/", 1)
        cached = self._deployments.get(namespace, name)
        if cached is None:
            self._writes.forget_deployment(namespace, name)
            return None
        deployment: objects_pb2.Deployment = self._writes.fresh(cached)
        self._tombstones.prune(self._pods.get)
        self._writes.forget_replicasets(namespace, cached=self._replicasets.get)
        owned = [
            self._writes.fresh(rs)
            for rs in self._replicasets.owned_by(deployment.metadata.uid)
            if rs.metadata.namespace == namespace
        ]
        desired = progress.desired_of(deployment)
        return Context(
            deployment=deployment,
            replicasets=owned,
            pods=self._pods_by_replicaset(namespace, owned),
            current=history.find_current(deployment.spec.template, owned),
            desired=desired,
            strategy=rollout.strategy_of(deployment.spec, desired),
            now=self._clock.now(),
        )

    def _is_scaling(self, ctx: Context) -> bool:
        """Has spec.replicas changed since an active revision was last sized?"""
        return rollout.is_scaling_event(ctx.desired, [ctx.view(rs) for rs in ctx.replicasets])

    def _scale(self, ctx: Context) -> rollout.Plan:
        """Step 2 when paused or scaling: every revision's share of replicas, in proportion."""
        current = ctx.current
        return rollout.scale(
            replicas=ctx.desired,
            strategy=ctx.strategy,
            new=ctx.view(current) if current is not None else None,
            olds=[ctx.view(rs) for rs in ctx.olds],
            status_replicas=ctx.deployment.status.replicas,
        )

    async def _sync_replicasets(self, ctx: Context) -> None:
        """Step 2 of a rollout: the current revision exists and is the newest. It is created
        (Recreate: only once the old revisions have no pod left), or an old template that came
        back gets the newest revision number."""
        olds = ctx.olds
        newest_old = max((revisions.revision_of(rs) for rs in olds), default=0)
        if ctx.current is None and self._may_create(ctx):
            initial = rollout.new_replicas(
                replicas=ctx.desired,
                strategy=ctx.strategy,
                new=rollout.Revision("", newest_old + 1, 0, 0, ctx.now),
                revisions=[*(ctx.view(rs) for rs in olds), rollout.Revision("", 0, 0, 0, ctx.now)],
            )
            created = await revision_writes.create(
                self._writes,
                ctx.deployment,
                revision=newest_old + 1,
                replicas=initial,
                strategy=ctx.strategy,
                resolver=self._resolver,
            )
            ctx.add(created)
            ctx.started = progress.Reason.NEW_RS_CREATED
        elif ctx.current is not None and revisions.revision_of(ctx.current) <= newest_old:
            renumbered = await revision_writes.set_revision(
                self._writes, ctx.deployment, ctx.current, newest_old + 1
            )
            ctx.replace(renumbered)
            ctx.started = progress.Reason.FOUND_NEW_RS

    def _roll(self, ctx: Context) -> rollout.Plan:
        """Step 3 of a rollout: one step of the Deployment's strategy."""
        new = ctx.view(ctx.current) if ctx.current is not None else None
        olds = [ctx.view(rs) for rs in ctx.olds]
        if ctx.strategy.recreate:
            return rollout.recreate(
                replicas=ctx.desired, new=new, olds=olds, old_pods_gone=_old_pods_gone(ctx)
            )
        if new is None:
            return {}
        return rollout.rolling(replicas=ctx.desired, strategy=ctx.strategy, new=new, olds=olds)

    async def _converge(self, ctx: Context, plan: rollout.Plan) -> Totals:
        """Last step before the status: the current revision follows the Deployment's
        change-cause and minReadySeconds, the plan's targets are written, every ReplicaSet's
        pods are made to match its target and its status is written."""
        if ctx.current is not None:
            ctx.replace(
                await revision_writes.sync_annotations(self._writes, ctx.deployment, ctx.current)
            )
        counts, targets, updated = status.Counts(), 0, 0
        for rs in list(ctx.replicasets):
            if rs.metadata.name in plan:
                rs = await revision_writes.resize(
                    self._writes,
                    ctx.deployment,
                    rs,
                    plan[rs.metadata.name],
                    desired=ctx.desired,
                    strategy=ctx.strategy,
                )
                ctx.replace(rs)
            kept = await self._replicaset_pods.converge(
                rs, ctx.pods[rs.metadata.name], target=rs.spec.replicas
            )
            rs_counts = ctx.count(kept)
            await self._replicaset_pods.write_status(rs, rs_counts)
            counts += rs_counts
            targets += rs.spec.replicas
            if ctx.is_current(rs):
                updated = rs_counts.replicas
        return Totals(counts=counts, targets=targets, updated=updated)

    @staticmethod
    def _may_create(ctx: Context) -> bool:
        if not ctx.strategy.recreate:
            return True
        return _old_pods_gone(ctx) and all(rs.spec.replicas == 0 for rs in ctx.olds)

    def _pods_by_replicaset(
        self, namespace: str, owned: list[objects_pb2.ReplicaSet]
    ) -> dict[str, list[objects_pb2.Pod]]:
        return {
            rs.metadata.name: self._tombstones.alive(
                p for p in self._pods.owned_by(rs.metadata.uid) if p.metadata.namespace == namespace
            )
            for rs in owned
        }


def _old_pods_gone(ctx: Context) -> bool:
    return all(not ctx.pods[rs.metadata.name] for rs in ctx.olds)


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

    controller.follow((deployments, replicasets, pods), reconciler.key_for)
    return controller
