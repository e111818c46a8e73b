"""Node registration and heartbeats: what `pilothouse get nodes` shows after an agent registers,
how a second agent with the same name is refused until the first is gone, how rarely
heartbeats write to the store, and the agent-side Registration runnable over real gRPC
(retrying while the control plane is away, registering again when told to)."""

from __future__ import annotations

import asyncio
import functools

import grpc
import pytest

from controlplane.api.server import ApiServer
from controlplane.nodes import conditions
from controlplane.nodes.registry import NodeRegistry, NodeTaken, NotRegistered
from controlplane.objects import ObjectStore
from controlplane.reconcile.clock import ManualClock
from controlplane.store.memory import MemoryStore
from nodeagent.registration import Registration, load_instance_id
from pilothouse.kinds import Kind
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc
from pilothouse.v1 import objects_pb2
from tests import factories
from tests.unit.waiting import eventually

# What these tests' agent registers: the factory's report (10.0.0.7:7071) labelled disk=ssd.
report = functools.partial(factories.node_report, labels={"disk": "ssd"})


def make_registry() -> tuple[NodeRegistry, ObjectStore, ManualClock]:
    clock = ManualClock()
    objects = ObjectStore(MemoryStore(), clock=clock.now)
    return NodeRegistry(objects, clock=clock), objects, clock


async def test_registration_creates_the_node_with_what_the_agent_reported() -> None:
    registry, objects, _ = make_registry()
    registered = await registry.register(report(), instance_id="agent-a")
    assert registered.heartbeat_interval == 1.0
    node = await objects.get(Kind.NODE, "", "n1")
    assert dict(node.metadata.labels) == {
        "kubernetes.io/hostname": "n1",
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "disk": "ssd",
    }
    assert conditions.endpoint(node) == "10.0.0.7:7071"
    assert {(a.type, a.address) for a in node.status.addresses} == {
        ("InternalIP", "10.0.0.7"),
        ("Hostname", "n1"),
    }
    assert node.status.allocatable["memory"] == "4Gi"
    assert node.status.node_info.kubelet_version == "v0.1.0"
    ready = conditions.ready_condition(node)
    assert ready is not None and ready.HasField("last_heartbeat_time")
    assert (ready.status, ready.reason) == ("False", "Fencing"), (
        "a node must not be schedulable before its agent was told which pods are its own"
    )


async def test_reregistration_keeps_cordon_and_labels_people_set() -> None:
    registry, objects, _ = make_registry()
    await registry.register(report(), instance_id="agent-a")
    node = await objects.get(Kind.NODE, "", "n1")
    node.spec.unschedulable = True
    node.metadata.labels["zone"] = "b"
    await objects.update(node)
    await registry.register(report(address="10.0.0.7:7080", memory="8Gi"), instance_id="agent-a")
    node = await objects.get(Kind.NODE, "", "n1")
    assert node.spec.unschedulable, "re-registering uncordoned the node"
    assert node.metadata.labels["zone"] == "b"
    assert node.status.allocatable["memory"] == "8Gi"
    assert conditions.endpoint(node) == "10.0.0.7:7080"


async def test_second_agent_is_refused_while_the_first_heartbeats_then_allowed() -> None:
    registry, objects, clock = make_registry()
    await registry.register(report(), instance_id="agent-a")
    for _ in range(5):
        await clock.advance(1.0)
        await registry.heartbeat("n1", instance_id="agent-a")
    await clock.advance(1.2)
    with pytest.raises(NodeTaken) as refused:
        await registry.register(report(address="10.0.0.7:9999"), instance_id="agent-b")
    assert str(refused.value) == (
        'node "n1" is already registered by another agent (last heartbeat 1.2 s ago); '
        "stop it or wait 1.8 s"
    )
    assert conditions.endpoint(await objects.get(Kind.NODE, "", "n1")) == "10.0.0.7:7071"
    await clock.advance(2.0)  # the first agent has now been silent for 3.2 s > 3 s
    await registry.register(report(address="10.0.0.7:9999"), instance_id="agent-b")
    node = await objects.get(Kind.NODE, "", "n1")
    assert conditions.instance_of(node) == "agent-b"
    assert conditions.endpoint(node) == "10.0.0.7:9999"
    with pytest.raises(NotRegistered):
        await registry.heartbeat("n1", instance_id="agent-a")


async def test_heartbeats_write_the_store_only_every_ten_seconds() -> None:
    registry, objects, clock = make_registry()
    await registry.register(report(), instance_id="agent-a")
    first = await objects.get(Kind.NODE, "", "n1")
    for _ in range(9):
        await clock.advance(1.0)
        await registry.heartbeat("n1", instance_id="agent-a")
    assert registry.last_seen("n1") == clock.now()
    unchanged = await objects.get(Kind.NODE, "", "n1")
    assert unchanged.metadata.resource_version == first.metadata.resource_version, (
        "every heartbeat wrote the Node to etcd"
    )
    await clock.advance(1.0)
    await registry.heartbeat("n1", instance_id="agent-a")
    refreshed = await objects.get(Kind.NODE, "", "n1")
    assert conditions.heartbeat_time(refreshed) == pytest.approx(clock.now())


async def test_an_open_stream_is_heard_until_it_ends_or_falls_silent_too_long() -> None:
    registry, _, clock = make_registry()  # heartbeat interval 1 s, status interval 10 s
    await registry.register(report(), instance_id="agent-a")
    await registry.heartbeat("n1", instance_id="agent-a")
    stream = registry.hold("n1", "agent-a")
    await clock.advance(25.0)  # no message for 25 s, far past the 3 s grace period
    assert registry.last_seen("n1") == clock.now() and registry.streaming() == ["n1"]

    # Silent for WEDGED_AFTER (3) status intervals: the stream no longer counts.
    await clock.advance(6.0)
    assert registry.last_seen("n1") == clock.now() - 31.0 and registry.streaming() == []
    await registry.heartbeat("n1", instance_id="agent-a")  # a message: heard again
    assert registry.last_seen("n1") == clock.now() and registry.streaming() == ["n1"]

    # Ended: last heard one heartbeat interval before the end (its last answered ping).
    await clock.advance(5.0)
    registry.release(stream)
    assert registry.last_seen("n1") == clock.now() - registry.heartbeat_interval
    assert registry.streaming() == []

    # Another instance's stream does not make the owner heard.
    other = registry.hold("n1", "agent-b")
    await clock.advance(5.0)
    assert registry.last_seen("n1") == clock.now() - 5.0 - registry.heartbeat_interval
    registry.release(other)
    assert registry.last_seen("n1") == clock.now() - 5.0 - registry.heartbeat_interval


async def test_a_node_is_heard_while_its_registration_is_under_way() -> None:
    registry, objects, clock = make_registry()
    entered, release = asyncio.Event(), asyncio.Event()
    create = objects.create

    async def slow_create(obj):  # type: ignore[no-untyped-def]
        entered.set()
        await release.wait()  # a control plane too busy to finish the registration soon
        return await create(obj)

    objects.create = slow_create  # type: ignore[method-assign]
    registering = asyncio.create_task(registry.register(report(), instance_id="agent-a"))
    await entered.wait()
    await clock.advance(10.0)  # past the grace period, still registering
    assert registry.last_seen("n1") == clock.now()
    release.set()
    await registering
    await clock.advance(10.0)
    assert registry.last_seen("n1") == clock.now() - 10.0  # heard at registration, not since


async def test_known_nodes_register_again_side_by_side_and_new_ones_one_at_a_time() -> None:
    # After a control-plane restart every agent registers again at once; those nodes hold
    # their pod CIDRs, so none waits for another. Choosing a new node's CIDR stays one at a
    # time: two new nodes never get the same block.
    registry, objects, _ = make_registry()
    for name in ("known-1", "known-2"):
        await registry.register(report(name=name), instance_id=f"agent-{name}")
    entered, release = asyncio.Event(), asyncio.Event()
    update_status = objects.update_status

    async def held(obj):  # type: ignore[no-untyped-def]
        if obj.metadata.name == "known-1":
            entered.set()
            await release.wait()  # a slow write for this node alone
        return await update_status(obj)

    objects.update_status = held  # type: ignore[method-assign]
    again_1 = registry.register(report(name="known-1"), instance_id="agent-known-1")
    slow = asyncio.create_task(again_1)
    await asyncio.wait_for(entered.wait(), 5)
    again = registry.register(report(name="known-2"), instance_id="agent-known-2")
    await asyncio.wait_for(again, 5)
    new = [
        asyncio.create_task(registry.register(report(name=f"new-{i}"), instance_id=f"new-{i}"))
        for i in range(5)
    ]
    await asyncio.wait_for(asyncio.gather(*new), 5)
    assert not slow.done()
    release.set()
    await slow
    listed = (await objects.list(Kind.NODE)).items
    cidrs = [n.spec.pod_cidr for n in listed]
    assert len(cidrs) == 7 and len(set(cidrs)) == 7, cidrs


async def test_heartbeat_of_a_lost_node_brings_it_back_to_fencing_not_ready() -> None:
    registry, objects, clock = make_registry()
    await registry.register(report(), instance_id="agent-a")
    node = await objects.get(Kind.NODE, "", "n1")
    conditions.set_ready(
        node,
        status=conditions.ReadyStatus.UNKNOWN,
        reason=conditions.ReadyReason.STATUS_UNKNOWN,
        message="gone",
        now=clock.now(),
    )
    await objects.update_status(node)
    await clock.advance(1.0)
    await registry.heartbeat("n1", instance_id="agent-a")
    node = await objects.get(Kind.NODE, "", "n1")
    assert conditions.is_fencing(node), (
        "a returning node must stop its stale pods before it counts as Ready"
    )


async def test_heartbeat_for_an_unknown_node_asks_for_registration() -> None:
    registry, _, _ = make_registry()
    with pytest.raises(NotRegistered):
        await registry.heartbeat("ghost", instance_id="x")


def test_instance_id_is_kept_in_the_state_dir(tmp_path) -> None:
    first = load_instance_id(tmp_path)
    assert first and load_instance_id(tmp_path) == first


# ------------------------------------------------------------------ over gRPC, real time


def agent_status() -> objects_pb2.NodeStatus:
    status = objects_pb2.NodeStatus()
    status.capacity.update({"cpu": "1", "memory": "1Gi", "pods": "10"})
    status.allocatable.update({"cpu": "1", "memory": "1Gi", "pods": "10"})
    return status


async def test_agent_registers_when_the_control_plane_appears_and_again_after_losing_it() -> None:
    objects = ObjectStore(MemoryStore())
    first = ApiServer(objects=objects, listen="127.0.0.1:0")
    address = await first.start()
    await first.stop()  # the control plane is down when the agent starts
    registration = Registration(
        server=address,
        node_name="n1",
        instance_id="agent-a",
        node_status=agent_status,
        agent_address="127.0.0.1:7071",
    )
    task = asyncio.create_task(registration.run())
    server = ApiServer(
        objects=objects,
        listen=address,
        # A status message at least every 0.5 s (the open stream is the heartbeat meanwhile).
        registry=NodeRegistry(objects, heartbeat_interval=0.1, persist_interval=0.5),
    )
    try:
        await asyncio.sleep(0.5)
        assert not registration.registered.is_set()
        await server.start()

        async def registered() -> object:
            found = (await objects.list(Kind.NODE)).items
            return [n.metadata.name for n in found] == ["n1"] or found

        await eventually(
            registered, "the agent never registered once the control plane was up", within=10.0
        )
        await eventually(
            lambda: server.registry.last_seen("n1") is not None, "no heartbeat arrived", within=10.0
        )
        # Someone deletes the Node: the next status message is refused and the agent
        # registers again.
        await objects.delete(Kind.NODE, "", "n1")
        await eventually(
            registered, "the agent did not register again after losing its node", within=10.0
        )

        # A second agent with the same name is refused (FAILED_PRECONDITION) with the reason.
        async with grpc.aio.insecure_channel(address) as channel:
            stub = api_grpc.NodeRegistryStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.RegisterNode(
                    api.RegisterNodeRequest(
                        node=objects_pb2.Node(metadata=objects_pb2.ObjectMeta(name="n1")),
                        instance_id="agent-b",
                    )
                )
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "already registered by another agent" in (refused.value.details() or "")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop()
