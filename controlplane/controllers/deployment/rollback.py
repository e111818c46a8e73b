"""Automatic rollback: a revision that misses its progress deadline hands the Deployment back
to the last revision that was ever fully available (`spec.rollbackOnFailure`).

Invariants: a failed revision is marked (`history.ROLLOUT_FAILED`) once, and its warnings are
recorded once, however many passes see it failed. Only the Deployment's template (and its
change-cause) is rolled back, with the reason written on the Deployment; the ReplicaSets follow
in later passes as in any rollout. Nothing is rolled back when no earlier revision was ever
fully available, or when the template changed meanwhile (a person took over).
"""

from __future__ import annotations

import time

import structlog

from controlplane.controllers.deployment import history, revisions
from controlplane.controllers.deployment.writes import DeploymentWrites, Reason
from controlplane.events import EventType
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)


def iso(now: float) -> str:
    """`now` as an annotation's timestamp (RFC 3339, UTC, whole seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


async def roll_back(
    writes: DeploymentWrites,
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
        failed.metadata.annotations[history.ROLLOUT_FAILED] = iso(now)
        writes.remember(await writes.objects.update(failed))
    target = history.rollback_target(owned, current=current.metadata.name)
    failed_revision = revisions.revision_of(current)
    deadline = deployment.spec.progress_deadline_seconds
    if target is None:
        if first_failure:
            await writes.record(
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
    writes.remember(await writes.objects.update(rolled))
    log.warning(
        "deployment.rolled_back",
        deployment=deployment.metadata.name,
        failed_revision=failed_revision,
        revision=target_revision,
    )
    await writes.record(
        deployment,
        EventType.WARNING,
        Reason.ROLLBACK,
        f'Rolled back deployment "{deployment.metadata.name}" to revision {target_revision}: {why}',
    )
