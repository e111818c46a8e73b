"""The end of a graceful pod deletion: the agent reports the pod gone, the pod is removed.

`finalize(objects, pods, node=..., removed=pod)` removes a pod being deleted (deletionTimestamp)
that the node's agent reports REMOVED, conditional on its uid, its node and its
resourceVersion, so a newer pod of the same name (or one bound elsewhere) is never touched.
A report that never comes (a lost node, a broken stream) is the pod GC's to clean up
(`controllers.podgc`).
"""

from __future__ import annotations

import structlog

from controlplane.cache.informer import Informer
from controlplane.objects import ObjectStore
from controlplane.store import Conflict, NotFound, StoreError
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

_ATTEMPTS = 5


async def finalize(
    objects: ObjectStore, pods: Informer, *, node: str, removed: objects_pb2.Pod
) -> bool:
    """Remove the pod the agent of `node` reports gone, if it is being deleted; True if so."""
    meta = removed.metadata
    current = pods.get(meta.namespace, meta.name)
    for _ in range(_ATTEMPTS):
        try:
            if current is None:
                current = await objects.get(Kind.POD, meta.namespace, meta.name)
            if (
                current.metadata.uid != meta.uid
                or current.spec.node_name != node
                or not current.metadata.HasField("deletion_timestamp")
            ):
                return False
            await objects.delete(
                Kind.POD,
                meta.namespace,
                meta.name,
                resource_version=current.metadata.resource_version,
                grace_period_seconds=0,
            )
        except NotFound:
            return False
        except Conflict:
            current = None
            continue
        except StoreError as error:
            log.warning("pod.finalize_failed", node=node, pod=meta.name, error=str(error))
            return False
        log.info("pod.deleted", node=node, pod=f"{meta.namespace}/{meta.name}")
        return True
    return False
