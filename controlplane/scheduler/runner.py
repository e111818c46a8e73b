"""The scheduler runnable: binds each unscheduled pod to a node, or says why it cannot.

Invariants:
- Decisions are made one at a time over a snapshot of `cluster.ClusterView`, which the pod and
  node informers keep up to date (nothing is rebuilt per pod). A decided pod is assumed into
  the view before its binding is written, so the next decision (made while the write is in
  flight) counts it: a burst of pods never overfills a node.
- Large clusters are searched from where the previous search stopped (`schedule`'s
  `start`/`searched`), so every node gets its turn when only a sample is scored.
- Binding is a compare-and-swap update of `spec.nodeName` on the pod as the cache saw it,
  written off the deciding path (at most `BINDERS` at once). A failed binding un-assumes the
  pod and the decision is made again on fresh state. The pod then gets a Normal "Scheduled"
  event and condition PodScheduled=True, written after the bind and off the scheduling path
  (at most `AFTER_BIND_WRITERS` at once). The node's first status report carries PodScheduled=
  True (see `nodes.syncer`), so the scheduler writes the condition itself only if, after
  `condition_delay` seconds, the pod still lacks it (a node slow to report, or none).
- A pod no node can take stays Pending with PodScheduled=False, reason Unschedulable and
  Kubernetes' message ("0/3 nodes are available: …"), and a Warning "FailedScheduling" event.
  It is tried again when a node appears or changes in a way that matters (labels, spec,
  allocatable, readiness), when a pod is deleted or finishes (resources freed), and every
  `retry_interval` seconds (a freed resource or a node change looks again at the pods found
  unschedulable only, not at every pod).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Mapping
from typing import Any

import structlog

from controlplane import metrics
from controlplane.cache.informer import Informer, Notice, object_key
from controlplane.events import EventRecorder, EventType
from controlplane.objects import ChangeType, ObjectStore
from controlplane.objects.pods import FINISHED_PHASES, is_active
from controlplane.reconcile import Result
from controlplane.reconcile.clock import Clock, SystemClock
from controlplane.reconcile.controller import Controller
from controlplane.scheduler import volumes
from controlplane.scheduler.claims import StorageView
from controlplane.scheduler.cluster import ClusterView
from controlplane.scheduler.schedule import Placement, Unschedulable, schedule
from controlplane.store import Conflict, NotFound, StoreError
from pilothouse.conditions import set_condition
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

RETRY_INTERVAL = 10.0
WORKERS = 4
BINDERS = 64
AFTER_BIND_WRITERS = 4
CONDITION_DELAY = 1.0


def is_pending(pod: objects_pb2.Pod) -> bool:
    """Waiting for a node: unbound, not finished, not being deleted."""
    return not pod.spec.node_name and is_active(pod)


def _node_matters(old: objects_pb2.Node | None, new: objects_pb2.Node) -> bool:
    """Did a node change in a way that could make a pending pod fit (not a mere heartbeat)?"""
    if old is None:
        return True

    def ready(node: objects_pb2.Node) -> str:
        return next((c.status for c in node.status.conditions if c.type == "Ready"), "")

    return (
        old.metadata.labels != new.metadata.labels
        or old.spec != new.spec
        or old.status.allocatable != new.status.allocatable
        or ready(old) != ready(new)
    )


def _scheduled(pod: objects_pb2.Pod) -> bool:
    return any(c.type == "PodScheduled" and c.status == "True" for c in pod.status.conditions)


class Scheduler:
    """A Runnable. Its informers (pods, nodes) are separate runnables that must also run."""

    name = "scheduler"
    needs_leadership = True  # binds pods: one scheduler at a time (controlplane.leader)

    def __init__(
        self,
        objects: ObjectStore,
        *,
        pods: Informer,
        nodes: Informer,
        events: EventRecorder | None = None,
        clock: Clock | None = None,
        retry_interval: float = RETRY_INTERVAL,
        condition_delay: float = CONDITION_DELAY,
        storage: StorageView | None = None,
    ) -> None:
        """`storage`: claims, volumes and classes, for pods with persistent volumes."""
        self._objects = objects
        self._pods = pods
        self._nodes = nodes
        self._events = events
        self._clock = clock or SystemClock()
        self._retry_interval = retry_interval
        self._condition_delay = condition_delay
        # Nodes and the pods counted on each, assumed bindings included (informer-fed).
        self.cluster = ClusterView()
        self._next_start = 0  # where the next search of a sampled cluster begins
        # Pending pods last found unschedulable: what freed resources or a changed node may
        # let in (not every pod of the cluster: a deletion must not cost a scan of them all).
        self._unschedulable: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._binders = asyncio.Semaphore(BINDERS)
        self._after_bind = asyncio.Semaphore(AFTER_BIND_WRITERS)
        self.controller = Controller(
            "scheduler.queue", self, workers=WORKERS, clock=self._clock, wait_for=(pods, nodes)
        )
        pods.add_handler(self.cluster.on_pod)
        nodes.add_handler(self.cluster.on_node)
        pods.add_handler(self._on_pod)
        # The node informer replays every node to a new handler: one scan of the pending pods
        # for all of them, not one per node (nodes x pods at each start of a term).
        self._replaying: bool | None = True  # None: a node replayed, the scan is owed
        nodes.add_handler(self._on_node)
        owed, self._replaying = self._replaying is None, False
        if owed:
            self._enqueue_pending()
        self._storage = storage
        if storage is not None:
            storage.claims.add_handler(self._on_claim)

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.controller.run(), name="scheduler.queue")
                group.create_task(self._retry_periodically(), name="scheduler.retry")
        finally:
            # Bindings in flight and what follows them end with the term: the next term's
            # scheduler decides again from what the store holds.
            for task in list(self._background):
                task.cancel()

    # ------------------------------------------------------------------ triggers

    def _on_pod(self, notice: Notice) -> None:
        pod = notice.object
        key = notice.key
        if notice.type is not ChangeType.DELETED and is_pending(pod):
            # A status-only change (our own PodScheduled=False) cannot make the pod fit.
            if notice.old is None or notice.old.spec != pod.spec:
                self.controller.enqueue(key)
            return
        freed = notice.type is ChangeType.DELETED or (
            notice.old is not None
            and notice.old.status.phase not in FINISHED_PHASES
            and pod.status.phase in FINISHED_PHASES
        )
        if notice.type is ChangeType.DELETED:
            self._unschedulable.discard(key)
        if freed and pod.spec.node_name:
            self._retry_unschedulable()

    def _on_claim(self, notice: Notice) -> None:
        """A claim bound (or gone, or made): its pending pods are looked at again."""
        if self._storage is None:
            return
        for pod in self._storage.pods_using(notice.object):
            if is_pending(pod):
                self.controller.enqueue(object_key(pod))

    def _on_node(self, notice: Notice) -> None:
        if notice.type is ChangeType.DELETED or _node_matters(notice.old, notice.object):
            if self._replaying is not False:
                self._replaying = None  # scanned once the replay is over (`__init__`)
                return
            self._retry_unschedulable()

    def _retry_unschedulable(self) -> None:
        for key in self._unschedulable:
            self.controller.enqueue(key)

    def _enqueue_pending(self) -> None:
        for pod in self._pods.list():
            if is_pending(pod):
                self.controller.enqueue(object_key(pod))

    async def _retry_periodically(self) -> None:
        while True:
            await self._clock.sleep(self._retry_interval)
            self._enqueue_pending()

    # ------------------------------------------------------------------ one pod

    async def reconcile(self, key: str) -> Result:
        namespace, name = key.split("/", 1)
        pod = self._pods.get(namespace, name)
        if pod is None or not is_pending(pod) or self.cluster.is_assumed(key):
            self._unschedulable.discard(key)
            return Result()
        resolved = self._storage.resolve(pod) if self._storage else volumes.Resolved()
        if isinstance(resolved, volumes.Blocked):
            await self._mark_unschedulable(pod, resolved)
            return Result()
        began, outcome = time.perf_counter(), "error"
        try:
            snapshot = self.cluster.snapshot()
            decision = schedule(
                snapshot, pod, constraints=resolved.constraints, start=self._next_start
            )
            if len(snapshot):
                self._next_start = (self._next_start + decision.searched) % len(snapshot)
            if isinstance(decision, Placement) and not resolved.ready and self._storage:
                # WaitForFirstConsumer: its claims are provisioned on this node first; a claim
                # becoming Bound brings the pod back here (`_on_claim`).
                outcome = "waiting_for_volumes"
                await self._storage.select(self._objects, resolved.unbound, decision.node)
            elif isinstance(decision, Placement):
                outcome = "scheduled"
                await self._bind(pod, decision.node, annotations=resolved.annotations)
            else:
                outcome = "unschedulable"
                await self._mark_unschedulable(pod, decision)
        except Exception:
            outcome = "error"
            raise
        finally:
            metrics.scheduled(outcome, time.perf_counter() - began)
        return Result()

    async def _bind(
        self, pod: objects_pb2.Pod, node: str, *, annotations: Mapping[str, str] | None = None
    ) -> None:
        """Assume the placement now, write it in the background (waiting only for a binder)."""
        self._unschedulable.discard(object_key(pod))
        bound = objects_pb2.Pod()
        bound.CopyFrom(pod)
        bound.spec.node_name = node
        bound.metadata.annotations.update(annotations or {})  # where its volumes are
        # Counted as placed from now on: the next decisions see it (no await before this).
        self.cluster.assume(bound)
        await self._binders.acquire()
        self._spawn(self._write_binding(bound), name="scheduler.bind")

    async def _write_binding(self, bound: objects_pb2.Pod) -> None:
        key, node = object_key(bound), bound.spec.node_name
        try:
            written = await self._objects.update(bound)
        except Exception as error:
            # A conflict: decided on stale state (decided again on the newer pod, or it is
            # gone); else the store failed. Either way the pod holds nothing until then.
            stale = isinstance(error, (Conflict, NotFound))
            (log.debug if stale else log.warning)(
                "pod.bind_failed", pod=bound.metadata.name, node=node, error=str(error)
            )
            self.cluster.forget(key)
            self.controller.queue.add_rate_limited(key)
            return
        finally:
            self._binders.release()
        log.debug(  # the Scheduled event says it; a line per pod at 1,000 pods/s is noise
            "pod.scheduled",
            pod=bound.metadata.name,
            namespace=bound.metadata.namespace,
            node=node,
        )
        await self._bound(written, node)

    async def _bound(self, bound: objects_pb2.Pod, node: str) -> None:
        """What follows a bind: the Scheduled event, then PodScheduled=True unless the node's
        status report has brought it meanwhile (best effort)."""
        meta = bound.metadata
        if self._events is not None:
            async with self._after_bind:
                message = f"Successfully assigned {meta.namespace}/{meta.name} to {node}"
                await self._events.record(bound, EventType.NORMAL, "Scheduled", message)
        await self._clock.sleep(self._condition_delay)
        cached = self._pods.get(meta.namespace, meta.name)
        if cached is None or cached.metadata.uid != meta.uid or cached.spec.node_name != node:
            return  # gone, or another pod of that name: nothing of ours to mark
        if _scheduled(cached):
            return
        async with self._after_bind:
            condition = objects_pb2.Condition(type="PodScheduled", status="True")
            try:
                await self._set_scheduled_condition(cached, condition)
            except StoreError as error:
                log.warning("pod.condition_not_written", pod=meta.name, error=str(error))

    async def _mark_unschedulable(
        self, pod: objects_pb2.Pod, decision: Unschedulable | volumes.Blocked
    ) -> None:
        self._unschedulable.add(object_key(pod))
        message = decision.message
        log.info(
            "pod.unschedulable",
            pod=pod.metadata.name,
            namespace=pod.metadata.namespace,
            reason=message,
        )
        condition = objects_pb2.Condition(
            type="PodScheduled", status="False", reason="Unschedulable", message=message
        )
        await self._set_scheduled_condition(pod, condition)
        self._record(pod, EventType.WARNING, "FailedScheduling", message)

    async def _set_scheduled_condition(
        self, pod: objects_pb2.Pod, condition: objects_pb2.Condition
    ) -> None:
        """Best effort: a status writer racing us (the node syncer) wins; we re-read once."""
        for attempt in range(2):
            updated = objects_pb2.Pod()
            updated.CopyFrom(pod)
            if not updated.status.phase:
                updated.status.phase = "Pending"
            conditions = set_condition(updated.status.conditions, condition, now=self._clock.now())
            del updated.status.conditions[:]
            updated.status.conditions.extend(conditions)
            try:
                await self._objects.update_status(updated)
                return
            except NotFound:
                return
            except Conflict:
                if attempt:
                    return
                pod = await self._objects.get(Kind.POD, pod.metadata.namespace, pod.metadata.name)

    def _record(self, pod: objects_pb2.Pod, type: EventType, reason: str, message: str) -> None:
        if self._events is None:
            return
        self._spawn(self._events.record(pod, type, reason, message), name="scheduler.event")

    def _spawn(self, work: Coroutine[Any, Any, None], *, name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
