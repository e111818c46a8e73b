"""Events: short, human-readable records of what the control plane did to an object and why.

Invariants:
- One Event object per (involved object, type, reason, message), named
  `<object name>.<16 hex digits of a hash of those>`: recording the same thing again bumps its
  `count` and `lastTimestamp` instead of creating another object (Kubernetes' aggregation).
- Recording never fails the caller: store errors are logged and dropped (events are advisory).
- Events of cluster-scoped objects (Nodes) live in the "default" namespace, as in Kubernetes.
- Events reported by someone else (a node agent's, `EventRecorder.merge`) keep their
  involvedObject, source, count and timestamps; they are named the same way (plus the
  involvedObject's fieldPath), so repeats merge into one object. `EventWriter` writes them at
  most once per name per interval, merging what arrives meanwhile, so a probe failing every
  second costs one write per second however many agents report it.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
from collections.abc import Awaitable, Callable

import structlog
from google.protobuf.message import Message

from controlplane.objects import ObjectStore
from controlplane.reconcile.clock import Clock, SystemClock
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


def reported_name(event: objects_pb2.Event) -> str:
    """The name of a reported event: `event_name`'s, with the involvedObject's fieldPath."""
    ref = event.involved_object
    parts = [ref.uid, ref.name, event.type or EventType.NORMAL.value, event.reason, event.message]
    if ref.field_path:
        parts.append(ref.field_path)
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()
    return f"{ref.name}.{digest[:16]}"


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
        event = self._new(obj, name=name, namespace=namespace, type=type, now=now)
        event.reason = reason
        event.message = message

        def repeat(existing: objects_pb2.Event) -> None:
            existing.count += 1
            existing.last_timestamp.FromNanoseconds(int(now * 1e9))

        await self._store(event, repeat=repeat)

    async def merge(self, reported: objects_pb2.Event) -> None:
        """Store an event someone else observed (best effort; see the module docstring).

        A new one is stored as reported (named here); a repeat adds its count to the stored
        one and moves its lastTimestamp.
        """
        try:
            await self._merge(reported)
        except StoreError as error:
            log.warning(
                "event.dropped",
                object=reported.involved_object.name,
                reason=reported.reason,
                error=str(error),
            )

    async def _merge(self, reported: objects_pb2.Event) -> None:
        name = reported_name(reported)
        namespace = reported.involved_object.namespace or DEFAULT_NAMESPACE
        now = int(self._clock.now() * 1e9)
        count = max(reported.count, 1)
        event = objects_pb2.Event()
        event.CopyFrom(reported)
        event.ClearField("metadata")
        event.metadata.name = name
        event.metadata.namespace = namespace
        event.api_version, event.kind = "v1", "Event"
        event.type = event.type or EventType.NORMAL.value
        event.count = count
        event.source.component = event.source.component or self._component
        for stamp in (event.first_timestamp, event.last_timestamp):
            if not stamp.seconds and not stamp.nanos:
                stamp.FromNanoseconds(now)

        def repeat(existing: objects_pb2.Event) -> None:
            existing.count += count
            last = reported.last_timestamp if reported.HasField("last_timestamp") else None
            if last is None or last.ToNanoseconds() <= 0:
                existing.last_timestamp.FromNanoseconds(now)
            elif last.ToNanoseconds() > existing.last_timestamp.ToNanoseconds():
                existing.last_timestamp.CopyFrom(last)

        await self._store(event, repeat=repeat)

    async def _store(
        self, event: objects_pb2.Event, *, repeat: Callable[[objects_pb2.Event], None]
    ) -> None:
        """Create `event`, or, when one of its name exists, apply `repeat` to the stored one."""
        namespace, name = event.metadata.namespace, event.metadata.name
        create = True  # most events are new: try the create first, one write and no read
        for _ in range(_ATTEMPTS):
            if create:
                try:
                    await self._objects.create(event)
                    return
                except AlreadyExists:
                    create = False
            try:
                existing = await self._objects.get(Kind.EVENT, namespace, name)
            except NotFound:
                create = True
                continue
            repeat(existing)
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


def _widen(waiting: objects_pb2.Event, more: objects_pb2.Event) -> None:
    """Fold `more` (the same event, reported again) into `waiting`."""
    waiting.count = max(waiting.count, 1) + max(more.count, 1)
    if more.last_timestamp.ToNanoseconds() > waiting.last_timestamp.ToNanoseconds():
        waiting.last_timestamp.CopyFrom(more.last_timestamp)
    first, current = more.first_timestamp.ToNanoseconds(), waiting.first_timestamp.ToNanoseconds()
    if first and (not current or first < current):
        waiting.first_timestamp.CopyFrom(more.first_timestamp)


class EventWriter:
    """Writes reported events through `EventRecorder.merge`, each name at most once per
    `interval` seconds. A Runnable-style part: `add()` never blocks; `run()` writes until
    cancelled.

    Invariants: what arrives for a name while it waits is merged into the waiting event
    (counts add, timestamps widen), so waiting loses nothing; at most `capacity` names wait
    at once, beyond that new names are dropped (and logged), since events are advisory; and
    at most `max_rate` writes happen per second in all (the kubelet's eventRecordQPS).
    Events are advisory and the writes they compete with are not: with `yield_to` (returns
    once the more urgent writes are done), each write waits for it, but never more than
    `max_hold` seconds, so events are late under a burst of pod status changes, never lost.
    """

    def __init__(
        self,
        recorder: EventRecorder,
        *,
        clock: Clock | None = None,
        interval: float = 1.0,
        capacity: int = 1000,
        max_rate: int = 50,
        yield_to: Callable[[], Awaitable[None]] | None = None,
        max_hold: float = 2.0,
    ) -> None:
        self._recorder = recorder
        self._yield_to = yield_to
        self._max_hold = max_hold
        self._clock = clock or SystemClock()
        self._interval = interval
        self._capacity = capacity
        self._waiting: dict[str, objects_pb2.Event] = {}
        self._written: dict[str, float] = {}  # name -> when it was last written
        self._added = asyncio.Event()
        self._max_rate = max(max_rate, 1)
        self._window = float("-inf")  # when the current one-second budget began
        self._spent = 0  # writes made in it
        self.dropped = 0

    def add(self, event: objects_pb2.Event) -> None:
        name = reported_name(event)
        waiting = self._waiting.get(name)
        if waiting is not None:
            _widen(waiting, event)
            return
        if len(self._waiting) >= self._capacity:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("event.backlog_full", dropped=self.dropped, waiting=len(self._waiting))
            return
        copy = objects_pb2.Event()
        copy.CopyFrom(event)
        self._waiting[name] = copy
        self._added.set()

    async def run(self) -> None:
        while True:
            self._added.clear()
            now = self._clock.now()
            self._written = {n: t for n, t in self._written.items() if now - t < self._interval}
            due = [n for n in self._waiting if n not in self._written]
            for name in due:
                await self._budget()
                await self._yield()
                event = self._waiting.pop(name)  # with whatever merged into it meanwhile
                self._written[name] = self._clock.now()
                await self._recorder.merge(event)
            # A name added while a write was in flight has never been written: it is due now.
            now = self._clock.now()
            later = [
                self._written[n] + self._interval if n in self._written else now
                for n in self._waiting
            ]
            await self._until_added(min(later) - now if later else None)

    async def _yield(self) -> None:
        """Let the more urgent writes go first (at most `max_hold` seconds)."""
        if self._yield_to is None:
            return
        urgent = asyncio.ensure_future(self._yield_to())
        if urgent.done():
            return
        hold = asyncio.ensure_future(self._clock.sleep(self._max_hold))
        try:
            await asyncio.wait({urgent, hold}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            urgent.cancel()
            hold.cancel()

    async def _budget(self) -> None:
        """Wait, if need be, until one more write fits in `max_rate` per second."""
        now = self._clock.now()
        if now - self._window >= 1.0:
            self._window, self._spent = now, 0
        elif self._spent >= self._max_rate:
            await self._clock.sleep(self._window + 1.0 - now)
            self._window, self._spent = self._clock.now(), 0
        self._spent += 1

    async def _until_added(self, seconds: float | None) -> None:
        """Until something is added, or `seconds` passed (None: no limit)."""
        if self._added.is_set():
            return
        added = asyncio.ensure_future(self._added.wait())
        tasks = {added}
        if seconds is not None:
            tasks.add(asyncio.ensure_future(self._clock.sleep(max(seconds, 0.0))))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
