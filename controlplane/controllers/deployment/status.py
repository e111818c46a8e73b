"""Status of ReplicaSets and Deployments from their pods: counts and the Available condition.

Invariants (Kubernetes' definitions):
- active and ready pods as `controlplane.objects.pods` says; available: ready for at least
  minReadySeconds, measured from the Ready condition's lastTransitionTime;
- a Deployment's replicas/ready/available sum its ReplicaSets'; updatedReplicas are those of
  the ReplicaSet of the current template; unavailableReplicas = sum of the ReplicaSets'
  targets - available (never negative);
- Available is True when availableReplicas >= replicas - maxUnavailable.
- Conditions are set by `pilothouse.conditions` (timestamps kept unless something changed), so
  an unchanged world computes an identical status and the controller writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from controlplane.objects.pods import is_active, ready_since
from pilothouse.conditions import set_condition
from pilothouse.v1 import objects_pb2


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
