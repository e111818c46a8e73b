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
