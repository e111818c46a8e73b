"""Node sync over the in-memory store and fake agents (in-process gRPC NodeAgent servicers):
a node's agent gets exactly the pods bound to it, their status comes back, deletions shrink
the set, a registered node is Ready only after its first push, a dead or hung agent holds up
no other node, and `pilothouse logs` is proxied to the pod's agent."""

from __future__ import annotations

import grpc
import pytest

from controlplane.api.server import ApiServer
from controlplane.nodes import conditions
from controlplane.objects import ObjectStore
from controlplane.store.memory import MemoryStore
from pilothouse.kinds import Kind
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc
from tests import factories
from tests.unit.nodesync_support import Plane, agents, eventually, make_pod


async def ready(plane: Plane, name: str) -> object:
    node = await plane.node(name)
    condition = conditions.ready_condition(node)
    return conditions.is_ready(node) or (condition and (condition.status, condition.reason))


async def test_registered_node_gets_its_bound_pods_and_becomes_ready() -> None:
    async with agents(1) as (agent,), Plane() as plane:
        await plane.objects.create(make_pod("web-1", "n1"))
        await plane.objects.create(make_pod("web-2", "n1"))
        await plane.objects.create(make_pod("other", "n2"))
        await plane.objects.create(make_pod("pending"))
        await plane.register("n1", agent)
        node = await plane.node("n1")
        assert conditions.is_fencing(node), "a freshly registered node must not be Ready yet"
        assert node.metadata.labels[conditions.HOSTNAME_LABEL] == "n1"
        assert conditions.endpoint(node) == agent.address

        await eventually(lambda: ready(plane, "n1"), "node n1 never became Ready")
        assert agent.pushes[0] == ["default/web-1", "default/web-2"], (
            "the first push to a registered node must list exactly the pods bound to it"
        )


async def test_agent_status_is_written_back_keeping_the_scheduled_condition() -> None:
    async with agents(1) as (agent,), Plane() as plane:
        await plane.objects.create(make_pod("web-1", "n1"))
        await plane.register("n1", agent)
        await eventually(lambda: agent.last == ["default/web-1"], "pod never pushed")
        agent.report(await plane.pod("web-1"), "Running")

        async def running() -> object:
            pod = await plane.pod("web-1")
            return pod.status.phase == "Running" or pod.status.phase

        await eventually(running, "get pods never showed the agent's Running status")
        pod = await plane.pod("web-1")
        scheduled = next(c for c in pod.status.conditions if c.type == "PodScheduled")
        assert scheduled.reason == "Bound", "the scheduler's PodScheduled condition was lost"


async def test_status_of_a_pod_bound_elsewhere_or_replaced_is_dropped() -> None:
    async with agents(1) as (agent,), Plane() as plane:
        await plane.objects.create(make_pod("web-1", "n1"))
        elsewhere = await plane.objects.create(make_pod("web-2", "n2"))
        await plane.register("n1", agent)
        await eventually(lambda: agent.last == ["default/web-1"], "pod never pushed")
        old = await plane.pod("web-1")
        await plane.objects.delete(Kind.POD, "default", "web-1")
        replaced = await plane.objects.create(make_pod("web-1", "n1"))
        agent.report(old, "Running")  # the previous incarnation (another uid)
        agent.report(elsewhere, "Running")
        agent.report(replaced, "Failed")

        async def failed() -> object:
            return (await plane.pod("web-1")).status.phase == "Failed"

        await eventually(failed, "status of the current web-1 never written")
        assert (await plane.pod("web-1")).metadata.uid == replaced.metadata.uid
        assert (await plane.pod("web-2")).status.phase == "Pending", (
            "a node reported the status of a pod bound to another node, and it was written"
        )


async def test_deleting_a_pod_pushes_the_smaller_set() -> None:
    async with agents(1) as (agent,), Plane() as plane:
        for name in ("web-1", "web-2", "web-3"):
            await plane.objects.create(make_pod(name, "n1"))
        await plane.register("n1", agent)
        await eventually(lambda: len(agent.last or []) == 3, "three pods never pushed")
        await plane.objects.delete(Kind.POD, "default", "web-2")
        await eventually(
            lambda: agent.last == ["default/web-1", "default/web-3"] or agent.last,
            "the agent was not told to stop a deleted pod",
        )
        pod = make_pod("web-4")
        await plane.objects.create(pod)
        pod = await plane.pod("web-4")
        pod.spec.node_name = "n1"  # bound later, as the scheduler does
        await plane.objects.update(pod)
        await eventually(
            lambda: agent.last == ["default/web-1", "default/web-3", "default/web-4"] or agent.last,
            "a pod bound to the node later was not pushed",
        )


async def test_a_dead_or_hung_agent_does_not_hold_up_another_node() -> None:
    async with agents(3) as (hung, dead, healthy), Plane() as plane:
        hung.hang = True
        await plane.objects.create(make_pod("a", "hung"))
        await plane.objects.create(make_pod("b", "dead"))
        await plane.objects.create(make_pod("c", "healthy"))
        await plane.register("hung", hung, instance="i-hung")
        await plane.register("dead", dead, instance="i-dead")
        await dead.stop()
        await plane.register("healthy", healthy, instance="i-healthy")
        await eventually(lambda: ready(plane, "healthy"), "the healthy node never became Ready")
        assert healthy.last == ["default/c"]
        await plane.objects.create(make_pod("d", "healthy"))
        await eventually(
            lambda: healthy.last == ["default/c", "default/d"] or healthy.last,
            "a change for the healthy node waited for the broken ones",
        )
        for name in ("hung", "dead"):
            assert conditions.is_fencing(await plane.node(name)), (
                f"node {name} counts as Ready although no push to it ever succeeded"
            )


async def test_node_is_ready_only_after_its_first_push_succeeded() -> None:
    async with agents(1) as (agent,), Plane() as plane:
        agent.hang = True
        await plane.objects.create(make_pod("web-1", "n1"))
        await plane.register("n1", agent)
        await eventually(
            lambda: agent.received >= 1 or "no push yet", "the pod set was never pushed"
        )
        assert conditions.is_fencing(await plane.node("n1")), (
            "the node became Ready before the agent accepted its pod set"
        )
        agent.hang = False  # the next attempt (after the 1 s deadline) succeeds
        await eventually(lambda: ready(plane, "n1"), "node never became Ready", within=10)
        assert agent.pushes[0] == ["default/web-1"]


async def test_reregistered_agent_on_a_new_port_is_fenced_with_the_current_set() -> None:
    async with agents(2) as (first, second), Plane() as plane:
        await plane.objects.create(make_pod("web-1", "n1"))
        await plane.objects.create(make_pod("web-2", "n1"))
        await plane.register("n1", first)
        await eventually(lambda: ready(plane, "n1"), "node never became Ready")
        await first.stop()
        # While the agent was away, web-2 was evicted; the agent comes back on another port.
        await plane.objects.delete(Kind.POD, "default", "web-2")
        await plane.register("n1", second)
        await eventually(lambda: ready(plane, "n1"), "re-registered node never became Ready")
        assert second.pushes[0] == ["default/web-1"], (
            "the returning agent was not told to stop the pod evicted while it was away"
        )


async def test_periodic_resync_pushes_even_without_changes() -> None:
    async with agents(1) as (agent,), Plane(resync_interval=0.2) as plane:
        await plane.objects.create(make_pod("web-1", "n1"))
        await plane.register("n1", agent)
        await eventually(lambda: len(agent.pushes) >= 3 or agent.pushes, "no periodic pushes")
        assert all(push == ["default/web-1"] for push in agent.pushes)


async def test_pod_logs_are_streamed_from_the_pods_agent() -> None:
    async with agents(1) as (agent,):
        objects = ObjectStore(MemoryStore())
        server = ApiServer(objects=objects, listen="127.0.0.1:0")
        address = await server.start()
        try:
            await server.registry.register(
                factories.node_report(name="n1", address=agent.address), instance_id="i"
            )
            await objects.create(make_pod("web-1", "n1"))
            await objects.create(make_pod("web-2", "n1"))
            await objects.create(make_pod("pending"))
            async with grpc.aio.insecure_channel(address) as channel:
                stub = api_grpc.ControlPlaneStub(channel)
                chunks = [
                    c.data
                    async for c in stub.PodLogs(
                        api.PodLogsRequest(namespace="default", pod="web-1")
                    )
                ]
                assert b"".join(chunks) == b"hello from web-1\n"
                for pod, code in (
                    ("web-2", grpc.StatusCode.NOT_FOUND),
                    ("pending", grpc.StatusCode.FAILED_PRECONDITION),
                    ("nope", grpc.StatusCode.NOT_FOUND),
                ):
                    with pytest.raises(grpc.aio.AioRpcError) as raised:
                        async for _ in stub.PodLogs(
                            api.PodLogsRequest(namespace="default", pod=pod)
                        ):
                            pass
                    assert raised.value.code() == code, raised.value.details()
                    assert pod in (raised.value.details() or ""), raised.value.details()
        finally:
            await server.stop()
