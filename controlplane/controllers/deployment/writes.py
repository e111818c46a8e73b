"""The deployment controller's own writes: what it wrote last, and the events it records.

Informers may be a step behind the store. `DeploymentWrites` keeps every object the deployment
controller wrote itself and hands it out instead of an older cached copy, so a pass never acts
on state it has already changed (a stale cache can never make a rollout exceed maxSurge or drop
below maxUnavailable).

Invariants: a kept object is only preferred while it is newer (a higher resourceVersion) than
the cached one; once the cache has caught up, or the object is gone, it is forgotten. Nothing
kept here is needed for correctness after a restart: it only spares acting on stale reads.
Event reasons are an `enum.Enum` (`Reason`); events are recorded only when a recorder is given.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from google.protobuf.message import Message

from controlplane.events import EventRecorder, EventType
from controlplane.objects import ObjectStore
from pilothouse.v1 import objects_pb2


class Reason(enum.Enum):
    SCALING = "ScalingReplicaSet"
    DIGEST_UNRESOLVED = "ImageDigestUnresolved"
    DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    ROLLBACK = "DeploymentRollback"
    NO_ROLLBACK_TARGET = "DeploymentRollbackSkipped"


class DeploymentWrites:
    """The store, as the deployment controller writes it: objects kept, events recorded."""

    def __init__(self, objects: ObjectStore, *, events: EventRecorder | None = None) -> None:
        self.objects = objects
        self._events = events
        self._written: dict[tuple[str, str, str], Message] = {}

    def fresh(self, obj: Message) -> Message:
        """`obj` from a cache, or the newer version this controller wrote itself."""
        key = _key_of(obj)
        mine = self._written.get(key)
        if mine is None:
            return obj
        if int(mine.metadata.resource_version or 0) > int(obj.metadata.resource_version or 0):
            return mine
        del self._written[key]
        return obj

    def remember(self, obj: Message) -> Message:
        self._written[_key_of(obj)] = obj
        return obj

    def forget(self, kind: str, namespace: str, name: str) -> None:
        self._written.pop((kind, namespace, name), None)

    def forget_deployment(self, namespace: str, name: str) -> None:
        """The Deployment is gone from the cache: its kept version is no longer needed."""
        for k in [k for k in self._written if k[1] == namespace]:
            if k[0] == "Deployment" and k[2] == name:
                del self._written[k]

    def forget_replicasets(
        self, namespace: str, *, cached: Callable[[str, str], Message | None]
    ) -> None:
        """Kept ReplicaSets of `namespace` that the cache no longer has are forgotten."""
        for k in [k for k in self._written if k[0] == "ReplicaSet" and k[1] == namespace]:
            if cached(namespace, k[2]) is None:
                del self._written[k]  # deleted (or not cached yet: creating again finds it)

    async def record(
        self, deployment: objects_pb2.Deployment, type_: EventType, reason: Reason, message: str
    ) -> None:
        if self._events is not None:
            await self._events.record(deployment, type_, reason, message)


def _key_of(obj: Message) -> tuple[str, str, str]:
    return (obj.kind or type(obj).__name__, obj.metadata.namespace, obj.metadata.name)
