"""What the pod manager reports: each pod's observed status and events, to every watcher.

Role: the publishing half of `PodManager` (nodeagent.pods.manager). `Publisher` keeps the
last status published per pod and the queues of the current watchers; `update` publishes a
worker's pod when its status changed (or it has events someone can take), `removed` says a
pod is gone, and `watch` gives a new watcher every pod's current status first, then each
change as it happens.

Invariants:
- A pod's events go out once, with the first report after they happened (a report is sent
  for new events even when the status did not change); while nobody watches they wait in
  the worker (bounded) for the next watcher.
- Writers never wait for watchers: each watcher has its own unbounded queue.
- A pod is reported REMOVED only if its last published status is of the same uid (a
  replacement of the same name already published keeps its place).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass

from nodeagent.pods.worker import PodWorker
from pilothouse.v1 import objects_pb2


class EventType(enum.Enum):
    UPDATED = "UPDATED"
    REMOVED = "REMOVED"


@dataclass(frozen=True, slots=True)
class PodEvent:
    type: EventType
    pod: objects_pb2.Pod
    # Kubernetes Events about the pod recorded since its previous report (see pods.events).
    events: tuple[objects_pb2.Event, ...] = ()


class Publisher:
    def __init__(self) -> None:
        self._published: dict[str, objects_pb2.Pod] = {}
        self._watchers: set[asyncio.Queue[PodEvent]] = set()

    def update(self, worker: PodWorker) -> None:
        """Publish the worker's pod if its status changed or it has events to hand over."""
        pod = worker.observed()
        if self._published.get(worker.key) == pod and not (worker.events and self._watchers):
            return
        self._published[worker.key] = pod
        self._emit(PodEvent(EventType.UPDATED, pod, self._events_of(worker)))

    def removed(self, worker: PodWorker) -> None:
        """The worker's pod is gone: REMOVED, with its last published status."""
        last = self._published.get(worker.key)
        if last is not None and last.metadata.uid == worker.uid:
            del self._published[worker.key]
            self._emit(PodEvent(EventType.REMOVED, last, self._events_of(worker)))

    async def watch(self, workers: Callable[[], Iterable[PodWorker]]) -> AsyncIterator[PodEvent]:
        """Every running worker's pod first (`workers`), then each change as it happens."""
        queue: asyncio.Queue[PodEvent] = asyncio.Queue()
        self._watchers.add(queue)
        try:
            for worker in list(workers()):
                if not worker.stopping:
                    yield PodEvent(EventType.UPDATED, worker.observed(), self._events_of(worker))
            while True:
                yield await queue.get()
        finally:
            self._watchers.discard(queue)

    def _events_of(self, worker: PodWorker) -> tuple[objects_pb2.Event, ...]:
        """The worker's new events, handed over only when someone watches (else they wait)."""
        return tuple(worker.events.drain()) if self._watchers else ()

    def _emit(self, event: PodEvent) -> None:
        for queue in self._watchers:
            queue.put_nowait(event)
