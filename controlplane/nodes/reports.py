"""What one node's agent reports back, written to the store: pod statuses and pod events.

The node syncer hands every `PodChange` of its agent's `WatchPods` stream to `AgentReports`:
- statuses are coalesced per pod (newest wins) and written by `STATUS_WRITERS` writers with
  `update_status` (compare-and-swap; on a conflict the pod is read again); statuses of pods no
  longer bound to the node, or of an older pod with the same name, are dropped;
- events (probe failures, restarts, pulls) become Event objects about the pod, and the
  node's own (image garbage collection: NODE changes) Event objects about the Node, through
  an `EventWriter`: repeats merge into one object (count, lastTimestamp), each written at most
  once a second; status writes go first (an event waits while statuses wait or are being
  written, at most 2 s).

Invariants:
- An agent speaks only for its own pods: a reported event is kept only when it is about the
  pod it came with, that pod is bound to this node with that uid (or, in the report of the
  pod's removal, is gone from the store), and its source host is this node; a node event
  only when it is about this node.
- The conditions the control plane owns (PodScheduled while True: the scheduler's) are kept
  over the agent's view of them (`merged_status`).
- One pod's status is written by one writer at a time; a failed write is retried after a
  short pause unless a newer status arrived meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog

from controlplane.cache.informer import Informer
from controlplane.events import EventRecorder, EventWriter
from controlplane.nodes.agent import PodChange, PodChangeType
from controlplane.objects import ObjectStore
from controlplane.reconcile.clock import Clock
from controlplane.store import Conflict, NotFound, StoreError
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

STATUS_WRITERS = 8
RETRY_PAUSE = 0.2  # after a failed status write: do not spin on a failing store
_ATTEMPTS = 5
# Conditions the control plane owns; the agent's view of them is not written back.
_CONTROL_PLANE_CONDITIONS = frozenset({"PodScheduled"})


def merged_status(
    stored: objects_pb2.PodStatus, observed: objects_pb2.PodStatus
) -> objects_pb2.PodStatus:
    """The agent's observation, keeping the conditions the control plane owns.

    PodScheduled: the stored one while it is True (the scheduler's, with its reason and
    times); otherwise the agent's (True: the pod is bound to the agent's node), so the first
    status write of a bound pod marks it scheduled and a False from before the binding goes.
    """
    status = objects_pb2.PodStatus()
    status.CopyFrom(observed)
    owned = {
        c.type: c
        for c in stored.conditions
        if c.type in _CONTROL_PLANE_CONDITIONS and c.status == "True"
    }
    if owned:
        kept = [owned.pop(c.type, c) for c in status.conditions]
        kept[:0] = owned.values()
        del status.conditions[:]
        status.conditions.extend(kept)
    return status


class AgentReports:
    """One node's reports (see the module docstring). Run `run()` as a task."""

    def __init__(
        self,
        node: str,
        *,
        objects: ObjectStore,
        pods: Informer,
        events: EventRecorder | None,
        clock: Clock,
    ) -> None:
        self.node = node
        self._objects = objects
        self._pods = pods
        self._clock = clock
        self._pending: dict[tuple[str, str], objects_pb2.Pod] = {}
        self._has_pending = asyncio.Event()
        self._writing: set[tuple[str, str]] = set()  # pods whose status is being written
        self._statuses_done = asyncio.Event()  # set while no status write waits or runs
        self._statuses_done.set()
        self._pod_events = (
            EventWriter(events, clock=clock, yield_to=self._statuses_done.wait) if events else None
        )

    def add(self, change: PodChange) -> None:
        """One change from the agent's WatchPods stream."""
        if change.type is PodChangeType.NODE:
            self._record_node_events(change.events)
            return
        self._record_events(change.pod, change.events, change.type)
        if change.type is not PodChangeType.UPDATED:
            return
        meta = change.pod.metadata
        self._pending[(meta.namespace, meta.name)] = change.pod
        self._has_pending.set()
        self._statuses_done.clear()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for index in range(STATUS_WRITERS):
                group.create_task(self._status_writer(), name=f"nodesync.{self.node}.w{index}")
            if self._pod_events is not None:
                group.create_task(self._pod_events.run(), name=f"nodesync.{self.node}.events")

    # -------------------------------------------------------------------- events

    def _record_node_events(self, events: Iterable[objects_pb2.Event]) -> None:
        """Queue the agent's events about its own node (see the module's invariants)."""
        if self._pod_events is None:
            return
        for event in events:
            ref = event.involved_object
            if (ref.kind, ref.name) != ("Node", self.node) or event.source.host not in (
                "",
                self.node,
            ):
                log.debug("node.event_refused", node=self.node, reason=event.reason)
                continue
            event.source.host = self.node
            self._pod_events.add(event)

    def _record_events(
        self,
        pod: objects_pb2.Pod,
        events: Iterable[objects_pb2.Event],
        change: PodChangeType,
    ) -> None:
        """Queue the agent's events about `pod` for writing (see the module's invariants)."""
        if self._pod_events is None or not events:
            return
        meta = pod.metadata
        current = self._pods.get(meta.namespace, meta.name)
        if current is None:
            ours = change is PodChangeType.REMOVED  # deleted already: its last words
        else:
            ours = current.metadata.uid == meta.uid and current.spec.node_name == self.node
        if not ours:
            return
        for event in events:
            ref = event.involved_object
            if (ref.kind, ref.namespace, ref.name, ref.uid) != (
                "Pod",
                meta.namespace,
                meta.name,
                meta.uid,
            ) or event.source.host not in ("", self.node):
                log.debug("node.event_refused", node=self.node, pod=meta.name, reason=event.reason)
                continue
            event.source.host = self.node
            self._pod_events.add(event)

    # ------------------------------------------------------------------ statuses

    async def _status_writer(self) -> None:
        """Takes the next pod with a status to write as soon as it is free; one pod is
        written by one writer at a time (newest status wins)."""
        while True:
            key = next((k for k in self._pending if k not in self._writing), None)
            if key is None:
                if not self._pending and not self._writing:
                    self._statuses_done.set()
                self._has_pending.clear()
                await self._has_pending.wait()
                continue
            pod = self._pending.pop(key)
            self._writing.add(key)
            failed = False
            try:
                await self._write_status(pod)
            except StoreError as error:
                log.warning(
                    "pod.status_write_failed",
                    node=self.node,
                    pod=f"{pod.metadata.namespace}/{pod.metadata.name}",
                    error=str(error),
                )
                self._pending.setdefault(key, pod)  # unless a newer one arrived
                failed = True
            finally:
                self._writing.discard(key)
                self._has_pending.set()  # the pod may have a newer status waiting
            if failed:
                await self._clock.sleep(RETRY_PAUSE)

    async def _write_status(self, observed: objects_pb2.Pod) -> None:
        meta = observed.metadata
        current = self._pods.get(meta.namespace, meta.name)
        for _ in range(_ATTEMPTS):
            if current is None:
                try:
                    current = await self._objects.get(Kind.POD, meta.namespace, meta.name)
                except NotFound:
                    return
            if current.metadata.uid != meta.uid or current.spec.node_name != self.node:
                return  # another incarnation, or bound elsewhere now: not ours to report
            status = merged_status(current.status, observed.status)
            if status == current.status:
                return
            updated = objects_pb2.Pod()
            updated.CopyFrom(current)
            updated.status.CopyFrom(status)
            try:
                await self._objects.update_status(updated)
                return
            except Conflict:
                current = None
            except NotFound:
                return
