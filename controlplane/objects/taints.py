"""Taints and tolerations (pure), as the scheduler and the DaemonSet controller read them.

Rules (Kubernetes' core/v1 helpers):
- a toleration tolerates a taint when its effect is empty or equal, and either its operator
  is Exists (an empty key then matches every key) or its key and value equal the taint's;
- a pod may be placed on a node when every taint with effect NoSchedule or NoExecute is
  tolerated (PreferNoSchedule only lowers a node's score);
- DaemonSet pods tolerate, besides their own tolerations, the node conditions Kubernetes adds
  for them (`DAEMON_TOLERATIONS`): not-ready, unreachable, unschedulable (a cordoned node keeps
  its DaemonSet pods), disk/memory/pid pressure, network-unavailable.
"""

from __future__ import annotations

from collections.abc import Iterable

from pilothouse.v1 import objects_pb2

BLOCKING = ("NoSchedule", "NoExecute")

DAEMON_TOLERATIONS = tuple(
    objects_pb2.Toleration(key=key, operator="Exists", effect=effect)
    for key, effect in (
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
        ("node.kubernetes.io/network-unavailable", "NoSchedule"),
    )
)


def tolerates(toleration: objects_pb2.Toleration, taint: objects_pb2.Taint) -> bool:
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if (toleration.operator or "Equal") == "Exists":
        return not toleration.key or toleration.key == taint.key
    return toleration.key == taint.key and toleration.value == taint.value


def untolerated(
    taints: Iterable[objects_pb2.Taint], tolerations: Iterable[objects_pb2.Toleration]
) -> objects_pb2.Taint | None:
    """The first NoSchedule/NoExecute taint no toleration tolerates, or None."""
    tolerations = list(tolerations)
    for taint in taints:
        if taint.effect in BLOCKING and not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None
