"""What the agent accepts of a pushed pod: the fields a worker cannot do without.

Invariant: `validate` names the first problem as a field path and a reason (the answer of
SyncPods' `rejected`), or returns None; it reads nothing but the pod.
"""

from __future__ import annotations

from nodeagent.images import PullPolicy
from nodeagent.pods.restart import RestartPolicy
from pilothouse.v1 import objects_pb2


def validate(pod: objects_pb2.Pod) -> str | None:
    """Why this pod cannot be accepted, or None."""
    m = pod.metadata
    if not m.name:
        return "metadata.name is required"
    if not m.uid:
        return "metadata.uid is required"
    if not pod.spec.containers:
        return "spec.containers must not be empty"
    names = [c.name for c in (*pod.spec.init_containers, *pod.spec.containers)]
    if len(set(names)) != len(names) or not all(names):
        return "spec.containers and spec.initContainers need unique, non-empty names"
    for field, containers in (
        ("initContainers", pod.spec.init_containers),
        ("containers", pod.spec.containers),
    ):
        for i, c in enumerate(containers):
            if not c.image:
                return f"spec.{field}[{i}].image is required"
            if c.image_pull_policy and c.image_pull_policy not in {p.value for p in PullPolicy}:
                return f"spec.{field}[{i}].imagePullPolicy: unsupported {c.image_pull_policy!r}"
    if pod.spec.restart_policy and pod.spec.restart_policy not in {p.value for p in RestartPolicy}:
        return f"spec.restartPolicy: unsupported {pod.spec.restart_policy!r}"
    return None
