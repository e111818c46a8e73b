"""The node-lifecycle controller: a node whose heartbeats stop is marked NotReady, then emptied.

Rules (Kubernetes' node controller, with Pilothouse's short defaults):
- A node is *silent* when its agent has not been heard from for `grace_period` seconds
  (default 3 s). "Heard from" is the newest of: the registry's in-memory heartbeat, the stored
  `lastHeartbeatTime`, and this controller's start plus `startup_allowance` (a restarted
  control plane gives every node a full grace period, and the time its agent needs to connect
  again, instead of condemning it for the time it was down itself).
- A silent node gets Ready=Unknown, reason NodeStatusUnknown, and a Warning NodeNotReady event.
- Once a node has been Unknown for `eviction_timeout` seconds (default 2 s; counted from the
  transition, or from this controller's start if that is later), every pod bound to it that is
  not finished or already being deleted is deleted (conditionally on its resourceVersion), so
  the deployment controller creates replacements and the scheduler puts them on healthy nodes.
  The node gets a DeletingAllPods event and each pod a NodeControllerEviction event.
- Mass failure: when the cluster has at least `min_nodes_for_protection` nodes (3) and more than
  `unhealthy_threshold` (55 %) of them look dead at once, it is likelier that this control plane
  is cut off than that most machines died: nodes are still marked NotReady, but no pod is
  evicted until enough nodes are back (logged once, `nodelifecycle.evictions_halted`).
- A control plane that could not look is not the nodes' fault: when a pass comes more than
  `STALL_S` seconds later than it was due (an event loop busy starting a large cluster, a
  paused process), the heartbeats that arrived meanwhile may not be processed yet, so every
  node gets a full grace period (and eviction timeout) from that pass on, as after a start
  (logged, `nodelifecycle.stalled`); at most once per grace period and eviction timeout, so
  a control plane that is always late still marks a silent node, only later.
- Mass silence is suspected the same way: when more than `unhealthy_threshold` of at least
  `min_nodes_for_protection` nodes fall silent together, a control plane too busy to read
  their heartbeats in time (1,000 nodes' beats queued behind its own work) is likelier than
  that many machines failing in the same seconds, so they get one more grace period before
  any is marked (logged, `nodelifecycle.mass_silence`; at most once per grace period and
  eviction timeout, so nodes that really died are marked one grace period later).
- After a start, agents come back in a wave (a thousand reconnecting to a control plane whose
  one event loop also starts everything else: seconds apart, tens of seconds in all). While
  that wave goes on (another node heard for the first time since the start within the last
  grace period), every node counts as heard at the latest arrival; while more than
  `STRAGGLERS` of the nodes were not heard yet, *now* (many machines dying while the control
  plane was down is less likely than agents still queued behind its start). The wave ends
  when all were heard, when none arrives for a grace period with at most `STRAGGLERS` missing,
  or after `MAX_RECONNECT_WAVE` s (`nodelifecycle.reconnected`): a node dead meanwhile is
  marked a grace period after the last arrival (a minute at most).
- The agent coming back is not handled here: its heartbeat moves Ready to False/Fencing
  (`controlplane.nodes.registry`) and its first push back to True (`controlplane.nodes.syncer`).
Timing: the loop sleeps exactly until the next deadline (at most `max_period`), so a node is
marked within a few milliseconds of its grace period ending. Every write is compare-and-swap.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import structlog

from controlplane.cache.informer import NODE, Informer, pod_node
from controlplane.events import EventRecorder, EventType
from controlplane.nodes import conditions
from controlplane.nodes.conditions import ReadyReason, ReadyStatus
from controlplane.objects import ObjectStore
from controlplane.objects.owners import controller_of
from controlplane.objects.pods import is_active
from controlplane.reconcile.clock import Clock, SystemClock
from controlplane.store import Conflict, NotFound, StoreError
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

DEFAULT_GRACE_PERIOD = 3.0
DEFAULT_EVICTION_TIMEOUT = 2.0
UNHEALTHY_THRESHOLD = 0.55
MIN_NODES_FOR_PROTECTION = 3
MAX_PERIOD = 1.0
STALL_S = 1.0  # a pass this much later than due: the control plane stalled, not the nodes
MAX_RECONNECT_WAVE = 60.0  # s after a start that agents' arrivals may hold marking back
STRAGGLERS = 0.1  # of the nodes: more not heard since the start means agents still queued
_MIN_SLEEP = 0.005
_ATTEMPTS = 5


class Heartbeats(Protocol):
    """Where in-memory heartbeat times come from (`controlplane.nodes.registry.NodeRegistry`)."""

    def last_seen(self, name: str) -> float | None: ...


class NodeLifecycleController:
    """A Runnable. Its informers (nodes, pods) are separate runnables that must also run."""

    name = "controller.nodelifecycle"
    needs_leadership = True

    def __init__(
        self,
        objects: ObjectStore,
        *,
        nodes: Informer,
        pods: Informer,
        heartbeats: Heartbeats,
        events: EventRecorder | None = None,
        clock: Clock | None = None,
        grace_period: float = DEFAULT_GRACE_PERIOD,
        eviction_timeout: float = DEFAULT_EVICTION_TIMEOUT,
        unhealthy_threshold: float = UNHEALTHY_THRESHOLD,
        min_nodes_for_protection: int = MIN_NODES_FOR_PROTECTION,
        max_period: float = MAX_PERIOD,
        startup_allowance: float = 0.0,
    ) -> None:
        self._objects = objects
        self._nodes = nodes
        self._pods = pods
        pods.add_index(NODE, pod_node)  # a lost node's pods, without reading every pod
        self._heartbeats = heartbeats
        self._events = events
        self._clock = clock or SystemClock()
        self.grace_period = grace_period
        self.eviction_timeout = eviction_timeout
        self._threshold = unhealthy_threshold
        self._min_nodes = min_nodes_for_protection
        self._max_period = max_period
        self._startup_allowance = startup_allowance
        self._started: float | None = None
        self._wave: _Wave | None = None  # agents coming back after the start (None: over)
        self.evictions_halted = False

    async def run(self) -> None:
        await self._nodes.wait_synced()
        await self._pods.wait_synced()
        self._start()
        log.info(
            "nodelifecycle.started", grace=self.grace_period, allowance=self._startup_allowance
        )
        while True:
            try:
                wait = await self.check()
            except StoreError as error:
                log.warning("nodelifecycle.check_failed", error=str(error))
                wait = self._max_period
            wait = max(min(wait, self._max_period), _MIN_SLEEP)
            due = self._clock.now() + wait
            await self._clock.sleep(wait)
            now = self._clock.now()
            # At most once per grace period and eviction timeout: a control plane that is
            # always late still marks a silent node, that much later.
            if now - due > STALL_S and self._quiet(now):
                log.warning("nodelifecycle.stalled", late=round(now - due, 2))
                self._started = now  # every node: a full grace period again

    def _start(self) -> None:
        """Every node counts as heard at the start, plus the time agents need to reconnect."""
        now = self._clock.now()
        self._started = now + self._startup_allowance
        self._wave = _Wave(began=now, last_arrival=now)

    def _follow_wave(self, nodes: list[objects_pb2.Node], now: float) -> None:
        """While agents are still coming back after the start, every node counts as heard at
        the latest arrival (see the module docstring)."""
        wave = self._wave
        if wave is None or self._started is None:
            return
        heard = sum(
            1 for n in nodes if (self._heartbeats.last_seen(n.metadata.name) or 0.0) >= wave.began
        )
        if heard > wave.heard:
            wave.heard, wave.last_arrival = heard, now
        stragglers = len(nodes) - heard <= max(self._min_nodes, STRAGGLERS * len(nodes))
        if (
            heard >= len(nodes)
            or (stragglers and now - wave.last_arrival >= self.grace_period)
            or now - wave.began >= MAX_RECONNECT_WAVE
        ):
            log.info(
                "nodelifecycle.reconnected",
                heard=heard,
                nodes=len(nodes),
                seconds=round(wave.last_arrival - wave.began, 2),
            )
            self._wave = None
            return
        self._started = max(self._started, wave.last_arrival if stragglers else now)

    # ---------------------------------------------------------------- one pass

    def last_heard(self, node: objects_pb2.Node) -> float:
        started = self._started if self._started is not None else self._clock.now()
        return max(
            self._heartbeats.last_seen(node.metadata.name) or 0.0,
            conditions.heartbeat_time(node) or 0.0,
            started,
        )

    async def check(self) -> float:
        """Mark silent nodes, evict what is due; returns the seconds until the next deadline."""
        if self._started is None:
            self._start()
        now = self._clock.now()
        nodes = self._nodes.list()
        self._follow_wave(nodes, now)
        silences = [(node, now - self.last_heard(node)) for node in nodes]
        next_due = self._max_period
        if self._mass_silence(silences, now):
            return self.grace_period
        dead: list[objects_pb2.Node] = []
        for node, silent in silences:
            if silent < self.grace_period:
                # Alive (a lost node that speaks again is fenced by the registry and syncer).
                next_due = min(next_due, self.grace_period - silent)
            elif conditions.is_lost(node):
                dead.append(node)
            else:
                marked = await self._mark_lost(node, silent=silent)
                if marked is not None:
                    dead.append(marked)
        self._protect(total=len(nodes), dead=len(dead))
        if self.evictions_halted:
            return next_due
        for node in dead:
            if not conditions.is_lost(node):
                continue
            since = max(conditions.transition_time(node) or now, self._started)
            left = since + self.eviction_timeout - now
            if left > 0:
                next_due = min(next_due, left)
            else:
                await self._evict(node, silent=now - self.last_heard(node))
        return next_due

    def _mass_silence(self, silences: list[tuple[objects_pb2.Node, float]], now: float) -> bool:
        """Whether most nodes (each with how long it has been silent) just fell silent
        together: then every node gets one more grace period (see the module docstring), and
        this returns True."""
        total = len(silences)
        if total < self._min_nodes or not self._quiet(now):
            return False
        silent = sum(1 for n, s in silences if s >= self.grace_period and not conditions.is_lost(n))
        if silent <= self._threshold * total:
            return False
        log.warning(
            "nodelifecycle.mass_silence",
            silent=silent,
            nodes=total,
            message=f"{silent} of {total} nodes fell silent together: one more grace "
            "period before marking them (the control plane may be behind on heartbeats)",
        )
        self._started = now
        return True

    def _quiet(self, now: float) -> bool:
        """No full grace period was given in the last grace period and eviction timeout."""
        return self._started is None or now - self._started > self.grace_period + (
            self.eviction_timeout
        )

    def _protect(self, *, total: int, dead: int) -> None:
        halt = total >= self._min_nodes and dead > self._threshold * total
        if halt and not self.evictions_halted:
            log.error(
                "nodelifecycle.evictions_halted",
                dead=dead,
                nodes=total,
                message=f"{dead} of {total} nodes stopped sending heartbeats at once: the "
                "control plane itself is probably cut off; no pods are evicted until more "
                "nodes are back",
            )
        elif not halt and self.evictions_halted:
            log.warning("nodelifecycle.evictions_resumed", dead=dead, nodes=total)
        self.evictions_halted = halt

    async def _mark_lost(
        self, cached: objects_pb2.Node, *, silent: float
    ) -> objects_pb2.Node | None:
        name = cached.metadata.name
        for _ in range(_ATTEMPTS):
            try:
                node = await self._objects.get(Kind.NODE, "", name)
            except NotFound:
                return None
            now = self._clock.now()
            silent = now - self.last_heard(node)
            if silent < self.grace_period:
                return None  # it spoke meanwhile
            if conditions.is_lost(node):
                return node
            pods = len(self._bound_pods(name))
            conditions.set_ready(
                node,
                status=ReadyStatus.UNKNOWN,
                reason=ReadyReason.STATUS_UNKNOWN,
                message=f"Agent stopped posting node status (no heartbeat for {silent:.1f} s).",
                now=now,
            )
            try:
                node = await self._objects.update_status(node)
            except Conflict:
                continue
            log.warning("node.not_ready", node=name, silent=round(silent, 2), pods=pods)
            if self._events is not None:
                await self._events.record(
                    node,
                    EventType.WARNING,
                    "NodeNotReady",
                    f'node "{name}" is not Ready (no heartbeat for {silent:.1f} s); its {pods} '
                    f"pods will be moved in {self.eviction_timeout:g} s",
                )
            return node
        return None

    async def _pod_lost(self, pod: objects_pb2.Pod, *, node: str) -> None:
        """A pod no controller replaces is Failed with reason NodeLost (Kubernetes' words),
        kept Terminating until its node confirms it stopped."""
        meta = pod.metadata
        for _ in range(_ATTEMPTS):
            try:
                current = await self._objects.get(Kind.POD, meta.namespace, meta.name)
            except NotFound:
                return
            if current.metadata.uid != meta.uid:
                return
            current.status.phase = "Failed"
            current.status.reason = "NodeLost"
            current.status.message = (
                f"Node {node} which was running pod {meta.name} is unresponsive"
            )
            try:
                await self._objects.update_status(current)
                return
            except Conflict:
                continue
            except NotFound:
                return

    def _bound_pods(self, node: str) -> list[objects_pb2.Pod]:
        return [pod for pod in self._pods.indexed(NODE, node) if is_active(pod)]

    async def _evict(self, node: objects_pb2.Node, *, silent: float) -> None:
        # DaemonSet pods tolerate an unreachable node (Kubernetes gives them that toleration):
        # they stay bound to it, and run again there when it comes back.
        pods = [p for p in self._bound_pods(node.metadata.name) if not _daemon(p)]
        if not pods:
            return
        name = node.metadata.name
        try:  # the cache may lag: a node that came back meanwhile is being fenced, not emptied
            if not conditions.is_lost(await self._objects.get(Kind.NODE, "", name)):
                return
        except NotFound:
            return
        log.warning("node.evicting", node=name, pods=len(pods), silent=round(silent, 2))
        if self._events is not None:
            await self._events.record(
                node,
                EventType.WARNING,
                "DeletingAllPods",
                f'Deleting {len(pods)} pods from node "{name}": no heartbeat for {silent:.1f} s',
            )
        await asyncio.gather(*(self._delete(pod, node=name) for pod in pods))

    async def _delete(self, pod: objects_pb2.Pod, *, node: str) -> None:
        meta = pod.metadata
        for _ in range(_ATTEMPTS):
            try:
                await self._objects.delete(
                    Kind.POD, meta.namespace, meta.name, resource_version=meta.resource_version
                )
            except NotFound:
                return
            except Conflict:
                try:
                    pod = await self._objects.get(Kind.POD, meta.namespace, meta.name)
                except NotFound:
                    return
                meta = pod.metadata
                if pod.spec.node_name != node:
                    return
                continue
            log.info("pod.evicted", pod=f"{meta.namespace}/{meta.name}", node=node)
            if controller_of(pod) is None:
                await self._pod_lost(pod, node=node)
            if self._events is not None:
                await self._events.record(
                    pod,
                    EventType.WARNING,
                    "NodeControllerEviction",
                    f"Marking for deletion Pod {meta.namespace}/{meta.name} from Node {node}",
                )
            return


@dataclass(slots=True)
class _Wave:
    """Agents coming back after a start: since when, how many heard, the latest arrival."""

    began: float
    last_arrival: float
    heard: int = 0


def _daemon(pod: objects_pb2.Pod) -> bool:
    ref = controller_of(pod)
    return ref is not None and ref.kind == "DaemonSet"
