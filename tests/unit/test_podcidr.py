"""Pod CIDR allocation at node registration: what `pilothouse get nodes -o yaml` shows as each
node's spec.podCIDR, and what an agent that asks for its own range is told."""

from __future__ import annotations

import asyncio
import ipaddress

import grpc
import pytest

from controlplane.api.server import ApiServer
from controlplane.nodes import podcidr
from controlplane.nodes.registry import NodeRegistry, PodCidrUnavailable
from controlplane.objects import Invalid, ObjectStore
from controlplane.reconcile.clock import ManualClock
from controlplane.store.memory import MemoryStore
from pilothouse.kinds import Kind
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc
from tests import factories


def make_registry(
    objects: ObjectStore | None = None, *, cluster_cidr: str = podcidr.DEFAULT_CLUSTER_CIDR
) -> tuple[NodeRegistry, ObjectStore]:
    clock = ManualClock()
    objects = objects or ObjectStore(MemoryStore(), clock=clock.now)
    allocator = podcidr.Allocator.of(cluster_cidr)
    return NodeRegistry(objects, clock=clock, pod_cidrs=allocator), objects


async def stored_cidrs(objects: ObjectStore) -> dict[str, str]:
    listed = await objects.list(Kind.NODE)
    return {n.metadata.name: n.spec.pod_cidr for n in listed.items}  # type: ignore[attr-defined]


async def test_nodes_get_consecutive_blocks_of_the_cluster_cidr_in_registration_order() -> None:
    registry, objects = make_registry()
    given = {}
    for name in ("node-1", "node-2", "node-3"):
        registered = await registry.register(
            factories.node_report(name=name), instance_id=f"agent-{name}"
        )
        given[name] = registered.node.spec.pod_cidr
    assert given == {
        "node-1": "10.244.0.0/24",
        "node-2": "10.244.1.0/24",
        "node-3": "10.244.2.0/24",
    }, "the registration answer does not carry the node's pod CIDR"
    assert await stored_cidrs(objects) == given, "get nodes shows other pod CIDRs than agents got"


async def test_a_node_keeps_its_pod_cidr_when_it_registers_again_and_after_a_restart() -> None:
    registry, objects = make_registry()
    await registry.register(factories.node_report(name="node-1"), instance_id="a1")
    await registry.register(factories.node_report(name="node-2"), instance_id="a2")
    again = await registry.register(factories.node_report(name="node-2"), instance_id="a2")
    assert again.node.spec.pod_cidr == "10.244.1.0/24"

    # A restarted control plane (a new registry over the same store) derives from the Nodes.
    restarted, _ = make_registry(objects)
    back = await restarted.register(factories.node_report(name="node-1"), instance_id="a1")
    assert back.node.spec.pod_cidr == "10.244.0.0/24", "a node's pod CIDR changed on restart"
    new = await restarted.register(factories.node_report(name="node-3"), instance_id="a3")
    assert new.node.spec.pod_cidr == "10.244.2.0/24", (
        "a restarted control plane handed out a pod CIDR a node already had"
    )


async def test_a_deleted_nodes_block_is_given_to_the_next_node() -> None:
    registry, objects = make_registry()
    for name in ("node-1", "node-2", "node-3"):
        await registry.register(factories.node_report(name=name), instance_id=name)
    gone = await objects.get(Kind.NODE, "", "node-2")
    await objects.delete(Kind.NODE, "", "node-2", resource_version=gone.metadata.resource_version)
    new = await registry.register(factories.node_report(name="node-4"), instance_id="node-4")
    assert new.node.spec.pod_cidr == "10.244.1.0/24"


async def test_concurrent_registrations_never_share_a_block() -> None:
    registry, objects = make_registry()
    names = [f"node-{i}" for i in range(1, 21)]
    await asyncio.gather(
        *(registry.register(factories.node_report(name=n), instance_id=n) for n in names)
    )
    cidrs = list((await stored_cidrs(objects)).values())
    assert len(cidrs) == 20 and all(cidrs), f"nodes without a pod CIDR: {cidrs}"
    assert len(set(cidrs)) == 20, f"two nodes got the same pod CIDR: {sorted(cidrs)}"


async def test_an_agent_keeps_its_own_pod_cidr_when_it_is_free() -> None:
    registry, _ = make_registry()
    own = await registry.register(
        factories.node_report(name="edge", pod_cidr="192.168.50.0/24"), instance_id="e"
    )
    assert own.node.spec.pod_cidr == "192.168.50.0/24"
    inside = await registry.register(
        factories.node_report(name="n2", pod_cidr="10.244.0.0/24"), instance_id="n2"
    )
    assert inside.node.spec.pod_cidr == "10.244.0.0/24"
    allocated = await registry.register(factories.node_report(name="n3"), instance_id="n3")
    assert allocated.node.spec.pod_cidr == "10.244.1.0/24", (
        "the allocator gave out a block an agent had asked for"
    )


async def test_an_agent_asking_for_a_taken_range_is_refused_with_the_owner_named() -> None:
    registry, objects = make_registry()
    await registry.register(factories.node_report(name="node-1"), instance_id="a1")
    with pytest.raises(PodCidrUnavailable) as refused:
        await registry.register(
            factories.node_report(name="node-2", pod_cidr="10.244.0.128/25"), instance_id="a2"
        )
    message = str(refused.value)
    assert "10.244.0.128/25" in message and '"node-1"' in message and "--pod-cidr" in message
    assert "node-2" not in await stored_cidrs(objects), "a refused agent's node was created"


async def test_an_agent_asking_for_another_range_than_its_nodes_is_refused() -> None:
    registry, _ = make_registry()
    await registry.register(factories.node_report(name="node-1"), instance_id="a1")
    same = await registry.register(
        factories.node_report(name="node-1", pod_cidr="10.244.0.0/24"), instance_id="a1"
    )
    assert same.node.spec.pod_cidr == "10.244.0.0/24"
    with pytest.raises(PodCidrUnavailable) as refused:
        await registry.register(
            factories.node_report(name="node-1", pod_cidr="10.244.9.0/24"), instance_id="a1"
        )
    assert "has pod CIDR 10.244.0.0/24" in str(refused.value)


async def test_a_full_cluster_cidr_and_a_malformed_range_are_refused_clearly() -> None:
    registry, _ = make_registry(cluster_cidr="10.9.0.0/23")
    await registry.register(factories.node_report(name="a"), instance_id="a")
    await registry.register(factories.node_report(name="b"), instance_id="b")
    with pytest.raises(PodCidrUnavailable) as full:
        await registry.register(factories.node_report(name="c"), instance_id="c")
    assert "no free /24 left in the cluster CIDR 10.9.0.0/23" in str(full.value)
    with pytest.raises(Invalid) as bad:
        await registry.register(
            factories.node_report(name="d", pod_cidr="10.9.0.1/24"), instance_id="d"
        )
    assert "10.9.0.1/24" in str(bad.value)


def test_cluster_cidrs_that_cannot_be_split_are_rejected() -> None:
    with pytest.raises(podcidr.InvalidCidr):
        podcidr.Allocator.of("10.244.0.0/25")
    with pytest.raises(podcidr.InvalidCidr):
        podcidr.Allocator.of("fd00::/64")
    assert podcidr.Allocator.of("10.0.0.0/16").capacity == 256


def test_blocks_are_the_lowest_free_ones_around_odd_stored_values() -> None:
    allocator = podcidr.Allocator.of("10.244.0.0/16")
    taken = {"a": "10.244.0.0/23", "b": "garbage", "c": "", "d": "10.244.3.0/24"}
    chosen = allocator.choose("e", taken=taken)
    assert chosen == "10.244.2.0/24"
    assert ipaddress.ip_network(chosen).subnet_of(allocator.cluster_cidr)


async def test_the_registration_answer_over_grpc_carries_the_pod_cidr() -> None:
    objects = ObjectStore(MemoryStore())
    server = ApiServer(objects=objects, listen="127.0.0.1:0")
    address = await server.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = api_grpc.NodeRegistryStub(channel)
            first = await stub.RegisterNode(
                api.RegisterNodeRequest(
                    node=factories.node_report(name="node-1"), instance_id="a1"
                ),
                timeout=5,
            )
            assert first.node.spec.pod_cidr == "10.244.0.0/24"
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.RegisterNode(
                    api.RegisterNodeRequest(
                        node=factories.node_report(name="node-2", pod_cidr="10.244.0.0/24"),
                        instance_id="a2",
                    ),
                    timeout=5,
                )
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert '"node-1"' in (refused.value.details() or "")
    finally:
        await server.stop()


def test_the_cluster_cidr_flag_sets_the_range_and_refuses_a_bad_one() -> None:
    from controlplane.nodes import settings

    nodes, rest = settings.split(["--cluster-cidr", "10.50.0.0/16", "--listen", "x:1"])
    assert nodes.pod_cidrs().cluster_cidr == ipaddress.ip_network("10.50.0.0/16")
    assert rest == ["--listen", "x:1"]
    assert settings.split([])[0].cluster_cidr == "10.244.0.0/16"
    with pytest.raises(settings.SettingsError) as bad:
        settings.split(["--cluster-cidr", "10.50.0.1/16"])
    assert "--cluster-cidr" in str(bad.value) and "host bits" in str(bad.value)
