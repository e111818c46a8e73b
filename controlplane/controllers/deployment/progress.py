"""A Deployment's Progressing condition and its progress deadline (Kubernetes' progress.go).

Reasons (`Reason`) and when they are set:
- NewReplicaSetCreated / FoundNewReplicaSet: a revision became the current one (created, or an
  old template came back); the deadline clock starts again.
- ReplicaSetUpdated: the rollout moved (more updated, ready or available replicas, fewer old
  ones); the deadline clock starts again (lastUpdateTime).
- NewReplicaSetAvailable: complete: every replica updated and available, no old ones.
- ProgressDeadlineExceeded (status False): no progress for progressDeadlineSeconds.
- DeploymentPaused / DeploymentResumed (status Unknown): no deadline while paused.
Without progressDeadlineSeconds there is no Progressing condition at all.

Invariants: pure (the clock's reading comes in as `now`); a finished rollout stays finished
until a new revision starts; `requeue_after` says when the deadline would pass, so it is noticed
without any other event.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from pilothouse.conditions import find_condition, set_condition
from pilothouse.v1 import objects_pb2

PROGRESSING = "Progressing"
_EPSILON = 1e-6


class Reason(enum.Enum):
    NEW_RS_CREATED = "NewReplicaSetCreated"
    FOUND_NEW_RS = "FoundNewReplicaSet"
    RS_UPDATED = "ReplicaSetUpdated"
    NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
    TIMED_OUT = "ProgressDeadlineExceeded"
    PAUSED = "DeploymentPaused"
    RESUMED = "DeploymentResumed"


@dataclass(frozen=True, slots=True)
class Progress:
    conditions: list[objects_pb2.Condition]
    requeue_after: float | None
    timed_out: bool
    complete: bool


def desired_of(deployment: objects_pb2.Deployment) -> int:
    return deployment.spec.replicas if deployment.spec.HasField("replicas") else 1


def is_complete(deployment: objects_pb2.Deployment, status: objects_pb2.DeploymentStatus) -> bool:
    """Every replica updated and available, and nothing else running (DeploymentComplete)."""
    desired = desired_of(deployment)
    return (
        status.updated_replicas == desired
        and status.replicas == desired
        and status.available_replicas == desired
        and status.observed_generation >= deployment.metadata.generation
    )


def made_progress(old: objects_pb2.DeploymentStatus, new: objects_pb2.DeploymentStatus) -> bool:
    return (
        new.updated_replicas > old.updated_replicas
        or (new.replicas - new.updated_replicas) < (old.replicas - old.updated_replicas)
        or new.ready_replicas > old.ready_replicas
        or new.available_replicas > old.available_replicas
    )


def _stamp(condition: objects_pb2.Condition) -> float:
    stamp = condition.last_update_time
    return stamp.seconds + stamp.nanos / 1e9


def _refreshed(
    conditions: Sequence[objects_pb2.Condition], wanted: objects_pb2.Condition, *, now: float
) -> list[objects_pb2.Condition]:
    """`set_condition`, but lastUpdateTime is now even when nothing else changed."""
    result = set_condition(conditions, wanted, now=now)
    for index, condition in enumerate(result):
        if condition.type == wanted.type:
            fresh = objects_pb2.Condition()
            fresh.CopyFrom(condition)
            fresh.last_update_time.FromNanoseconds(int(now * 1e9))
            result[index] = fresh
    return result


def _condition(status: str, reason: Reason, message: str) -> objects_pb2.Condition:
    return objects_pb2.Condition(
        type=PROGRESSING, status=status, reason=reason.value, message=message
    )


def progressing(
    deployment: objects_pb2.Deployment,
    status: objects_pb2.DeploymentStatus,
    *,
    replicaset: str | None,
    started: Reason | None,
    now: float,
) -> Progress:
    """The conditions of `status` with Progressing brought up to date (see module docstring).

    `deployment.status` is the status before this pass (to see whether anything moved);
    `started` says that `replicaset` became the current revision in this pass.
    """
    conditions = list(status.conditions)
    complete = is_complete(deployment, status)
    if not deployment.spec.HasField("progress_deadline_seconds"):
        conditions = [c for c in conditions if c.type != PROGRESSING]
        return Progress(conditions, None, False, complete)
    deadline = deployment.spec.progress_deadline_seconds
    current = find_condition(conditions, PROGRESSING)
    if deployment.spec.paused:
        if current is None or current.reason != Reason.PAUSED.value:
            paused = _condition("Unknown", Reason.PAUSED, "Deployment is paused")
            conditions = set_condition(conditions, paused, now=now)
        return Progress(conditions, None, False, complete)
    if current is not None and current.reason == Reason.PAUSED.value:
        resumed = _condition("Unknown", Reason.RESUMED, "Deployment is resumed")
        conditions = _refreshed(conditions, resumed, now=now)
    subject = f'ReplicaSet "{replicaset}"' if replicaset else f'Deployment "{_name(deployment)}"'
    if started is not None and replicaset:
        verb = "Created" if started is Reason.NEW_RS_CREATED else "Found"
        wanted = _condition("True", started, f'{verb} new replica set "{replicaset}"')
        conditions = _refreshed(conditions, wanted, now=now)
    current = find_condition(conditions, PROGRESSING)
    finished = (
        current is not None
        and current.reason == Reason.NEW_RS_AVAILABLE.value
        and status.replicas == status.updated_replicas
        and started is None
    )
    if not finished:
        if complete:
            wanted = _condition(
                "True", Reason.NEW_RS_AVAILABLE, f"{subject} has successfully progressed."
            )
            conditions = set_condition(conditions, wanted, now=now)
        elif made_progress(deployment.status, status):
            wanted = _condition("True", Reason.RS_UPDATED, f"{subject} is progressing.")
            conditions = _refreshed(conditions, wanted, now=now)
        elif current is not None and _timed_out(current, deadline=deadline, now=now):
            wanted = _condition("False", Reason.TIMED_OUT, f"{subject} has timed out progressing.")
            conditions = set_condition(conditions, wanted, now=now)
    current = find_condition(conditions, PROGRESSING)
    requeue: float | None = None
    timed_out = current is not None and current.reason == Reason.TIMED_OUT.value
    if (
        current is not None
        and current.status == "True"
        and current.reason != Reason.NEW_RS_AVAILABLE.value
        and not complete
    ):
        requeue = max(_stamp(current) + deadline - now, 0.0) + _EPSILON
    elif current is None and not complete:
        # A first rollout with no condition yet: start counting from now.
        wanted = _condition("True", Reason.RS_UPDATED, f"{subject} is progressing.")
        conditions = _refreshed(conditions, wanted, now=now)
        requeue = deadline + _EPSILON
    return Progress(conditions, requeue, timed_out, complete)


def _timed_out(condition: objects_pb2.Condition, *, deadline: int, now: float) -> bool:
    if condition.reason == Reason.NEW_RS_AVAILABLE.value:
        return False
    if condition.reason == Reason.TIMED_OUT.value:
        return True
    return _stamp(condition) + deadline <= now + _EPSILON


def _name(deployment: objects_pb2.Deployment) -> str:
    return deployment.metadata.name
