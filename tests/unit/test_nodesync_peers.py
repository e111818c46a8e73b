"""Node sync pushes the node list every agent routes by (issue 19), over the memory store and
in-process fake agents: each agent learns every node's address and pod CIDR; a node that joins
reaches every agent's list, one that is deleted leaves it; a node write that moves nothing is
no change; a large list goes out as its changes, and whole again when an agent cannot take them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc

from controlplane.cache.informer import Informer
from controlplane.nodes.peers import Peer, PeersView
from controlplane.nodes.registry import NodeRegistry
from controlplane.nodes.syncer import PEER_CHANGES_ABOVE
from controlplane.nodes.syncmanager import NodeSyncManager
from controlplane.objects import ObjectStore
from controlplane.store.memory import MemoryStore
from nodeagent.api.peerlist import PeerList
from pilothouse.kinds import Kind
from pilothouse.v1 import agent_pb2
from tests import factories
from tests.unit.nodesync_support import FakeAgent
from tests.unit.waiting import eventually


class RoutingAgent(FakeAgent):
    """A FakeAgent that keeps the last node list it was pushed (name -> address, pod CIDR)."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: dict[str, tuple[str, str]] | None = None
        self.peer_pushes = 0

    async def SyncPods(
        self, request: agent_pb2.SyncPodsRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.SyncPodsResponse:
        await super().SyncPods(request, context)
        if request.peers_included:
            self.peer_pushes += 1
            self.peers = {p.name: (p.address, p.pod_cidr) for p in request.peers}
        return agent_pb2.SyncPodsResponse(routes_programmed=True)


@asynccontextmanager
async def plane(count: int) -> AsyncIterator[tuple[ObjectStore, NodeRegistry, list[RoutingAgent]]]:
    agents = [RoutingAgent() for _ in range(count)]
    for agent in agents:
        await agent.start()
    objects = ObjectStore(MemoryStore())
    nodes, pods = Informer(objects, Kind.NODE), Informer(objects, Kind.POD)
    sync = NodeSyncManager(
        objects,
        nodes=nodes,
        pods=pods,
        peers=PeersView(nodes=nodes),
        resync_interval=30.0,
        rpc_timeout=1.0,
        max_backoff=0.5,
    )
    tasks = [asyncio.create_task(part.run()) for part in (nodes, pods, sync)]
    try:
        yield objects, NodeRegistry(objects), agents
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for agent in agents:
            await agent.stop()


async def register(registry: NodeRegistry, name: str, agent: FakeAgent) -> None:
    await registry.register(
        factories.node_report(name=name, address=agent.address), instance_id=f"i-{name}"
    )


async def test_every_agent_learns_every_node_and_joins_and_leaves_reach_all() -> None:
    async with plane(3) as (objects, registry, (a, b, c)):
        await register(registry, "n1", a)
        await register(registry, "n2", b)
        two = {"n1": ("127.0.0.1", "10.244.0.0/24"), "n2": ("127.0.0.1", "10.244.1.0/24")}
        await eventually(lambda: a.peers == b.peers == two, "n1 and n2 route to each other")

        await register(registry, "n3", c)
        three = {**two, "n3": ("127.0.0.1", "10.244.2.0/24")}
        await eventually(
            lambda: a.peers == b.peers == c.peers == three, "every agent routes to n3 when it joins"
        )

        await objects.delete(Kind.NODE, "", "n3")
        await eventually(lambda: a.peers == b.peers == two, "nobody routes to n3 once it is gone")


async def test_a_node_write_that_moves_nothing_is_no_change_of_the_node_list() -> None:
    objects = ObjectStore(MemoryStore())
    nodes = Informer(objects, Kind.NODE)
    changes: list[int] = []
    view = PeersView(nodes=nodes, on_change=lambda: changes.append(1))
    task = asyncio.create_task(nodes.run())
    try:
        registry = NodeRegistry(objects)
        report = factories.node_report(name="n1", address="10.0.0.7:7071")
        await registry.register(report, instance_id="i-1")
        await eventually(lambda: len(view.current().peers) == 1, "n1 is listed")
        first = view.current()
        assert first.peers == (Peer("n1", "10.0.0.7", "10.244.0.0/24"),)
        node = await objects.get(Kind.NODE, "", "n1")
        node.metadata.labels["touched"] = "yes"  # a write that changes no address or CIDR
        await objects.update(node)
        await eventually(
            lambda: nodes.get("", "n1").metadata.labels.get("touched") == "yes", "informer saw it"
        )
        assert view.current() is first, "a node write that moved nothing changed the list"
        report.status.addresses[0].address = "10.0.0.8"
        await registry.register(report, instance_id="i-1")  # the same agent, moved
        await eventually(
            lambda: view.current().peers == (Peer("n1", "10.0.0.8", "10.244.0.0/24"),),
            "a node that moved is listed at its new address",
        )
        assert view.current().version > first.version
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class ListKeepingAgent(FakeAgent):
    """A FakeAgent that takes the node list as the agent does (`PeerList`: whole or changes)."""

    def __init__(self) -> None:
        super().__init__()
        self.list = PeerList()
        self.kinds: list[str] = []  # per push with a node list: whole, changes or refused

    async def SyncPods(
        self, request: agent_pb2.SyncPodsRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.SyncPodsResponse:
        await super().SyncPods(request, context)
        taken = self.list.take(request)
        if request.peers_included or request.peers_changes:
            kind = "whole" if request.peers_included else "changes"
            self.kinds.append("refused" if isinstance(taken, str) else kind)
        return agent_pb2.SyncPodsResponse(
            routes_programmed=not isinstance(taken, str),
            routes_error=taken if isinstance(taken, str) else "",
            peers_version=self.list.version,
        )

    def names(self) -> set[str]:
        return {p.name for p in self.list._peers.values()}


async def test_a_large_node_list_goes_out_as_its_changes_and_rebuilds_the_whole() -> None:
    count = PEER_CHANGES_ABOVE + 5
    agent = await ListKeepingAgent().start()
    objects = ObjectStore(MemoryStore())
    nodes, pods = Informer(objects, Kind.NODE), Informer(objects, Kind.POD)
    sync = NodeSyncManager(
        objects, nodes=nodes, pods=pods, peers=PeersView(nodes=nodes), resync_interval=30.0
    )
    registry = NodeRegistry(objects)
    # Nodes on paper (nobody listens at port 9: their syncers fail and back off).
    for i in range(count):
        report = factories.node_report(name=f"p{i:03d}", address=f"127.0.0.{i + 2}:9")
        await registry.register(report, instance_id=f"i-{i}")
    tasks = [asyncio.create_task(part.run()) for part in (nodes, pods, sync)]
    try:
        await register(registry, "real", agent)
        everyone = {f"p{i:03d}" for i in range(count)} | {"real"}
        await eventually(lambda: agent.names() == everyone, "the whole list reached the agent")
        assert agent.kinds[0] == "whole"
        # (Pushes made while the node is still Fencing go whole: join until one is not.)
        expected = set(everyone)
        for k in range(5):
            name = f"late{k}"
            await registry.register(
                factories.node_report(name=name, address=f"127.0.1.{k + 1}:9"),
                instance_id=f"i-{name}",
            )
            await objects.delete(Kind.NODE, "", f"p{k:03d}")
            expected = expected - {f"p{k:03d}"} | {name}
            await eventually(
                lambda expected=expected: agent.names() == expected, "a join and a leave reached it"
            )
            if "changes" in agent.kinds:
                break
        assert "changes" in agent.kinds, "the changes of a large list went out whole"

        agent.list.version += 1000  # the agent lost step (another history): changes refused
        await registry.register(
            factories.node_report(name="later", address="127.0.2.1:9"), instance_id="i-later"
        )
        await eventually(lambda: "later" in agent.names(), "the whole list followed the refusal")
        refused = agent.kinds.index("refused")
        assert agent.kinds[refused + 1] == "whole", agent.kinds
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await agent.stop()
