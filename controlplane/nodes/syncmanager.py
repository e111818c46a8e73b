"""The node sync runnable: one `NodeSyncer` per Node, started and stopped as Nodes come and go.

Role: `NodeSyncManager` watches the Node and Pod informers, starts a `NodeSyncer`
(controlplane.nodes.syncer) for each live Node, pokes the syncers whose desired pods,
Services, peers or configs changed, and stops a syncer when its Node goes. The sessions
with the agents, the pushes and the Ready condition are the syncer's.

Invariants: at most one syncer per Node name at a time; a syncer that fails unexpectedly is
logged and started again (`_guarded`); stopping the manager stops every syncer.
"""

from __future__ import annotations

import asyncio

import structlog

from controlplane.cache.informer import Informer, Notice
from controlplane.events import EventRecorder
from controlplane.nodes import conditions
from controlplane.nodes.agent import (
    DEFAULT_TIMEOUT,
    Connect,
    connector,
)
from controlplane.nodes.configs import ConfigView
from controlplane.nodes.peers import PeersView
from controlplane.nodes.podindex import FreshPods, PodsByNode, status_only
from controlplane.nodes.services import Drains, ServicesView
from controlplane.nodes.syncer import (
    MAX_BACKOFF,
    RESYNC_INTERVAL,
    NodeSyncer,
)
from controlplane.objects import ChangeType, ObjectStore
from controlplane.reconcile.clock import Clock, SystemClock

log = structlog.get_logger("controlplane.nodes.syncer")

MAX_RESYNCS_PER_S = 20.0  # periodic pushes a second, all nodes together


class NodeSyncManager:
    """A Runnable: one NodeSyncer per Node, started and stopped as Nodes come and go."""

    name = "nodesync"
    needs_leadership = True  # pushes desired pods to agents: the leader's alone

    def __init__(
        self,
        objects: ObjectStore,
        *,
        nodes: Informer,
        pods: Informer,
        events: EventRecorder | None = None,
        clock: Clock | None = None,
        connect: Connect | None = None,
        resync_interval: float = RESYNC_INTERVAL,
        rpc_timeout: float = DEFAULT_TIMEOUT,
        max_backoff: float = MAX_BACKOFF,
        configs: ConfigView | None = None,
        services: ServicesView | None = None,
        peers: PeersView | None = None,
    ) -> None:
        self._objects = objects
        # The node list changed (joined, left, moved): every syncer pushes it.
        self._peers = peers
        if peers is not None:
            peers.on_change = self._poke_all
        # The cluster's Services changed: every syncer pushes them; an agent programmed them:
        # the syncers of nodes with pods being deleted look whether those have drained.
        self._services = services
        self._drains = Drains()
        if services is not None:
            services.on_change = self._poke_all
        self._nodes = nodes
        self._pods = pods
        # A ConfigMap or Secret changed: every syncer looks again (each pushes only if the
        # set its own pods use changed).
        self._configs = configs
        if configs is not None:
            configs.on_change = self._poke_all
        self._events = events
        self._clock = clock or SystemClock()
        self._connect = connect or connector(timeout=rpc_timeout)
        self._resync_interval = resync_interval
        self._max_backoff = max_backoff
        self._syncers: dict[str, tuple[NodeSyncer, asyncio.Task[None]]] = {}
        self._running = False
        self._bound = PodsByNode(pods)  # each node's pods, kept from the informer's notices
        self._fresh = FreshPods(objects)  # each node's pods from the store, listed once for all
        self._live: set[str] = set()  # registered nodes not marked lost, kept likewise
        nodes.add_handler(self._on_node)
        pods.add_handler(self._on_pod)

    async def run(self) -> None:
        await self._nodes.wait_synced()
        await self._pods.wait_synced()
        if self._configs is not None:
            await self._configs.wait_synced()
        if self._services is not None:
            await self._services.wait_synced()
        if self._peers is not None:
            await self._peers.wait_synced()
        self._running = True
        try:
            for node in self._nodes.list():
                self._start(node.metadata.name)
            log.info("nodesync.started", nodes=len(self._syncers))
            await asyncio.Event().wait()
        finally:
            self._running = False
            tasks = [task for _, task in self._syncers.values()]
            self._syncers.clear()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _on_node(self, notice: Notice) -> None:
        name = notice.object.metadata.name
        if notice.type is ChangeType.DELETED or conditions.is_lost(notice.object):
            self._live.discard(name)
        else:
            self._live.add(name)
        if not self._running:
            return
        if notice.type is ChangeType.DELETED:
            self._stop(name)
        elif name in self._syncers:
            self._syncers[name][0].poke()
        else:
            self._start(name)

    def _on_pod(self, notice: Notice) -> None:
        pod, old = notice.object, notice.old
        if status_only(notice):
            return  # a status write: the desired sets did not change
        for name in {pod.spec.node_name, old.spec.node_name if old is not None else ""}:
            entry = self._syncers.get(name) if name else None
            if entry is not None:
                entry[0].poke()

    def _poke_all(self) -> None:
        if self._running:
            for syncer, _ in self._syncers.values():
                syncer.poke()

    def _start(self, name: str) -> None:
        syncer = NodeSyncer(
            name,
            objects=self._objects,
            nodes=self._nodes,
            pods=self._pods,
            bound=self._bound.on,
            bound_version=self._bound.version,
            fresh=self._fresh,
            connect=self._connect,
            configs=self._configs,
            events=self._events,
            clock=self._clock,
            resync_interval=self._resync,
            max_backoff=self._max_backoff,
            services=self._services,
            drains=self._drains,
            live_nodes=self._live_nodes,
            on_programmed=self._on_programmed,
            peers=self._peers,
        )
        task = asyncio.create_task(self._guarded(syncer), name=f"nodesync.{name}")
        self._syncers[name] = (syncer, task)
        log.debug("nodesync.node_added", node=name)

    def _resync(self) -> float:
        """Each syncer's resync interval: the configured one, longer in a large cluster."""
        return max(self._resync_interval, len(self._syncers) / MAX_RESYNCS_PER_S)

    def _live_nodes(self) -> set[str]:
        """Nodes whose data plane may route: registered and not lost (the manager's own set:
        read it, do not keep it)."""
        return self._live

    def _on_programmed(self, node: str) -> None:
        """A node's data plane took a new state: pods being deleted may have drained."""
        for name in self._bound.deleting():
            entry = self._syncers.get(name)
            if entry is not None:
                entry[0].poke()

    def _stop(self, name: str) -> None:
        self._drains.forget(name)
        entry = self._syncers.pop(name, None)
        if entry is not None:
            entry[1].cancel()
            log.debug("nodesync.node_removed", node=name)

    async def _guarded(self, syncer: NodeSyncer) -> None:
        """A syncer must never die for good: log a bug and start it again."""
        while True:
            try:
                await syncer.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.error("nodesync.syncer_failed", node=syncer.node, exc_info=True)
            await self._clock.sleep(self._max_backoff)
