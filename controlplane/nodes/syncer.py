"""Node sync: each node's agent runs exactly the pods bound to it, and their status comes back.

One `NodeSyncer` per Node (started and stopped by the `NodeSyncManager` runnable as Nodes come
and go, `controlplane.nodes.syncmanager`) holds a session with that node's agent:
- it pushes the node's whole desired pod set with `SyncPods` when the set changes (the
  manager's index of the pod informer), and every `resync_interval` seconds anyway (the
  manager's: at most `syncmanager.MAX_RESYNCS_PER_S` in all, 50 s at 1,000 nodes);
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
- SERVICES: a push that follows a change of the cluster's Services or EndpointSlices, the
  first of a session, one made while Fencing, every `FULL_EVERY`-th resync and the resync
  after one the agent could not program carry them (`services.ServicesState`); the agent
  answers once its data plane routes by them, and `services.Drains` remembers it. A pod
  being deleted stays in its node's set while it drains (a live node still routes new
  connections to it), so its containers are stopped only once no node chooses it; the
  agent's report of it gone then removes it (`deletions.finalize`).
- PEERS: the node list (every node's address and pod CIDR, `peers.PeersState`; the agent
  routes to the other nodes' pods by it) goes whole on the same occasions, and after a change
  as its changes since the version this session's agent holds once it is longer than
  `PEER_CHANGES_ABOVE` (else whole); changes the agent could not take are followed at once by
  the whole list.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

import structlog

from controlplane import metrics
from controlplane.cache.informer import Informer
from controlplane.events import EventRecorder
from controlplane.nodes import conditions, deletions
from controlplane.nodes.agent import (
    AgentCallFailed,
    AgentClient,
    Connect,
    PodChangeType,
    Pushed,
)
from controlplane.nodes.configs import ConfigView, NodeConfig, UsedRefs
from controlplane.nodes.peers import PeerChanges, PeersState, PeersView
from controlplane.nodes.podindex import FreshPods, desired_pods
from controlplane.nodes.ready import mark_ready
from controlplane.nodes.reports import AgentReports
from controlplane.nodes.services import Drains, ServicesState, ServicesView
from controlplane.objects import ObjectStore
from controlplane.reconcile.clock import Clock, SystemClock
from controlplane.store import StoreError
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

RESYNC_INTERVAL = 10.0
INITIAL_BACKOFF = 0.2
MAX_BACKOFF = 5.0
FENCE_BACKOFF = 1.0  # s: the longest wait before a failed push to a Fencing node is retried
FENCE_LINGER = 2.0  # s: pushes stay fenced this long after a node's fencing push succeeded
FULL_EVERY = 6  # every 6th resync carries the whole Services state and node list
PEER_CHANGES_ABOVE = 50  # a node list longer than this goes out as its changes


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
        bound: Callable[[str], Iterable[objects_pb2.Pod]] | None = None,
        bound_version: Callable[[str], int | None] | None = None,
        fresh: FreshPods | None = None,
        configs: ConfigView | None = None,
        events: EventRecorder | None = None,
        clock: Clock | None = None,
        resync_interval: float | Callable[[], float] = RESYNC_INTERVAL,
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
        # The pods bound to a node, from the informer (the manager's index; a filter of the
        # whole informer without one).
        self._bound = bound or (lambda name: (p for p in pods.list() if p.spec.node_name == name))
        # With the index: a number that moves when the node's desired set may have. A push
        # whose number has not moved reuses its last desired set (no copies, no comparison).
        self._bound_version = bound_version
        self._fresh = fresh or FreshPods(objects)  # the store's answer, shared by the nodes
        self._connect = connect
        self._configs = configs  # the ConfigMaps and Secrets a push carries with its pods
        self._events = events
        self._clock = clock or SystemClock()
        # A callable: the manager's, longer in a large cluster (see MAX_RESYNCS_PER_S).
        self._resync = resync_interval if callable(resync_interval) else lambda: resync_interval
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
                await self._wait(self._resync())
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
        made: tuple[int | None, list[objects_pb2.Pod], UsedRefs] | None = None  # the last set
        next_resync = next_full = 0.0
        pushed_services = 0  # the version of the Services state the agent took (0: none)
        pushed_peers = 0  # the version of the node list the agent holds from us (0: none)
        while True:
            if self._identity() != identity:
                raise _EndpointChanged
            node = self._fencing()
            fencing = node is not None
            # The Fencing episode this push answers: the condition's transition time.
            episode = conditions.transition_time(node) if node is not None else None
            draining = None if fencing else self._draining()  # a lost node's pods end now
            now = self._clock.now()
            resync = last is None or fencing or now >= next_resync
            version = self._bound_version(self.node) if self._bound_version else None
            if resync or made is None or version is None or made[0] != version:
                # First and fencing pushes read the store: exactly the pods bound now (FENCING).
                fresh = last is None or fencing
                pods = await self._fresh.on(self.node) if fresh else self._bound(self.node)
                desired = desired_pods(pods, self.node, draining=draining)
                made = (version, desired, NodeConfig.refs_of(desired))
            _, desired, refs = made  # else nothing bound here changed since it was made
            config = NodeConfig.of(refs, self._configs)
            full = last is None or fencing or now >= next_full  # whole sets, whatever changed
            state = self._services.current() if self._services is not None else None
            services = state if state and (full or state.version != pushed_services) else None
            peers, peer_changes = self._peers_push(full=full, pushed=pushed_peers)
            if (
                desired != last
                or config != last_config
                or services
                or peers
                or peer_changes
                or resync
            ):
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
                        peer_changes=peer_changes,
                    )
                except Exception:
                    metrics.pushed(ok=False)
                    raise
                finally:
                    self._unfenced_call = False
                metrics.pushed(ok=True)
                if full:
                    next_full = now + self._resync() * FULL_EVERY
                if services is not None:
                    pushed_services = services.version
                    if not self._programmed(services, rejected):
                        next_full = 0.0  # whole again at the next resync
                if peers is not None or peer_changes is not None:
                    pushed_peers = (peers or peer_changes).version  # type: ignore[union-attr]
                    if not rejected.routes_programmed:
                        log.warning(
                            "node.routes_not_programmed",
                            node=self.node,
                            error=rejected.routes_error,
                        )
                        next_full = 0.0
                        if peer_changes is not None:  # not taken: the whole list at once
                            pushed_peers = 0
                            self._poked.set()
                if not self._pushed:
                    self._pushed = True
                    if self._failures:
                        log.info("node.sync_restored", node=self.node, endpoint=identity[0])
                        self._failures = 0
                last, last_config = desired, config
                next_resync = now + self._resync()
                log.debug("node.pushed", node=self.node, pods=len(desired))
                for pod, why in rejected.items():
                    log.warning("node.pod_rejected", node=self.node, pod=pod, reason=why)
                if fencing:
                    self._fenced_until = self._clock.now() + FENCE_LINGER
                    await mark_ready(
                        self._objects,
                        self.node,
                        instance=identity[1],
                        episode=episode,
                        events=self._events,
                        clock=self._clock,
                    )
            wake = min(next_resync, self._next_drain(desired))
            await self._wait(max(wake - self._clock.now(), 0.0))

    def _peers_push(
        self, *, full: bool, pushed: int
    ) -> tuple[PeersState | None, PeerChanges | None]:
        """The node list to push: whole, as its changes since `pushed` (a large list this
        agent holds), or nothing (unchanged, and no whole push due)."""
        listed = self._peers.current() if self._peers is not None else None
        if listed is None or (not full and listed.version == pushed):
            return None, None
        if pushed and not full and len(listed.peers) > PEER_CHANGES_ABOVE:
            changes = self._peers.changes(pushed)  # type: ignore[union-attr]
            if changes is not None:
                return None, changes
        return listed, None

    def _draining(self) -> Callable[[objects_pb2.Pod], bool]:
        """Whether a pod being deleted must keep running: a live node may still choose it."""
        now = self._clock.now()
        return lambda pod: not self._drains.drained(pod, live_nodes=self._live_nodes(), now=now)

    def _programmed(self, state: ServicesState, answer: Pushed) -> bool:
        if answer.services_programmed:
            self._drains.programmed(self.node, state)
            self._on_programmed(self.node)
        elif answer.services_error:
            log.warning("node.services_not_programmed", node=self.node, error=answer.services_error)
        return answer.services_programmed

    def _next_drain(self, pushed: Iterable[objects_pb2.Pod]) -> float:
        """When a draining pod of `pushed` is to be looked at again (settled, or its deadline)."""
        ends = [
            self._drains.next_look(p) for p in pushed if p.metadata.HasField("deletion_timestamp")
        ]
        return min(ends, default=float("inf"))

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
