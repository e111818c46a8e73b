"""What the node-sync unit tests share: `FakeAgent`, an in-process gRPC NodeAgent servicer
that records every push and streams the statuses a test reports; `Plane`, the control plane's
node-sync side over an in-memory store, run in the test's loop; `make_pod`, a pod as the
scheduler leaves it (built by tests.factories); `eventually`, from tests.unit.waiting.

Invariants: every FakeAgent serves on a free loopback port and `agents()` stops all it started;
a Plane's tasks are all cancelled and awaited when its `async with` ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc

from controlplane.cache.informer import Informer
from controlplane.events import EventRecorder
from controlplane.nodes.agent import Connect
from controlplane.nodes.registry import NodeRegistry
from controlplane.nodes.syncmanager import NodeSyncManager
from controlplane.objects import ObjectStore
from controlplane.store.memory import MemoryStore
from pilothouse.kinds import Kind
from pilothouse.v1 import agent_pb2, agent_pb2_grpc, objects_pb2
from tests import factories
from tests.unit.waiting import eventually

__all__ = ["FakeAgent", "Plane", "agents", "eventually", "make_pod"]


class FakeAgent(agent_pb2_grpc.NodeAgentServicer):
    """Records every SyncPods; streams whatever statuses the test reports; serves Logs."""

    def __init__(self) -> None:
        self.pushes: list[list[str]] = []
        self.received = 0  # SyncPods calls that arrived, answered or (hang) not
        self.abandoned = 0  # hanging SyncPods calls the caller gave up on (its deadline)
        self.hang = False
        self.fences: list[bool] = []  # each answered push: was it fenced (SyncPods.fence)?
        self.fence_gate: asyncio.Event | None = None  # fenced pushes wait for it when set
        self._watchers: set[asyncio.Queue[agent_pb2.PodStatusEvent]] = set()
        self.server: grpc.aio.Server | None = None
        self.address = ""

    async def start(self) -> FakeAgent:
        self.server = grpc.aio.server()
        agent_pb2_grpc.add_NodeAgentServicer_to_server(self, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.address = f"127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)
            self.server = None

    @property
    def last(self) -> list[str] | None:
        return self.pushes[-1] if self.pushes else None

    def report(self, pod: objects_pb2.Pod, phase: str) -> None:
        observed = objects_pb2.Pod()
        observed.metadata.CopyFrom(pod.metadata)
        observed.status.phase = phase
        observed.status.conditions.add(type="PodScheduled", status="True")
        observed.status.conditions.add(
            type="Ready", status="True" if phase == "Running" else "False"
        )
        event = agent_pb2.PodStatusEvent(type=agent_pb2.PodStatusEvent.UPDATED, pod=observed)
        for queue in self._watchers:
            queue.put_nowait(event)

    async def SyncPods(
        self, request: agent_pb2.SyncPodsRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.SyncPodsResponse:
        self.received += 1
        if self.hang:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.abandoned += 1
                raise
        if request.fence and self.fence_gate is not None:
            await self.fence_gate.wait()
        self.fences.append(request.fence)
        self.pushes.append(
            sorted(f"{p.metadata.namespace}/{p.metadata.name}" for p in request.pods)
        )
        return agent_pb2.SyncPodsResponse()

    async def WatchPods(
        self, request: agent_pb2.WatchPodsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_pb2.PodStatusEvent]:
        queue: asyncio.Queue[agent_pb2.PodStatusEvent] = asyncio.Queue()
        self._watchers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._watchers.discard(queue)

    async def Logs(
        self, request: agent_pb2.LogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_pb2.LogsChunk]:
        if request.pod != "web-1":
            await context.abort(grpc.StatusCode.NOT_FOUND, f'pod "{request.pod}" is not here')
        yield agent_pb2.LogsChunk(data=b"hello from web-1\n")


def make_pod(name: str, node: str = "") -> objects_pb2.Pod:
    """A pod as the scheduler leaves it: bound to `node` (PodScheduled) and still Pending."""
    pod = factories.pod(
        name=name, node=node, phase="Pending", containers=[factories.container(image="busybox")]
    )
    pod.status.conditions.add(type="PodScheduled", status="True", reason="Bound")
    return pod


class Plane:
    """MemoryStore + informers + NodeRegistry + NodeSyncManager, running in this loop; with
    an EventRecorder of `events_component` if given, agents reached through `connect` if given."""

    def __init__(
        self,
        *,
        resync_interval: float = 30.0,
        events_component: str | None = None,
        connect: Connect | None = None,
        max_backoff: float = 0.5,
    ) -> None:
        self.objects = ObjectStore(MemoryStore())
        self.pods = Informer(self.objects, Kind.POD)
        self.nodes = Informer(self.objects, Kind.NODE)
        self.registry = NodeRegistry(self.objects)
        events = (
            EventRecorder(self.objects, component=events_component) if events_component else None
        )
        self.sync = NodeSyncManager(
            self.objects,
            nodes=self.nodes,
            pods=self.pods,
            events=events,
            connect=connect,
            resync_interval=resync_interval,
            rpc_timeout=1.0,
            max_backoff=max_backoff,
        )
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Plane:
        for part in (self.pods, self.nodes, self.sync):
            self.tasks.append(asyncio.create_task(part.run(), name=part.name))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def register(self, name: str, agent: FakeAgent, instance: str = "i-1") -> None:
        await self.registry.register(
            factories.node_report(name=name, address=agent.address), instance_id=instance
        )

    async def node(self, name: str) -> objects_pb2.Node:
        return await self.objects.get(Kind.NODE, "", name)

    async def pod(self, name: str) -> objects_pb2.Pod:
        return await self.objects.get(Kind.POD, "default", name)


@contextlib.asynccontextmanager
async def agents(count: int) -> AsyncIterator[list[FakeAgent]]:
    started = [await FakeAgent().start() for _ in range(count)]
    try:
        yield started
    finally:
        for agent in started:
            await agent.stop()
