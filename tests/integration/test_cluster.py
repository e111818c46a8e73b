"""A whole cluster of real processes (issue #4): a control plane with embedded etcd and three
agents on this machine (host network).

What a user relies on:
- a 6-replica Deployment runs as 6 Running pods, 2 per node, each a real runc container on the
  node `get pods -o wide` names; deleting the Deployment removes every container everywhere;
- a pod that asks for more memory than any node has stays Pending with the scheduler's reason,
  and runs as soon as a node large enough joins, with nothing else done;
- `pilothouse cordon` keeps new pods off a node, `pilothouse drain` moves its pods elsewhere.
Real containers where the check is about containers; hollow (`--runtime fake`) agents elsewhere.
"""

from __future__ import annotations

from collections import Counter

import pytest

from nodeagent.api.nodeinfo import memory_bytes
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o
from tests import factories
from tests.fixtures.agents import (
    Cluster,
    ClusterFactory,
    deployment,
    eventually,
    pods,
    running,
    wait_all_ready,
    wait_running,
)

pytestmark = [pytest.mark.slow]

NAMESPACE = "cluster-test"


@pytest.mark.root
async def test_six_replicas_run_as_real_containers_two_per_node_and_leave_with_the_deployment(
    cluster: Cluster,
) -> None:
    async with cluster.client() as client:
        await wait_all_ready(cluster, client)
        await client.apply(factories.namespace(name=NAMESPACE))
        await client.apply(deployment("web", namespace=NAMESPACE, replicas=6))
        await wait_running(client, NAMESPACE, 6, within=60)
        placed = running(await pods(client, NAMESPACE))
        spread = Counter(placed.values())
        assert spread == {"n1": 2, "n2": 2, "n3": 2}, (
            f"6 replicas on 3 equal nodes landed as {dict(spread)}, not 2 per node"
        )
        for node in cluster.agents:
            containers = await cluster.containers(node)
            here = sorted(c.pod for c in containers if c.status == "running")
            bound = sorted(name for name, on in placed.items() if on == node)
            assert here == bound, (
                f"node {node} runs containers for {here}, but `get pods` places {bound} there"
            )

        await client.delete(Kind.DEPLOYMENT, "web", namespace=NAMESPACE)

        async def no_containers() -> object:
            left = {n: [c.id for c in await cluster.containers(n)] for n in cluster.agents}
            return not any(left.values()) or left

        await eventually(no_containers, "containers of the deleted Deployment are left")

        async def no_pods() -> object:  # each goes once its agent reports it stopped
            left = [p.metadata.name for p in await pods(client, NAMESPACE)]
            return left or True

        await eventually(no_pods, "pods of the deleted Deployment are left")


async def test_a_cordoned_node_gets_no_new_pods_and_drain_moves_its_pods_elsewhere(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = await cluster_factory(agents=3, runtime="fake")
    async with cluster.client() as client:
        await wait_all_ready(cluster, client)
        cordon = await cluster.cli("cordon", "n3")
        assert cordon.returncode == 0, f"`pilothouse cordon n3` failed: {cordon.stderr}"
        await client.apply(factories.namespace(name=NAMESPACE))
        await client.apply(deployment("web", namespace=NAMESPACE, replicas=6))
        await wait_running(client, NAMESPACE, 6)
        placed = running(await pods(client, NAMESPACE))
        assert "n3" not in placed.values(), f"new pods landed on the cordoned node n3: {placed}"

        uncordon = await cluster.cli("uncordon", "n3")
        assert uncordon.returncode == 0, f"`pilothouse uncordon n3` failed: {uncordon.stderr}"
        on_n1 = {p.metadata.uid for p in await pods(client, NAMESPACE) if p.spec.node_name == "n1"}
        assert on_n1, f"no replica landed on n1 to drain: {placed}"
        drain = await cluster.cli("drain", "n1")
        assert drain.returncode == 0, f"`pilothouse drain n1` failed: {drain.stderr}"

        async def moved() -> object:
            found = running(await pods(client, NAMESPACE))
            return (len(found) == 6 and "n1" not in found.values()) or found

        await eventually(moved, "after `drain n1` the 6 replicas did not all run elsewhere")
        uids = {p.metadata.uid for p in await pods(client, NAMESPACE)}
        assert not on_n1 & uids, "drain left the drained pods in place"

        async def n1_empty() -> object:
            """n1's agent has taken its empty pod set (it may lag the replacements under load)."""
            found = await cluster.agents["n1"].pods()
            return found == [] or found

        await eventually(n1_empty, "the drained node still runs pods")
        assert await cluster.agents["n1"].pods() == [], "the drained node still runs pods"
        node = await client.get(Kind.NODE, "n1")
        assert isinstance(node, o.Node) and node.spec.unschedulable, "drain did not cordon n1"


async def test_a_pod_too_big_for_every_node_waits_with_the_reason_and_runs_on_a_larger_node(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = await cluster_factory(agents=3, runtime="fake")
    host_memory = memory_bytes()
    too_big = f"{2 * host_memory // 2**20}Mi"  # twice what any of the 3 nodes has
    async with cluster.client() as client:
        await wait_all_ready(cluster, client)
        await client.apply(factories.namespace(name=NAMESPACE))
        await client.apply(
            deployment("big", namespace=NAMESPACE, replicas=1, memory_request=too_big)
        )

        async def unschedulable() -> object:
            found = await pods(client, NAMESPACE)
            reasons = [
                (p.status.phase, c.reason, c.message)
                for p in found
                for c in p.status.conditions
                if c.type == "PodScheduled"
            ]
            return reasons == [
                ("Pending", "Unschedulable", "0/3 nodes are available: 3 Insufficient memory.")
            ] or (reasons, [p.spec.node_name for p in found])

        await eventually(
            unschedulable, "a pod too big for every node did not stay Pending with the reason"
        )
        await cluster.add_agent("big1", runtime="fake", memory_bytes=4 * host_memory)

        async def runs_on_the_large_node() -> object:
            found = running(await pods(client, NAMESPACE))
            return found == {next(iter(found), ""): "big1"} or found

        await eventually(
            runs_on_the_large_node, "the waiting pod did not run on the larger node that joined"
        )
