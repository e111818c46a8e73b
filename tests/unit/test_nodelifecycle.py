"""The node-lifecycle controller on virtual time: a node whose heartbeats stop is NotReady after
the grace period and loses its pods after the eviction delay; a node that speaks again in
time keeps them; when most nodes go silent at once nothing is evicted; a restarted control
plane gives every node a full grace period."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest

from controlplane.cache.informer import Informer
from controlplane.controllers.nodelifecycle import NodeLifecycleController
from controlplane.events import EventRecorder
from controlplane.nodes import conditions
from controlplane.nodes.conditions import ReadyReason, ReadyStatus
from controlplane.nodes.registry import NodeRegistry
from controlplane.objects import ObjectStore
from controlplane.reconcile.clock import ManualClock, settle
from controlplane.store import NotFound
from controlplane.store.memory import MemoryStore
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2
from tests import factories


class Cluster:
    def __init__(self, *, registry: NodeRegistry | None = None) -> None:
        self.clock = ManualClock()
        self.objects = ObjectStore(MemoryStore(), clock=self.clock.now)
        self.registry = registry or NodeRegistry(self.objects, clock=self.clock)
        self.nodes = Informer(self.objects, Kind.NODE)
        self.pods = Informer(self.objects, Kind.POD)
        self.controller = self.make_controller()
        self.tasks: list[asyncio.Task[None]] = []

    def make_controller(self, *, startup_allowance: float = 0.0) -> NodeLifecycleController:
        return NodeLifecycleController(
            self.objects,
            nodes=self.nodes,
            pods=self.pods,
            heartbeats=self.registry,
            events=EventRecorder(self.objects, component="node-controller", clock=self.clock),
            clock=self.clock,
            startup_allowance=startup_allowance,
        )

    async def __aenter__(self) -> Cluster:
        self.tasks = [asyncio.create_task(i.run()) for i in (self.nodes, self.pods)]
        await self.nodes.wait_synced()
        await self.pods.wait_synced()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def join(self, *names: str) -> None:
        """Register nodes and make them Ready, as registration plus a first push would."""
        for name in names:
            await self.registry.register(
                factories.node_report(name=name, address="127.0.0.1:1"), instance_id=f"agent-{name}"
            )
            node = await self.objects.get(Kind.NODE, "", name)
            conditions.set_ready(
                node,
                status=ReadyStatus.TRUE,
                reason=ReadyReason.AGENT_READY,
                message="ok",
                now=self.clock.now(),
            )
            await self.objects.update_status(node)
        await settle()

    async def tick(self, seconds: float, *, alive: Iterable[str] = ()) -> None:
        """Let `seconds` pass in 0.1 s steps; `alive` nodes heartbeat every second."""
        alive = list(alive)
        for _ in range(round(seconds * 10)):
            await self.clock.advance(0.1)
            if alive and round(self.clock.now() * 10) % 10 == 0:
                for name in alive:
                    await self.registry.heartbeat(name, instance_id=f"agent-{name}")
            await settle()
            await self.controller.check()
            await settle()

    async def node(self, name: str) -> objects_pb2.Node:
        return await self.objects.get(Kind.NODE, "", name)

    async def pod_names(self) -> list[str]:
        return sorted(p.metadata.name for p in (await self.objects.list(Kind.POD)).items)

    async def events(self, reason: str) -> list[objects_pb2.Event]:
        return [e for e in (await self.objects.list(Kind.EVENT)).items if e.reason == reason]


async def test_silent_node_is_not_ready_after_the_grace_period_then_loses_its_pods() -> None:
    async with Cluster() as cluster:
        await cluster.join("n1", "n2")
        for name, node in (("a", "n1"), ("b", "n1"), ("c", "n2")):
            await cluster.objects.create(factories.pod(name=name, node=node, phase="Running"))
        await cluster.objects.create(factories.pod(name="done", node="n1", phase="Succeeded"))
        await cluster.controller.check()

        await cluster.tick(2.8, alive=["n2"])
        assert conditions.is_ready(await cluster.node("n1")), "marked NotReady before 3 s"

        await cluster.tick(0.3, alive=["n2"])
        n1 = await cluster.node("n1")
        ready = conditions.ready_condition(n1)
        assert ready is not None
        assert (ready.status, ready.reason) == ("Unknown", "NodeStatusUnknown")
        assert ready.message.startswith("Agent stopped posting node status")
        assert conditions.is_ready(await cluster.node("n2")), "a heartbeating node was marked"
        [event] = await cluster.events("NodeNotReady")
        assert event.type == "Warning"
        assert event.message.startswith('node "n1" is not Ready (no heartbeat for 3.')
        assert event.message.endswith("its 2 pods will be moved in 2 s")

        await cluster.tick(1.8, alive=["n2"])
        assert await cluster.pod_names() == ["a", "b", "c", "done"], "evicted before the delay"

        await cluster.tick(0.3, alive=["n2"])
        assert await cluster.pod_names() == ["c", "done"], (
            "the lost node's running pods were not deleted after the eviction delay "
            "(a finished pod has nothing to move and stays)"
        )
        assert len(await cluster.events("NodeControllerEviction")) == 2
        assert len(await cluster.events("DeletingAllPods")) == 1


async def test_node_that_heartbeats_again_before_the_eviction_keeps_its_pods() -> None:
    async with Cluster() as cluster:
        await cluster.join("n1")
        await cluster.objects.create(factories.pod(name="a", node="n1", phase="Running"))
        await cluster.controller.check()
        await cluster.tick(3.2)
        assert conditions.is_lost(await cluster.node("n1"))
        await cluster.tick(1.0)
        await cluster.registry.heartbeat("n1", instance_id="agent-n1")
        await cluster.tick(3.0, alive=["n1"])
        assert await cluster.pod_names() == ["a"], "a node that came back lost its pods"
        assert conditions.is_fencing(await cluster.node("n1")), (
            "a returning node must wait for its first push before it is Ready again"
        )


async def test_most_nodes_silent_at_once_evicts_nothing_until_they_return() -> None:
    async with Cluster() as cluster:
        await cluster.join("n1", "n2", "n3")
        for name, node in (("a", "n1"), ("b", "n2"), ("c", "n3")):
            await cluster.objects.create(factories.pod(name=name, node=node, phase="Running"))
        await cluster.controller.check()
        await cluster.tick(10.0, alive=["n3"])
        assert conditions.is_lost(await cluster.node("n1"))
        assert conditions.is_lost(await cluster.node("n2"))
        assert await cluster.pod_names() == ["a", "b", "c"], (
            "2 of 3 nodes went silent at once (the control plane is probably cut off), "
            "yet their pods were evicted"
        )
        assert cluster.controller.evictions_halted
        # n2 comes back: 1 of 3 dead is an ordinary failure, and n1's pod is moved.
        await cluster.registry.heartbeat("n2", instance_id="agent-n2")
        await cluster.tick(1.0, alive=["n2", "n3"])
        assert await cluster.pod_names() == ["b", "c"]
        assert not cluster.controller.evictions_halted


async def test_most_nodes_falling_silent_together_get_one_more_grace_period() -> None:
    """A control plane too busy to read 1,000 nodes' heartbeats in time sees most of them
    fall silent together: they get one more grace period before any is marked NotReady (a
    busy control plane catches up; nodes that really died are marked one period later). One
    node falling silent alone is marked on time."""
    async with Cluster() as cluster:
        await cluster.join("n1", "n2", "n3", "n4")
        await cluster.controller.check()
        await cluster.tick(10.0, alive=["n1", "n2", "n3", "n4"])
        await cluster.tick(3.5, alive=["n4"])  # n1-n3 silent for 3 s: 75 % together
        assert not any([conditions.is_lost(await cluster.node(n)) for n in ("n1", "n2", "n3")]), (
            "most nodes fell silent together and were marked without one more grace period"
        )
        await cluster.tick(3.5, alive=["n4"])  # still silent a grace period later: marked
        assert all([conditions.is_lost(await cluster.node(n)) for n in ("n1", "n2", "n3")])
        assert cluster.controller.evictions_halted

    async with Cluster() as cluster:
        await cluster.join("n1", "n2", "n3", "n4")
        await cluster.controller.check()
        await cluster.tick(10.0, alive=["n1", "n2", "n3", "n4"])
        await cluster.tick(3.5, alive=["n2", "n3", "n4"])  # one silent node: marked on time
        assert conditions.is_lost(await cluster.node("n1"))


async def test_a_restarted_control_plane_gives_every_node_a_full_grace_period() -> None:
    async with Cluster() as cluster:
        await cluster.join("n1")
        await cluster.objects.create(factories.pod(name="a", node="n1", phase="Running"))
        await cluster.clock.advance(60.0)  # the control plane was down for a minute
        cluster.registry = NodeRegistry(cluster.objects, clock=cluster.clock)
        cluster.controller = cluster.make_controller()
        await cluster.controller.check()
        assert conditions.is_ready(await cluster.node("n1")), (
            "the node was condemned for the time the control plane itself was down"
        )
        await cluster.tick(2.0, alive=["n1"])
        assert conditions.is_ready(await cluster.node("n1"))


async def test_after_a_restart_agents_get_the_startup_allowance_to_come_back() -> None:
    async with Cluster() as cluster:
        await cluster.join("n1", "n2")
        await cluster.clock.advance(60.0)  # the control plane was down for a minute
        cluster.registry = NodeRegistry(cluster.objects, clock=cluster.clock)
        cluster.controller = cluster.make_controller(startup_allowance=6.0)
        # n1's agent reconnects 5 s after the start (its reconnect backoff); n2's never does.
        await cluster.tick(5.0)
        await cluster.tick(3.5, alive=["n1"])  # 8.5 s: past grace, within allowance + grace
        assert conditions.is_ready(await cluster.node("n1"))
        assert conditions.is_ready(await cluster.node("n2"))
        await cluster.tick(1.0, alive=["n1"])  # 9.5 s: past allowance + grace
        assert conditions.is_ready(await cluster.node("n1"))
        assert conditions.is_lost(await cluster.node("n2")), "a silent node was never marked"


async def test_after_a_restart_no_node_is_marked_while_agents_are_still_coming_back() -> None:
    """A thousand agents reconnect to a busy control plane over tens of seconds, longer than
    the startup allowance and grace period: none is condemned while they keep arriving, and
    one that never comes back is marked one grace period after the last arrival."""
    late = [f"n{i}" for i in range(10)]
    async with Cluster() as cluster:
        await cluster.join(*late, "dead")
        await cluster.clock.advance(60.0)  # the control plane was down for a minute
        cluster.registry = NodeRegistry(cluster.objects, clock=cluster.clock)
        cluster.controller = cluster.make_controller(startup_allowance=6.0)
        back: list[str] = []
        for name in late:  # one agent back every 2 s: the last at 20 s
            await cluster.tick(2.0, alive=back)
            back.append(name)
            await cluster.registry.heartbeat(name, instance_id=f"agent-{name}")
            marked = [n for n in late if conditions.is_lost(await cluster.node(n))]
            assert not marked, f"marked while agents were still coming back: {marked}"
        assert conditions.is_ready(await cluster.node("dead"))
        await cluster.tick(3.5, alive=back)  # a grace period after the last arrival
        assert conditions.is_lost(await cluster.node("dead")), "a silent node was never marked"
        assert not [n for n in late if conditions.is_lost(await cluster.node(n))]


async def test_after_a_restart_a_pause_in_arrivals_condemns_no_queued_agent() -> None:
    """Half the agents are back, then none for longer than a grace period (the restarted
    control plane's loop busy starting everything else): with more than a few nodes still
    missing, they are agents queued, not machines dead; nothing is marked until they come."""
    first, second = [f"a{i}" for i in range(10)], [f"b{i}" for i in range(10)]
    async with Cluster() as cluster:
        await cluster.join(*first, *second, "dead")
        await cluster.clock.advance(60.0)
        cluster.registry = NodeRegistry(cluster.objects, clock=cluster.clock)
        cluster.controller = cluster.make_controller(startup_allowance=6.0)
        await cluster.tick(2.0)
        for name in first:
            await cluster.registry.heartbeat(name, instance_id=f"agent-{name}")
        await cluster.tick(13.0, alive=first)  # 15 s: no arrival for 13 s
        marked = [n for n in (*second, "dead") if conditions.is_lost(await cluster.node(n))]
        assert not marked, f"marked while half the agents were still queued: {marked}"
        # The rest arrive at 16 s; a grace period later, the one that never came is marked.
        await cluster.tick(4.5, alive=[*first, *second])
        assert conditions.is_lost(await cluster.node("dead")), "a silent node was never marked"
        assert not [n for n in second if conditions.is_lost(await cluster.node(n))]


async def test_runs_on_its_own_with_short_durations() -> None:
    objects = ObjectStore(MemoryStore())
    registry = NodeRegistry(objects)
    nodes, pods = Informer(objects, Kind.NODE), Informer(objects, Kind.POD)
    controller = NodeLifecycleController(
        objects,
        nodes=nodes,
        pods=pods,
        heartbeats=registry,
        grace_period=0.3,
        eviction_timeout=0.2,
    )
    await registry.register(
        factories.node_report(name="n1", address="127.0.0.1:1"), instance_id="x"
    )
    await objects.create(factories.pod(name="a", node="n1", phase="Running"))
    tasks = [asyncio.create_task(part.run()) for part in (nodes, pods, controller)]
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while True:
            try:
                await objects.get(Kind.POD, "default", "a")
            except NotFound:
                break
            if loop.time() > deadline:
                pytest.fail("the silent node's pod was never evicted")
            await asyncio.sleep(0.02)
        assert conditions.is_lost(await objects.get(Kind.NODE, "", "n1"))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def test_controlplane_flags_set_grace_period_and_eviction_timeout() -> None:
    from controlplane.nodes.settings import SettingsError, split

    nodes, rest = split(
        ["--listen", "127.0.0.1:0", "--node-grace-period", "5", "--pod-eviction-timeout", "0"]
    )
    assert (nodes.grace_period, nodes.eviction_timeout, nodes.heartbeat_interval) == (5, 0, 1)
    assert rest == ["--listen", "127.0.0.1:0"], "control-plane flags were swallowed"
    with pytest.raises(SettingsError, match="must be shorter than --node-grace-period"):
        split(["--node-grace-period", "1"])
    with pytest.raises(SettingsError, match="--pod-eviction-timeout must not be negative"):
        split(["--pod-eviction-timeout", "-1"])


async def test_a_stalled_control_plane_gives_every_node_a_full_grace_period_again() -> None:
    async with Cluster() as cluster:
        await cluster.join("n1")
        runner = asyncio.create_task(cluster.controller.run())
        try:
            await cluster.tick(1.0, alive=["n1"])
            # The event loop was busy for 5 s: no beat processed, the lifecycle's pass late.
            cluster.clock._now += 5.0
            await cluster.clock.advance(0)
            await settle()
            assert conditions.is_ready(await cluster.node("n1")), (
                "the node was condemned for the time the control plane itself stalled"
            )
            await cluster.tick(3.5)  # and silent for real afterwards: marked after the grace
            assert not conditions.is_ready(await cluster.node("n1"))
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
