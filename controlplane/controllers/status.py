"""Status of ReplicaSets and Deployments from their pods: counts and the Available condition.

Invariants (Kubernetes' definitions):
- active pod: not finished (phase Succeeded or Failed) and not being deleted;
- ready: the pod's Ready condition is True; available: ready for at least minReadySeconds,
  measured from the Ready condition's lastTransitionTime;
- a Deployment's replicas/ready/available sum its ReplicaSets'; updatedReplicas are those of
  the ReplicaSet of the current template; unavailableReplicas = sum of the ReplicaSets'
  targets - available (never negative);
- Available is True when availableReplicas >= replicas - maxUnavailable.
- Conditions keep their timestamps unless their status, reason or message change, so an
  unchanged world computes an identical status and the controller writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pilothouse.v1 import objects_pb2

FINISHED_PHASES = frozenset({"Succeeded", "Failed"})


def is_active(pod: objects_pb2.Pod) -> bool:
    return pod.status.phase not in FINISHED_PHASES and not pod.metadata.HasField(
        "deletion_timestamp"
    )


def ready_since(pod: objects_pb2.Pod) -> float | None:
    """When the pod became Ready (seconds since the epoch), or None if it is not Ready."""
    for condition in pod.status.conditions:
        if condition.type == "Ready" and condition.status == "True":
            stamp = condition.last_transition_time
            return stamp.seconds + stamp.nanos / 1e9
    return None


def is_ready(pod: objects_pb2.Pod) -> bool:
    return ready_since(pod) is not None


def available_after(pod: objects_pb2.Pod, *, min_ready_seconds: int, now: float) -> float | None:
    """0 if available now, the seconds until it will be if ready but too recently, else None."""
    since = ready_since(pod)
    if since is None:
        return None
    if min_ready_seconds <= 0:
        return 0.0
    return max(0.0, since + min_ready_seconds - now)


@dataclass(frozen=True, slots=True)
class Counts:
    """What the pods of one ReplicaSet (or of a whole Deployment) amount to."""

    replicas: int = 0  # active pods
    ready: int = 0
    available: int = 0
    recheck_in: float | None = None  # a ready pod becomes available then (minReadySeconds)

    def __add__(self, other: Counts) -> Counts:
        recheck = [r for r in (self.recheck_in, other.recheck_in) if r is not None]
        return Counts(
            self.replicas + other.replicas,
            self.ready + other.ready,
            self.available + other.available,
            min(recheck) if recheck else None,
        )


def count(pods: Iterable[objects_pb2.Pod], *, min_ready_seconds: int, now: float) -> Counts:
    replicas = ready = available = 0
    recheck: float | None = None
    for pod in pods:
        if not is_active(pod):
            continue
        replicas += 1
        wait = available_after(pod, min_ready_seconds=min_ready_seconds, now=now)
        if wait is None:
            continue
        ready += 1
        if wait == 0:
            available += 1
        else:
            recheck = wait if recheck is None else min(recheck, wait)
    return Counts(replicas, ready, available, recheck)


def replicaset_status(rs: objects_pb2.ReplicaSet, counts: Counts) -> objects_pb2.ReplicaSetStatus:
    status = objects_pb2.ReplicaSetStatus(
        replicas=counts.replicas,
        fully_labeled_replicas=counts.replicas,
        ready_replicas=counts.ready,
        available_replicas=counts.available,
        observed_generation=rs.metadata.generation,
    )
    status.conditions.extend(rs.status.conditions)
    return status


def set_condition(
    conditions: Sequence[objects_pb2.Condition],
    wanted: objects_pb2.Condition,
    *,
    now: float,
) -> list[objects_pb2.Condition]:
    """`conditions` with `wanted` in place of its type, timestamps kept unless it changed."""
    result: list[objects_pb2.Condition] = []
    placed = False
    for condition in conditions:
        if condition.type != wanted.type:
            result.append(condition)
            continue
        placed = True
        if (condition.status, condition.reason, condition.message) == (
            wanted.status,
            wanted.reason,
            wanted.message,
        ):
            result.append(condition)
            continue
        updated = objects_pb2.Condition()
        updated.CopyFrom(wanted)
        updated.last_update_time.FromNanoseconds(int(now * 1e9))
        if condition.status == wanted.status:
            updated.last_transition_time.CopyFrom(condition.last_transition_time)
        else:
            updated.last_transition_time.FromNanoseconds(int(now * 1e9))
        result.append(updated)
    if not placed:
        added = objects_pb2.Condition()
        added.CopyFrom(wanted)
        added.last_update_time.FromNanoseconds(int(now * 1e9))
        added.last_transition_time.FromNanoseconds(int(now * 1e9))
        result.append(added)
    return result


def find_condition(
    conditions: Sequence[objects_pb2.Condition], type_: str
) -> objects_pb2.Condition | None:
    for condition in conditions:
        if condition.type == type_:
            return condition
    return None


def deployment_counts(
    deployment: objects_pb2.Deployment,
    *,
    total: Counts,
    updated: int,
    targets: int,
    max_unavailable: int,
    now: float,
) -> objects_pb2.DeploymentStatus:
    """The Deployment's counts and Available condition; its other conditions as they were
    (Progressing is the `progress` module's)."""
    old = deployment.status
    desired = deployment.spec.replicas if deployment.spec.HasField("replicas") else 1
    status = objects_pb2.DeploymentStatus(
        observed_generation=deployment.metadata.generation,
        replicas=total.replicas,
        updated_replicas=updated,
        ready_replicas=total.ready,
        available_replicas=total.available,
        unavailable_replicas=max(targets - total.available, 0),
        collision_count=old.collision_count,
    )
    if total.available >= desired - max_unavailable:
        available = objects_pb2.Condition(
            type="Available",
            status="True",
            reason="MinimumReplicasAvailable",
            message="Deployment has minimum availability.",
        )
    else:
        available = objects_pb2.Condition(
            type="Available",
            status="False",
            reason="MinimumReplicasUnavailable",
            message="Deployment does not have minimum availability.",
        )
    status.conditions.extend(set_condition(old.conditions, available, now=now))
    return status
