"""What a stored Pod's status says about it: finished, active, Ready since when.

Invariants (Kubernetes' definitions): a pod is finished when its phase is Succeeded or Failed;
active when it is neither finished nor being deleted (its deletionTimestamp set); Ready since
its Ready condition's lastTransitionTime while that condition is True.
"""

from __future__ import annotations

from pilothouse.conditions import seconds
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
            return seconds(condition.last_transition_time)
    return None


_PHASE_RANK = {"Pending": 0, "": 0, "Unknown": 1, "Running": 2}


def deletion_rank(pod: objects_pb2.Pod) -> tuple[int, int, int, float, int, int, str]:
    """Lower goes first when scaling down (Kubernetes' ActivePods ordering): unscheduled
    before scheduled, Pending before Unknown before Running, not ready before ready, ready for
    less time before longer, more restarts before fewer, newer before older."""
    since = ready_since(pod)
    created = pod.metadata.creation_timestamp
    restarts = sum(c.restart_count for c in pod.status.container_statuses)
    return (
        0 if not pod.spec.node_name else 1,
        _PHASE_RANK.get(pod.status.phase, 2),
        0 if since is None else 1,
        -(since or 0.0),
        -restarts,
        -(created.seconds * 10**9 + created.nanos),
        pod.metadata.name,
    )


def is_available(pod: objects_pb2.Pod, *, min_ready_seconds: int, now: float) -> bool:
    """Ready for at least `min_ready_seconds` (Kubernetes' IsPodAvailable)."""
    since = ready_since(pod)
    return since is not None and is_active(pod) and since + min_ready_seconds <= now
