"""A Deployment's revisions as the rollout verbs see them, and how the verbs read and write.

Vocabulary: a Deployment's revisions are its ReplicaSets (controller owner = the Deployment),
numbered by the `deployment.kubernetes.io/revision` annotation; their pod templates carry
image digests, with the tag as written in `pilothouse.io/image.<container>`.

Invariant: `write` applies a Deployment as changed from what was read, pinned to the
resourceVersion read, so a concurrent change makes it fail (ABORTED) instead of overwriting it.
"""

from __future__ import annotations

from collections.abc import Sequence

from pilothouse.client import Client
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
ORIGINAL_IMAGE = "pilothouse.io/image."
HASH_LABEL = "pod-template-hash"


def revision_of(obj: objects_pb2.Deployment | objects_pb2.ReplicaSet) -> int:
    try:
        return int(obj.metadata.annotations.get(REVISION, "0"))
    except ValueError:
        return 0


def owned(
    deployment: objects_pb2.Deployment, replicasets: Sequence[objects_pb2.ReplicaSet]
) -> list[objects_pb2.ReplicaSet]:
    """The Deployment's revisions, oldest revision first."""
    uid = deployment.metadata.uid
    mine = [
        rs
        for rs in replicasets
        if any(r.controller and r.uid == uid for r in rs.metadata.owner_references)
    ]
    return sorted(mine, key=revision_of)


def template_of(rs: objects_pb2.ReplicaSet) -> objects_pb2.PodTemplateSpec:
    template = objects_pb2.PodTemplateSpec()
    template.CopyFrom(rs.spec.template)
    template.metadata.labels.pop(HASH_LABEL, None)
    return template


async def read(
    client: Client, name: str, *, namespace: str = ""
) -> tuple[objects_pb2.Deployment, list[objects_pb2.ReplicaSet]]:
    deployment = await client.get(Kind.DEPLOYMENT, name, namespace=namespace)
    listed = await client.list(Kind.REPLICASET, namespace=deployment.metadata.namespace)  # type: ignore[attr-defined]
    return deployment, owned(deployment, listed.items)  # type: ignore[arg-type]


async def write(client: Client, deployment: objects_pb2.Deployment) -> objects_pb2.Deployment:
    """Apply `deployment` as changed from what was read (pinned to its resourceVersion)."""
    applied = await client.apply(deployment)
    return applied.object  # type: ignore[return-value]
