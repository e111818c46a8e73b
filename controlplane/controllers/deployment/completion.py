"""The end of a deployment pass: the Deployment's status, and what a rollout's outcome means
for its revisions.

Invariants: the status (counts and the Progressing/Available conditions) is written only when
it changed, and the Deployment's revision annotation follows its current revision. Only a
complete rollout of an unpaused Deployment marks its revision last-available (which makes it
a rollback target), before the status shows it complete; old revisions beyond
revisionHistoryLimit are collected only when none of their pods is left. A progress deadline
is reported once, when first exceeded, and leads to a rollback (`rollback.roll_back`) only
with `spec.rollbackOnFailure` on an unpaused Deployment.
"""

from __future__ import annotations

import contextlib

import structlog

from controlplane.controllers.deployment import (
    history,
    progress,
    revisions,
    rollback,
    status,
)
from controlplane.controllers.deployment.context import Context, Totals
from controlplane.controllers.deployment.writes import DeploymentWrites, Reason
from controlplane.events import EventType
from controlplane.reconcile import Result
from controlplane.store import NotFound
from pilothouse.conditions import find_condition
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)


async def finish(writes: DeploymentWrites, ctx: Context, totals: Totals) -> Result:
    """Writes the Deployment's status and settles its revisions; when to look again."""
    deployment, current, now = ctx.deployment, ctx.current, ctx.now
    new_status = status.deployment_counts(
        deployment,
        total=totals.counts,
        updated=totals.updated,
        targets=totals.targets,
        max_unavailable=ctx.strategy.max_unavailable(ctx.desired),
        now=now,
    )
    was_timed_out = _timed_out(deployment.status)
    moved = progress.progressing(
        deployment,
        new_status,
        replicaset=current.metadata.name if current is not None else None,
        started=ctx.started,
        now=now,
    )
    del new_status.conditions[:]
    new_status.conditions.extend(moved.conditions)
    if current is not None and moved.complete and not deployment.spec.paused:
        # Before the status says so: once a client sees the rollout complete (and maybe
        # changes the template), its revision is already a rollback target.
        await _mark_available(writes, current, now=now)
    written = deployment
    if new_status != deployment.status:
        updated_deployment = objects_pb2.Deployment()
        updated_deployment.CopyFrom(deployment)
        updated_deployment.status.CopyFrom(new_status)
        written = writes.remember(await writes.objects.update_status(updated_deployment))
    if current is not None:
        revision = current.metadata.annotations.get(revisions.REVISION_ANNOTATION, "")
        if revision and written.metadata.annotations.get(revisions.REVISION_ANNOTATION) != (
            revision
        ):
            annotated = objects_pb2.Deployment()
            annotated.CopyFrom(written)
            annotated.metadata.annotations[revisions.REVISION_ANNOTATION] = revision
            written = writes.remember(await writes.objects.update(annotated))
    await _collect(writes, ctx)
    if moved.timed_out and not was_timed_out and current is not None:
        await writes.record(
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
        await rollback.roll_back(writes, written, current=current, owned=ctx.replicasets, now=now)
    waits = [w for w in (totals.counts.recheck_in, moved.requeue_after) if w is not None]
    return Result(requeue_after=min(waits) if waits else None)


async def _mark_available(
    writes: DeploymentWrites, rs: objects_pb2.ReplicaSet, *, now: float
) -> None:
    annotations = rs.metadata.annotations
    if history.LAST_AVAILABLE in annotations and history.ROLLOUT_FAILED not in annotations:
        return
    marked = objects_pb2.ReplicaSet()
    marked.CopyFrom(rs)
    marked.metadata.annotations[history.LAST_AVAILABLE] = rollback.iso(now)
    marked.metadata.annotations.pop(history.ROLLOUT_FAILED, None)
    writes.remember(await writes.objects.update(marked))


async def _collect(writes: DeploymentWrites, ctx: Context) -> None:
    """Old revisions beyond revisionHistoryLimit with no replicas and no pods left go."""
    deployment = ctx.deployment
    for rs in history.collectable(
        ctx.olds,
        limit=history.history_limit(deployment),
        pods={n: len(p) for n, p in ctx.pods.items()},
    ):
        with contextlib.suppress(NotFound):
            await writes.objects.delete(
                Kind.REPLICASET,
                rs.metadata.namespace,
                rs.metadata.name,
                resource_version=rs.metadata.resource_version,
            )
        writes.forget("ReplicaSet", rs.metadata.namespace, rs.metadata.name)
        log.info(
            "replicaset.collected",
            deployment=deployment.metadata.name,
            replicaset=rs.metadata.name,
            revision=revisions.revision_of(rs),
        )


def _timed_out(deployment_status: objects_pb2.DeploymentStatus) -> bool:
    condition = find_condition(deployment_status.conditions, progress.PROGRESSING)
    return condition is not None and condition.reason == progress.Reason.TIMED_OUT.value
