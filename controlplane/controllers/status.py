"""Deployment status from its pods: counts and the Available / Progressing conditions.

Invariants (Kubernetes' definitions):
- active pod: not finished (phase Succeeded or Failed) and not being deleted;
- ready: the pod's Ready condition is True; available: ready for at least minReadySeconds,
  measured from the Ready condition's lastTransitionTime;
- Available is True when availableReplicas >= replicas - maxUnavailable (maxUnavailable of a
  RollingUpdate, 25% by default, rounded down; 0 for Recreate).
- Conditions keep their timestamps unless their status, reason or message change, so an
  unchanged world computes an identical status and the controller writes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf import struct_pb2

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


def _resolve(value: struct_pb2.Value, total: int, *, default: str, round_up: bool) -> int:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return int(value.number_value)
    text = value.string_value if kind == "string_value" else default
    if text.endswith("%"):
        try:
            percent = int(text[:-1])
        except ValueError:
            percent = int(default[:-1])
        exact = total * percent / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    try:
        return int(text)
    except ValueError:
        return 0


def max_unavailable(deployment: objects_pb2.Deployment, desired: int) -> int:
    strategy = deployment.spec.strategy
    if strategy.type == "Recreate":
        return 0
    rolling = strategy.rolling_update
    surge = _resolve(rolling.max_surge, desired, default="25%", round_up=True)
    unavailable = _resolve(rolling.max_unavailable, desired, default="25%", round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # Kubernetes: both zero would never make progress
    return min(unavailable, desired)


@dataclass(frozen=True, slots=True)
class Counts:
    replicas: int
    updated: int
    ready: int
    available: int
    recheck_in: float | None  # a pod becomes available then (minReadySeconds)


def count(
    pods: Sequence[objects_pb2.Pod],
    *,
    current_hash: str,
    hash_label: str,
    min_ready_seconds: int,
    now: float,
) -> Counts:
    replicas = updated = ready = available = 0
    recheck: float | None = None
    for pod in pods:
        if not is_active(pod):
            continue
        replicas += 1
        if pod.metadata.labels.get(hash_label) == current_hash:
            updated += 1
        wait = available_after(pod, min_ready_seconds=min_ready_seconds, now=now)
        if wait is None:
            continue
        ready += 1
        if wait == 0:
            available += 1
        else:
            recheck = wait if recheck is None else min(recheck, wait)
    return Counts(replicas, updated, ready, available, recheck)


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


def deployment_status(
    deployment: objects_pb2.Deployment,
    counts: Counts,
    *,
    desired: int,
    replicaset: str,
    now: float,
) -> objects_pb2.DeploymentStatus:
    old = deployment.status
    status = objects_pb2.DeploymentStatus(
        observed_generation=deployment.metadata.generation,
        replicas=counts.replicas,
        updated_replicas=counts.updated,
        ready_replicas=counts.ready,
        available_replicas=counts.available,
        unavailable_replicas=max(desired - counts.available, 0),
        collision_count=old.collision_count,
    )
    if counts.available >= desired - max_unavailable(deployment, desired):
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
    if deployment.spec.paused:
        progressing = objects_pb2.Condition(
            type="Progressing",
            status="Unknown",
            reason="DeploymentPaused",
            message="Deployment is paused",
        )
    elif counts.updated == desired and counts.replicas == desired and counts.available == desired:
        progressing = objects_pb2.Condition(
            type="Progressing",
            status="True",
            reason="NewReplicaSetAvailable",
            message=f'ReplicaSet "{replicaset}" has successfully progressed.',
        )
    else:
        progressing = objects_pb2.Condition(
            type="Progressing",
            status="True",
            reason="ReplicaSetUpdated",
            message=f'ReplicaSet "{replicaset}" is progressing.',
        )
    conditions = set_condition(old.conditions, available, now=now)
    conditions = set_condition(conditions, progressing, now=now)
    status.conditions.extend(conditions)
    return status
