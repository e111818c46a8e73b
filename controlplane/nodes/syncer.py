"""Node sync: each node's agent runs exactly the pods bound to it, and their status comes back.

One `NodeSyncer` per Node (started and stopped by the `NodeSyncManager` runnable as Nodes come
and go, `controlplane.nodes.syncmanager`) holds a session with that node's agent:
- it pushes the node's whole desired pod set with `SyncPods` when the set changes (pod
  informer), and every `resync_interval` seconds anyway (heals an agent that lost its state);
- it consumes `WatchPods` and hands every change to `reports.AgentReports`, which writes the
  pods' observed statuses and the events the agent reports with them;
- any failed call ends the session; a new one starts after a capped exponential backoff, or at
  once when the node's endpoint or agent instance changes (the agent re-registered).

Invariants:
- A slow or dead agent delays only its own syncer: one task per node, a deadline on every call.
- FENCING: the first push of every session, and every push made while the node shows
  Ready=False/Fencing, carries the desired set read from the store itself (not the possibly
  lagging informer), so it lists exactly the pods bound to the node at that moment; the agent
  stops everything else. A push made while Fencing (and for `FENCE_LINGER` seconds after: an
  eviction decided just before the node came back may land just after) is a *fenced* push:
  the agent ends the pods that left its set at once (SIGKILL, their replacements may run
  elsewhere already) and answers only once they have stopped. Only after a fenced push
  succeeded does the syncer set Ready=True (reason AgentReady), and only if the node is still
  in the same Fencing episode (same agent instance, same transition time). Until then the
  scheduler places nothing there.
- A node that comes back (it enters Fencing) is pushed to at once, even while a session's
  back-off is running or an unfenced push of an older view is still in flight (a new session
  on a new connection), and a failed push while Fencing is retried within `FENCE_BACKOFF`
  seconds, not after the periodic resync.
- Pushed pods carry no status and no resourceVersion: a status write is not a change to push.
- SERVICES: a push that follows a change of the cluster's Services or EndpointSlices (and
  the first of a session, and every resync) carries them (`services.ServicesState`); the
  agent answers once its data plane routes by them, and `services.Drains` remembers it. A pod
  being deleted stays in its node's set while it drains (a live node still routes new
  connections to it), so its containers are stopped only once no node chooses it; the
  agent's report of it gone then removes it (`deletions.finalize`).
- PEERS: a push that follows a change of the node list (a node joined, left, or changed its
  address or pod CIDR), and the first of a session and every resync, carries every node's
  address and pod CIDR (`peers.PeersState`); the agent routes to the other nodes' pods by it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

import structlog

from controlplane import metrics
from controlplane.cache.informer import Informer
from controlplane.events import EventRecorder, EventType
from controlplane.nodes import conditions, deletions
from controlplane.nodes.agent import (
    AgentCallFailed,
    AgentClient,
    Connect,
    PodChangeType,
)
from controlplane.nodes.conditions import ReadyReason, ReadyStatus
from controlplane.nodes.configs import ConfigView, NodeConfig
from controlplane.nodes.peers import PeersView
from controlplane.nodes.reports import AgentReports
from controlplane.nodes.services import Drains, ServicesState, ServicesView
from controlplane.objects import ObjectStore
from controlplane.reconcile.clock import Clock, SystemClock
from controlplane.store import Conflict, NotFound, StoreError
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

RESYNC_INTERVAL = 10.0
INITIAL_BACKOFF = 0.2
MAX_BACKOFF = 5.0
FENCE_BACKOFF = 1.0  # s: the longest wait before a failed push to a Fencing node is retried
FENCE_LINGER = 2.0  # s: pushes stay fenced this long after a node's fencing push succeeded
_ATTEMPTS = 5
READY_MESSAGE = "agent is posting ready status; its pods are in sync"


def desired_pods(
    pods: Iterable[objects_pb2.Pod],
    node: str,
    *,
    draining: Callable[[objects_pb2.Pod], bool] | None = None,
) -> list[objects_pb2.Pod]:
    """The node's desired pod set as pushed: bound to it, not being deleted (unless it is
    `draining`: deleted, but a node's data plane may still choose it), no status."""
    out = []
    for pod in pods:
        if pod.spec.node_name != node:
            continue
        if pod.metadata.HasField("deletion_timestamp") and not (draining and draining(pod)):
            continue
        copy = objects_pb2.Pod()
        copy.CopyFrom(pod)
        copy.ClearField("status")
        copy.metadata.resource_version = ""
        out.append(copy)
    out.sort(key=lambda p: (p.metadata.namespace, p.metadata.name))
    return out


class _EndpointChanged(Exception):
    """The node now has another endpoint or agent instance: start a new session at once."""


class _Returned(Exception):
    """The node came back while a push of an older view was in flight: start a new session
    at once (that call may hang on a connection from before the node was lost)."""


class NodeSyncer:
    """Keeps one node's agent in step (see the module docstring). Run `run()` as a task."""

    def __init__(
        self,
        node: str,
        *,
        objects: ObjectStore,
        nodes: Informer,
        pods: Informer,
        connect: Connect,
        configs: ConfigView | None = None,
        events: EventRecorder | None = None,
        clock: Clock | None = None,
        resync_interval: float = RESYNC_INTERVAL,
        max_backoff: float = MAX_BACKOFF,
        services: ServicesView | None = None,
        drains: Drains | None = None,
        live_nodes: Callable[[], Iterable[str]] = tuple,
        on_programmed: Callable[[str], None] = lambda node: None,
        peers: PeersView | None = None,
    ) -> None:
        self.node = node
        self._peers = peers  # every node's address and pod CIDR, pushed to every agent
        self._services = services  # the cluster's Services, pushed to every agent
        self._drains = drains or Drains()
        self._live_nodes = live_nodes
        self._on_programmed = on_programmed
        self._objects = objects
        self._nodes = nodes
        self._pods = pods
        self._connect = connect
        self._configs = configs  # the ConfigMaps and Secrets a push carries with its pods
        self._events = events
        self._clock = clock or SystemClock()
        self._resync_interval = resync_interval
        self._max_backoff = max_backoff
        self._poked = asyncio.Event()
        self._changed = asyncio.Event()  # poked, for `_watch_return`
        self._unfenced_call = False  # a push without `fence` is in flight
        self._pushed = False  # the current session has pushed successfully
        self._fenced_until = 0.0  # pushes are fenced until then (see FENCE_LINGER)
        self._failures = 0  # failed sessions in a row
        self._reports = AgentReports(
            node, objects=objects, pods=pods, events=events, clock=self._clock
        )

    def poke(self) -> None:
        """Something about the node or its pods changed: look again soon."""
        self._poked.set()
        self._changed.set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._reports.run(), name=f"nodesync.{self.node}.reports")
            group.create_task(self._sessions(), name=f"nodesync.{self.node}.push")

    # ------------------------------------------------------------------ sessions

    def _identity(self) -> tuple[str, str] | None:
        node = self._nodes.get("", self.node)
        if node is None:
            return None
        address = conditions.endpoint(node)
        return (address, conditions.instance_of(node)) if address else None

    async def _sessions(self) -> None:
        backoff = INITIAL_BACKOFF
        while True:
            identity = self._identity()
            if identity is None:
                await self._wait(self._resync_interval)
                continue
            self._pushed = False
            try:
                await self._session(identity)
            except (_EndpointChanged, _Returned):
                backoff, self._failures = INITIAL_BACKOFF, 0
                continue
            except (AgentCallFailed, StoreError) as error:
                if self._pushed:  # the session worked for a while: a new streak begins
                    backoff, self._failures = INITIAL_BACKOFF, 0
                self._failures += 1
                message = error.message if isinstance(error, AgentCallFailed) else str(error)
                # The first failure of a streak is a warning; the retries that follow are not.
                (log.warning if self._failures == 1 else log.debug)(
                    "node.sync_failed",
                    node=self.node,
                    endpoint=identity[0],
                    error=message,
                    retry_in=round(backoff, 2),
                    failures=self._failures,
                )
            await self._backoff(backoff, identity)
            backoff = min(backoff * 2, self._max_backoff)

    def _fencing(self) -> objects_pb2.Node | None:
        """The node, if it shows Ready=False/Fencing (its agent is back from being lost)."""
        node = self._nodes.get("", self.node)
        return node if node is not None and conditions.is_fencing(node) else None

    async def _backoff(self, seconds: float, identity: tuple[str, str]) -> None:
        """Sleep `seconds` (at most FENCE_BACKOFF while the node is Fencing), cut short when
        the node's endpoint or instance changes or when the node comes back (enters Fencing)."""
        fencing = self._fencing() is not None
        if fencing:
            seconds = min(seconds, FENCE_BACKOFF)
        deadline = self._clock.now() + seconds
        while (left := deadline - self._clock.now()) > 0:
            await self._wait(left)
            if self._identity() != identity or (not fencing and self._fencing() is not None):
                return

    async def _session(self, identity: tuple[str, str]) -> None:
        client = self._connect(identity[0], self.node)
        self._unfenced_call = False
        try:
            await _first_of(
                self._push(client, identity), self._consume(client), self._watch_return()
            )
        finally:
            await client.close()

    async def _watch_return(self) -> None:
        """Raise `_Returned` when the node enters Fencing while an unfenced push is in flight:
        the fenced push goes out on a new connection at once, not after that call's deadline
        (a link that was cut leaves its connection in TCP's retransmission back-off)."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            if self._unfenced_call and self._fencing() is not None:
                log.info("node.returned_during_push", node=self.node)
                raise _Returned

    async def _push(self, client: AgentClient, identity: tuple[str, str]) -> None:
        last: list[objects_pb2.Pod] | None = None
        last_config: NodeConfig | None = None
        next_resync = 0.0
        pushed_services = 0  # the version of the Services state this session pushed
        pushed_peers = 0  # the version of the node list this session pushed
        while True:
            if self._identity() != identity:
                raise _EndpointChanged
            node = self._fencing()
            fencing = node is not None
            # The Fencing episode this push answers: the condition's transition time.
            episode = conditions.transition_time(node) if node is not None else None
            draining = None if fencing else self._draining()  # a lost node's pods end now
            if last is None or fencing:
                # Linearizable read: exactly the pods bound to this node now (see FENCING).
                listing = await self._objects.list(Kind.POD)
                desired = desired_pods(listing.items, self.node, draining=draining)
            else:
                desired = desired_pods(self._pods.list(), self.node, draining=draining)
            config = NodeConfig.for_pods(desired, self._configs)
            now = self._clock.now()
            state = self._services.current() if self._services is not None else None
            resync = last is None or fencing or now >= next_resync
            services = state if state and (resync or state.version != pushed_services) else None
            listed = self._peers.current() if self._peers is not None else None
            peers = listed if listed and (resync or listed.version != pushed_peers) else None
            if desired != last or config != last_config or services or peers or resync:
                fence = fencing or now < self._fenced_until
                self._unfenced_call = not fence
                try:
                    rejected = await client.sync_pods(
                        desired,
                        fence=fence,
                        config_maps=config.config_maps,
                        secrets=config.secrets,
                        services=services,
                        peers=peers,
                    )
                except Exception:
                    metrics.pushed(ok=False)
                    raise
                finally:
                    self._unfenced_call = False
                metrics.pushed(ok=True)
                if services is not None:
                    pushed_services = services.version
                    self._programmed(
                        services, rejected.services_programmed, rejected.services_error
                    )
                if peers is not None:
                    pushed_peers = peers.version
                    if not rejected.routes_programmed:
                        log.warning(
                            "node.routes_not_programmed",
                            node=self.node,
                            error=rejected.routes_error,
                        )
                if not self._pushed:
                    self._pushed = True
                    if self._failures:
                        log.info("node.sync_restored", node=self.node, endpoint=identity[0])
                        self._failures = 0
                last, last_config = desired, config
                next_resync = now + self._resync_interval
                log.debug("node.pushed", node=self.node, pods=len(desired))
                for pod, why in rejected.items():
                    log.warning("node.pod_rejected", node=self.node, pod=pod, reason=why)
                if fencing:
                    self._fenced_until = self._clock.now() + FENCE_LINGER
                    await self._mark_ready(identity[1], episode=episode)
            wake = min(next_resync, self._next_drain(desired))
            await self._wait(max(wake - self._clock.now(), 0.0))

    def _draining(self) -> Callable[[objects_pb2.Pod], bool]:
        """Whether a pod being deleted must keep running: a live node may still choose it."""
        live, now = tuple(self._live_nodes()), self._clock.now()
        return lambda pod: not self._drains.drained(pod, live_nodes=live, now=now)

    def _programmed(self, state: ServicesState, programmed: bool, error: str) -> None:
        if programmed:
            self._drains.programmed(self.node, state)
            self._on_programmed(self.node)
        elif error:
            log.warning("node.services_not_programmed", node=self.node, error=error)

    def _next_drain(self, pushed: Iterable[objects_pb2.Pod]) -> float:
        """When a draining pod of `pushed` is to be looked at again (settled, or its deadline)."""
        ends = [
            self._drains.next_look(p) for p in pushed if p.metadata.HasField("deletion_timestamp")
        ]
        return min(ends, default=float("inf"))

    async def _mark_ready(self, instance: str, *, episode: float | None) -> None:
        """Ready=True, if the node is still in the Fencing episode the push answered."""
        for _ in range(_ATTEMPTS):
            try:
                node = await self._objects.get(Kind.NODE, "", self.node)
            except NotFound:
                return
            if (
                conditions.instance_of(node) != instance
                or not conditions.is_fencing(node)
                or conditions.transition_time(node) != episode
            ):
                return
            conditions.set_ready(
                node,
                status=ReadyStatus.TRUE,
                reason=ReadyReason.AGENT_READY,
                message=READY_MESSAGE,
                now=self._clock.now(),
            )
            try:
                node = await self._objects.update_status(node)
            except Conflict:
                continue
            log.info("node.ready", node=self.node, instance=instance)
            if self._events is not None:
                message = f"Node {self.node} status is now: NodeReady"
                await self._events.record(node, EventType.NORMAL, "NodeReady", message)
            return

    async def _wait(self, seconds: float) -> None:
        """Until poked or `seconds` passed, whichever comes first."""
        if not self._poked.is_set():
            poked = asyncio.ensure_future(self._poked.wait())
            slept = asyncio.ensure_future(self._clock.sleep(seconds))
            try:
                await asyncio.wait({poked, slept}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                poked.cancel()
                slept.cancel()
        self._poked.clear()

    async def _consume(self, client: AgentClient) -> None:
        async for change in client.watch_pods():
            self._reports.add(change)
            if change.type is PodChangeType.REMOVED:
                await deletions.finalize(
                    self._objects, self._pods, node=self.node, removed=change.pod
                )


async def _first_of(*coroutines: Awaitable[None]) -> None:
    """Run all; when the first ends, cancel the others and re-raise its error if any."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()
