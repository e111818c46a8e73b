"""A Deployment's revision history: which ReplicaSet is current, which are kept, which to go
back to after a failed rollout.

Vocabulary (annotations on ReplicaSets, Kubernetes' where Kubernetes has one):
- `deployment.kubernetes.io/revision`: the revision number (see `revisions`);
- `kubernetes.io/change-cause`: copied from the Deployment when the revision becomes current;
- `deployment.kubernetes.io/desired-replicas` / `max-replicas`: the Deployment's replicas (and
  replicas + maxSurge) when this ReplicaSet was last sized (proportional scaling reads them);
- `pilothouse.io/last-available`: when this revision last ran every replica available
  (a rollback target must have it);
- `pilothouse.io/rollout-failed`: when a rollout to this revision exceeded its deadline (never a
  rollback target again, unless it later becomes fully available).
On the Deployment, `pilothouse.io/rollback-reason` says why it was rolled back automatically.

Invariants: a ReplicaSet is the current one for a template when its template-hash label is the
template's hash, or when its own template (without the hash label) hashes the same: the
second case is a rollback, which copies a ReplicaSet's pinned template back into the
Deployment. Only ReplicaSets with no replicas and no pods are ever garbage-collected, oldest
revision first, keeping `revisionHistoryLimit` of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from controlplane.controllers.deployment import revisions
from pilothouse.v1 import objects_pb2

CHANGE_CAUSE = "kubernetes.io/change-cause"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
LAST_AVAILABLE = "pilothouse.io/last-available"
ROLLOUT_FAILED = "pilothouse.io/rollout-failed"
ROLLBACK_REASON = "pilothouse.io/rollback-reason"
DEFAULT_HISTORY_LIMIT = 10


def int_annotation(obj: objects_pb2.ReplicaSet, key: str) -> int | None:
    try:
        return int(obj.metadata.annotations[key])
    except (KeyError, ValueError):
        return None


def find_current(
    template: objects_pb2.PodTemplateSpec, replicasets: Sequence[objects_pb2.ReplicaSet]
) -> objects_pb2.ReplicaSet | None:
    """The ReplicaSet that runs `template` (see invariants), the oldest if several do."""
    wanted = revisions.template_hash(template)
    matches = [
        rs
        for rs in replicasets
        if rs.metadata.labels.get(revisions.HASH_LABEL) == wanted
        or revisions.template_hash(rs.spec.template) == wanted
    ]
    return min(matches, key=_age, default=None)


def _age(rs: objects_pb2.ReplicaSet) -> tuple[int, int, str]:
    stamp = rs.metadata.creation_timestamp
    return (stamp.seconds * 10**9 + stamp.nanos, revisions.revision_of(rs), rs.metadata.name)


def template_of(rs: objects_pb2.ReplicaSet) -> objects_pb2.PodTemplateSpec:
    """The ReplicaSet's template as a Deployment would hold it (no hash label): a rollback."""
    template = objects_pb2.PodTemplateSpec()
    template.CopyFrom(rs.spec.template)
    template.metadata.labels.pop(revisions.HASH_LABEL, None)
    return template


def rollback_target(
    replicasets: Sequence[objects_pb2.ReplicaSet], *, current: str
) -> objects_pb2.ReplicaSet | None:
    """The newest revision other than `current` that was fully available and never failed
    since."""
    candidates = [
        rs
        for rs in replicasets
        if rs.metadata.name != current
        and LAST_AVAILABLE in rs.metadata.annotations
        and ROLLOUT_FAILED not in rs.metadata.annotations
    ]
    return max(candidates, key=revisions.revision_of, default=None)


def history_limit(deployment: objects_pb2.Deployment) -> int:
    spec = deployment.spec
    if spec.HasField("revision_history_limit"):
        return max(spec.revision_history_limit, 0)
    return DEFAULT_HISTORY_LIMIT


def collectable(
    olds: Sequence[objects_pb2.ReplicaSet], *, limit: int, pods: dict[str, int]
) -> list[objects_pb2.ReplicaSet]:
    """Old ReplicaSets beyond the history limit that may go (no replicas, no pods left);
    `pods` counts the pods each ReplicaSet still has, by name."""
    excess = len(olds) - limit
    if excess <= 0:
        return []
    chosen = []
    for rs in sorted(olds, key=revisions.revision_of)[:excess]:
        if rs.spec.replicas == 0 and pods.get(rs.metadata.name, 0) == 0:
            chosen.append(rs)
    return chosen
