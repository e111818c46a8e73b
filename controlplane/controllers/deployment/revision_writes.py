"""Writes of a Deployment's revisions (its ReplicaSets): create, renumber, follow, resize.

Invariants: a new revision's name is deterministic (the Deployment's name and its template's
hash), so a retry after a crash finds the ReplicaSet an interrupted pass created; one of that
name owned by someone else (an earlier Deployment of the same name) is never adopted but
waited for (`ForeignReplicaSet`) until the garbage collector removes it. Every write is a
create-if-absent or a compare-and-swap update of the freshest copy, and every written object
is kept (`DeploymentWrites.remember`) so the rest of the pass acts on it. A revision's
desired/max-replicas annotations always describe the Deployment's size and surge at the time
of the write, as proportional scaling reads them.
"""

from __future__ import annotations

import structlog

from controlplane import digests
from controlplane.controllers.deployment import history, progress, revisions, rollout
from controlplane.controllers.deployment.writes import DeploymentWrites, Reason
from controlplane.events import EventType
from controlplane.objects import owners
from controlplane.store import AlreadyExists, StoreError
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)


class ForeignReplicaSet(StoreError):
    """A ReplicaSet with our name belongs to someone else (an old incarnation): wait for GC."""


async def create(
    writes: DeploymentWrites,
    deployment: objects_pb2.Deployment,
    *,
    revision: int,
    replicas: int,
    strategy: rollout.Strategy,
    resolver: digests.DigestResolver,
) -> objects_pb2.ReplicaSet:
    """The ReplicaSet of the Deployment's template as revision `revision`, image tags pinned."""
    hash_ = revisions.template_hash(deployment.spec.template)
    name = revisions.replicaset_name(deployment.metadata.name, hash_)
    pinned = await digests.pin(deployment.spec.template, resolver)
    for failure in pinned.failures:
        await writes.record(
            deployment,
            EventType.WARNING,
            Reason.DIGEST_UNRESOLVED,
            f'Container "{failure.container}" keeps image "{failure.image}" as tagged in '
            f"revision {revision} (its digest could not be resolved: {failure.reason})",
        )
    desired = progress.desired_of(deployment)
    rs = objects_pb2.ReplicaSet()
    rs.metadata.name = name
    rs.metadata.namespace = deployment.metadata.namespace
    rs.metadata.labels.update(deployment.spec.template.metadata.labels)
    rs.metadata.labels[revisions.HASH_LABEL] = hash_
    annotations = rs.metadata.annotations
    annotations[revisions.REVISION_ANNOTATION] = str(revision)
    annotations[history.DESIRED_REPLICAS] = str(desired)
    annotations[history.MAX_REPLICAS] = str(desired + strategy.surge)
    cause = deployment.metadata.annotations.get(history.CHANGE_CAUSE)
    if cause is not None:
        annotations[history.CHANGE_CAUSE] = cause
    rs.metadata.owner_references.add(
        api_version=Kind.DEPLOYMENT.info.api_version,
        kind=Kind.DEPLOYMENT.info.kind,
        name=deployment.metadata.name,
        uid=deployment.metadata.uid,
        controller=True,
        block_owner_deletion=True,
    )
    rs.spec.replicas = replicas
    rs.spec.min_ready_seconds = deployment.spec.min_ready_seconds
    rs.spec.selector.match_labels.update(deployment.spec.selector.match_labels)
    rs.spec.selector.match_labels[revisions.HASH_LABEL] = hash_
    rs.spec.template.CopyFrom(pinned.template)
    rs.spec.template.metadata.labels[revisions.HASH_LABEL] = hash_
    try:
        created = await writes.objects.create(rs)
    except AlreadyExists:
        created = await writes.objects.get(Kind.REPLICASET, rs.metadata.namespace, name)
        if not owners.owned_by(created, deployment.metadata.uid):
            raise ForeignReplicaSet(
                f'replicasets "{name}" belongs to an earlier deployment of the same name; '
                "waiting for it to be garbage-collected"
            ) from None
        return writes.remember(created)
    log.info(
        "replicaset.created",
        deployment=deployment.metadata.name,
        replicaset=name,
        revision=revision,
        replicas=replicas,
    )
    await writes.record(
        deployment,
        EventType.NORMAL,
        Reason.SCALING,
        f"Scaled up replica set {name} to {replicas} (new revision {revision})",
    )
    return writes.remember(created)


async def set_revision(
    writes: DeploymentWrites,
    deployment: objects_pb2.Deployment,
    rs: objects_pb2.ReplicaSet,
    revision: int,
) -> objects_pb2.ReplicaSet:
    """An old template is back (a rollback): its ReplicaSet becomes the newest revision."""
    updated = objects_pb2.ReplicaSet()
    updated.CopyFrom(rs)
    updated.metadata.annotations[revisions.REVISION_ANNOTATION] = str(revision)
    log.info(
        "replicaset.revived",
        deployment=deployment.metadata.name,
        replicaset=rs.metadata.name,
        old_revision=revisions.revision_of(rs),
        revision=revision,
    )
    return writes.remember(await writes.objects.update(updated))


async def sync_annotations(
    writes: DeploymentWrites, deployment: objects_pb2.Deployment, rs: objects_pb2.ReplicaSet
) -> objects_pb2.ReplicaSet:
    """The current revision follows the Deployment's change-cause and minReadySeconds."""
    cause = deployment.metadata.annotations.get(history.CHANGE_CAUSE)
    if (cause is None or rs.metadata.annotations.get(history.CHANGE_CAUSE) == cause) and (
        rs.spec.min_ready_seconds == deployment.spec.min_ready_seconds
    ):
        return rs
    updated = objects_pb2.ReplicaSet()
    updated.CopyFrom(rs)
    if cause is not None:
        updated.metadata.annotations[history.CHANGE_CAUSE] = cause
    updated.spec.min_ready_seconds = deployment.spec.min_ready_seconds
    return writes.remember(await writes.objects.update(updated))


async def resize(
    writes: DeploymentWrites,
    deployment: objects_pb2.Deployment,
    rs: objects_pb2.ReplicaSet,
    replicas: int,
    *,
    desired: int,
    strategy: rollout.Strategy,
) -> objects_pb2.ReplicaSet:
    """The revision's target becomes `replicas`; its size annotations follow the Deployment."""
    annotations = {
        history.DESIRED_REPLICAS: str(desired),
        history.MAX_REPLICAS: str(desired + strategy.surge),
    }
    if rs.spec.replicas == replicas and all(
        rs.metadata.annotations.get(k) == v for k, v in annotations.items()
    ):
        return rs
    updated = objects_pb2.ReplicaSet()
    updated.CopyFrom(rs)
    updated.spec.replicas = replicas
    updated.metadata.annotations.update(annotations)
    written = writes.remember(await writes.objects.update(updated))
    if rs.spec.replicas != replicas:
        direction = "up" if replicas > rs.spec.replicas else "down"
        log.info(
            "replicaset.scaled",
            deployment=deployment.metadata.name,
            replicaset=rs.metadata.name,
            replicas=replicas,
        )
        await writes.record(
            deployment,
            EventType.NORMAL,
            Reason.SCALING,
            f"Scaled {direction} replica set {rs.metadata.name} to {replicas}",
        )
    return written
