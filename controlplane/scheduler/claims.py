"""The scheduler's view of storage: claims, volumes and classes from their informers, and the
writes that ask for a claim to be provisioned on a node.

`StorageView.resolve(pod)` applies `volumes.resolve` to the informers' objects;
`select(claims, node)` writes `volume.kubernetes.io/selected-node` on WaitForFirstConsumer
claims (the storage controller then provisions them there); `pods_using(claim)` names the
pending pods to look at again when a claim changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from controlplane.cache.informer import Informer
from controlplane.objects import ObjectStore
from controlplane.objects.pods import is_active
from controlplane.scheduler import volumes
from controlplane.store import Conflict, NotFound
from pilothouse.v1 import objects_pb2


class StorageView:
    def __init__(
        self, *, claims: Informer, volumes_informer: Informer, classes: Informer, pods: Informer
    ) -> None:
        self.claims = claims
        self._volumes = volumes_informer
        self._classes = classes
        self._pods = pods

    def resolve(self, pod: objects_pb2.Pod) -> volumes.Blocked | volumes.Resolved:
        if not volumes.claim_volumes(pod):
            return volumes.Resolved()
        return volumes.resolve(
            pod,
            claims=self.claims.get,
            volumes=lambda name: self._volumes.get("", name),
            classes=lambda name: self._classes.get("", name),
            users=self._users,
        )

    def _users(self, namespace: str, claim: str) -> list[objects_pb2.Pod]:
        return [
            p
            for p in self._pods.list(namespace)
            if is_active(p)
            and p.spec.node_name
            and any(c == claim for _, c in volumes.claim_volumes(p))
        ]

    def pods_using(self, claim: objects_pb2.PersistentVolumeClaim) -> Iterable[objects_pb2.Pod]:
        name = claim.metadata.name
        return [
            p
            for p in self._pods.list(claim.metadata.namespace)
            if any(c == name for _, c in volumes.claim_volumes(p))
        ]

    async def select(
        self,
        objects: ObjectStore,
        claims: Iterable[objects_pb2.PersistentVolumeClaim],
        node: str,
    ) -> None:
        for claim in claims:
            if claim.metadata.annotations.get(volumes.SELECTED_NODE) == node:
                continue
            updated = objects_pb2.PersistentVolumeClaim()
            updated.CopyFrom(claim)
            updated.metadata.annotations[volumes.SELECTED_NODE] = node
            with contextlib.suppress(NotFound, Conflict):
                await objects.update(updated)
