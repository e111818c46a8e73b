"""Node sync with Services, over the memory store and in-process fake agents: every agent gets
the cluster's Services and EndpointSlices, and a deleted pod keeps running on its node until
every live node has programmed a state that no longer routes to it (or its drain time is up);
once its agent reports it gone, it is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc

from controlplane.cache.informer import Informer
from controlplane.nodes.registry import NodeRegistry
from controlplane.nodes.services import ClusterNetwork, ServicesView
from controlplane.nodes.syncmanager import NodeSyncManager
from controlplane.objects import ObjectStore
from controlplane.objects.endpoints import SERVICE_NAME_LABEL
from controlplane.store import NotFound
from controlplane.store.memory import MemoryStore
from pilothouse.kinds import Kind
from pilothouse.v1 import agent_pb2, objects_pb2
from tests import factories
from tests.unit.nodesync_support import FakeAgent, make_pod
from tests.unit.waiting import eventually


class ServicesAgent(FakeAgent):
    """A FakeAgent that answers Services: programmed (unless `stall`) and remembered."""

    def __init__(self) -> None:
        super().__init__()
        self.ready: frozenset[str] | None = None  # the addresses its last state routes to
        self.stall = False  # answer pushes with services, but never say they are programmed

    async def SyncPods(
        self, request: agent_pb2.SyncPodsRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.SyncPodsResponse:
        await super().SyncPods(request, context)
        if not request.services_included or self.stall:
            return agent_pb2.SyncPodsResponse(services_programmed=not request.services_included)
        self.ready = frozenset(
            ep.addresses[0]
            for s in request.endpoint_slices
            for ep in s.endpoints
            if ep.conditions.ready
        )
        return agent_pb2.SyncPodsResponse(services_programmed=True)


class Plane:
    def __init__(self) -> None:
        self.objects = ObjectStore(MemoryStore(), graceful_pods=True)
        self.informers = {
            kind: Informer(self.objects, kind)
            for kind in (Kind.NODE, Kind.POD, Kind.SERVICE, Kind.ENDPOINTSLICE)
        }
        self.registry = NodeRegistry(self.objects)
        view = ServicesView(
            services=self.informers[Kind.SERVICE],
            slices=self.informers[Kind.ENDPOINTSLICE],
            network=ClusterNetwork(service_cidr="10.96.0.0/16", cluster_cidr="10.244.0.0/16"),
        )
        self.sync = NodeSyncManager(
            self.objects,
            nodes=self.informers[Kind.NODE],
            pods=self.informers[Kind.POD],
            services=view,
            resync_interval=30.0,
            rpc_timeout=1.0,
            max_backoff=0.5,
        )
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for part in (*self.informers.values(), self.sync):
            self.tasks.append(asyncio.create_task(part.run()))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def register(self, name: str, agent: FakeAgent) -> None:
        await self.registry.register(
            factories.node_report(name=name, address=agent.address), instance_id=f"i-{name}"
        )

    async def set_slice(self, *ready: str) -> None:
        """The web Service's one slice, with these addresses ready."""
        eps = objects_pb2.EndpointSlice(address_type="IPv4")
        eps.metadata.name, eps.metadata.namespace = "web-abc", "default"
        eps.metadata.labels[SERVICE_NAME_LABEL] = "web"
        eps.ports.add(name="http", port=8080, protocol="TCP")
        for address in ready:
            eps.endpoints.add(addresses=[address]).conditions.ready = True
        with contextlib.suppress(NotFound):
            await self.objects.delete(Kind.ENDPOINTSLICE, "default", "web-abc")
        await self.objects.create(eps)


@contextlib.asynccontextmanager
async def cluster() -> AsyncIterator[tuple[Plane, ServicesAgent, ServicesAgent]]:
    a, b = ServicesAgent(), ServicesAgent()
    await a.start()
    await b.start()
    plane = Plane()
    svc = objects_pb2.Service()
    svc.metadata.name, svc.metadata.namespace = "web", "default"
    svc.spec.cluster_ip = "10.96.0.10"
    svc.spec.ports.add(name="http", port=80)
    await plane.objects.create(svc)
    await plane.start()
    try:
        await plane.register("n1", a)
        await plane.register("n2", b)
        yield plane, a, b
    finally:
        await plane.stop()
        await a.stop()
        await b.stop()


async def running(plane: Plane, name: str, node: str, ip: str) -> objects_pb2.Pod:
    pod = make_pod(name, node)
    pod.spec.termination_grace_period_seconds = 30
    pod.status.pod_ip = ip
    pod.status.phase = "Running"
    return await plane.objects.create(pod)


async def test_every_agent_gets_the_services() -> None:
    async with cluster() as (plane, a, b):
        await plane.set_slice("10.244.1.2")
        await eventually(
            lambda: a.ready == b.ready == frozenset({"10.244.1.2"}),
            "both agents programmed the web Service's ready endpoint",
        )


async def test_a_deleted_pod_runs_until_no_node_routes_to_it_then_goes() -> None:
    async with cluster() as (plane, a, b):
        await running(plane, "web-1", "n1", "10.244.1.2")
        await plane.set_slice("10.244.1.2")
        await eventually(lambda: a.last == ["default/web-1"], "n1 runs web-1")
        await eventually(lambda: b.ready == frozenset({"10.244.1.2"}), "n2 routes to web-1")
        b.stall = True  # n2 will not say it stopped routing to web-1
        await plane.objects.delete(Kind.POD, "default", "web-1")
        await plane.set_slice()  # the endpoint is no longer ready
        await eventually(lambda: a.ready == frozenset(), "n1 programmed the new state")
        await asyncio.sleep(0.3)
        assert a.last == ["default/web-1"], (
            "web-1 was stopped while n2 may still send it new connections"
        )
        b.stall = False
        await plane.set_slice()  # a change: pushed again, and now programmed
        await eventually(lambda: b.ready == frozenset(), "n2 programmed the new state")
        await eventually(lambda: a.last == [], "web-1 stopped once no node routed to it")


async def test_the_agents_report_removes_the_deleted_pod() -> None:
    async with cluster() as (plane, a, _):
        pod = await running(plane, "web-1", "n1", "")
        await eventually(lambda: a.last == ["default/web-1"], "n1 runs web-1")
        await plane.objects.delete(Kind.POD, "default", "web-1")
        await eventually(lambda: a.last == [], "web-1 (no address, nothing to drain) stopped")
        gone = objects_pb2.Pod()
        gone.metadata.CopyFrom(pod.metadata)
        event = agent_pb2.PodStatusEvent(type=agent_pb2.PodStatusEvent.REMOVED, pod=gone)
        for queue in a._watchers:
            queue.put_nowait(event)

        async def removed() -> bool:
            try:
                await plane.objects.get(Kind.POD, "default", "web-1")
            except NotFound:
                return True
            return False

        await eventually(removed, "the pod is removed once its agent reports it gone")
