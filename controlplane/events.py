"""Events: short, human-readable records of what the control plane did to an object and why.

Invariants:
- One Event object per (involved object, type, reason, message), named
  `<object name>.<16 hex digits of a hash of those>`: recording the same thing again bumps its
  `count` and `lastTimestamp` instead of creating another object (Kubernetes' aggregation).
- Recording never fails the caller: store errors are logged and dropped (events are advisory).
- Events of cluster-scoped objects (Nodes) live in the "default" namespace, as in Kubernetes.
"""

from __future__ import annotations

import enum
import hashlib

import structlog
from google.protobuf.message import Message

from controlplane.controllers.clock import Clock, SystemClock
from controlplane.objects import ObjectStore
from controlplane.store import AlreadyExists, Conflict, NotFound, StoreError
from pilothouse.kinds import DEFAULT_NAMESPACE, Kind, of_message
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

_ATTEMPTS = 4


class EventType(enum.Enum):
    NORMAL = "Normal"
    WARNING = "Warning"


def event_name(obj: Message, *, type: EventType, reason: str, message: str) -> str:
    meta = obj.metadata
    digest = hashlib.sha256(
        "\x00".join((meta.uid, meta.name, type.value, reason, message)).encode()
    ).hexdigest()
    return f"{meta.name}.{digest[:16]}"


class EventRecorder:
    def __init__(self, objects: ObjectStore, *, component: str, clock: Clock | None = None) -> None:
        self._objects = objects
        self._component = component
        self._clock = clock or SystemClock()

    async def record(
        self, obj: Message, type: EventType, reason: str | enum.Enum, message: str
    ) -> None:
        """Record that `reason: message` happened to `obj` (best effort)."""
        reason_text = reason.value if isinstance(reason, enum.Enum) else reason
        try:
            await self._record(obj, type, reason_text, message)
        except StoreError as error:
            log.warning(
                "event.dropped",
                object=obj.metadata.name,
                reason=reason_text,
                error=str(error),
            )

    async def _record(self, obj: Message, type: EventType, reason: str, message: str) -> None:
        name = event_name(obj, type=type, reason=reason, message=message)
        namespace = obj.metadata.namespace or DEFAULT_NAMESPACE
        now = self._clock.now()
        for _ in range(_ATTEMPTS):
            try:
                existing = await self._objects.get(Kind.EVENT, namespace, name)
            except NotFound:
                event = self._new(obj, name=name, namespace=namespace, type=type, now=now)
                event.reason = reason
                event.message = message
                try:
                    await self._objects.create(event)
                    return
                except AlreadyExists:
                    continue
            existing.count += 1
            existing.last_timestamp.FromNanoseconds(int(now * 1e9))
            try:
                await self._objects.update(existing)
                return
            except (Conflict, NotFound):
                continue
        log.debug("event.contended", event=name)

    def _new(
        self, obj: Message, *, name: str, namespace: str, type: EventType, now: float
    ) -> objects_pb2.Event:
        event = objects_pb2.Event()
        event.metadata.name = name
        event.metadata.namespace = namespace
        involved = event.involved_object
        involved.kind = of_message(obj).info.kind
        involved.api_version = of_message(obj).info.api_version
        involved.name = obj.metadata.name
        involved.namespace = obj.metadata.namespace
        involved.uid = obj.metadata.uid
        involved.resource_version = obj.metadata.resource_version
        event.source.component = self._component
        event.type = type.value
        event.count = 1
        event.first_timestamp.FromNanoseconds(int(now * 1e9))
        event.last_timestamp.FromNanoseconds(int(now * 1e9))
        return event
