"""Self-healing of a whole cluster of real processes (issue #5), default grace and eviction.

What a user relies on:
- a node that dies with its containers (agent and containers SIGKILLed, as a machine lost)
  has its replicas run on the other nodes; when it comes back, its old containers are gone and
  no replica runs twice;
- a control plane `kill -9`ed while a 20-replica Deployment is being created, started again,
  ends with exactly 20 pods, every one owned, and each agent running exactly its pods.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

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

NAMESPACE = "heal-test"


async def _running_containers(cluster: Cluster) -> dict[str, list[str]]:
    """Node -> pod names of the containers runc runs there."""
    return {
        name: sorted(c.pod for c in await cluster.containers(name) if c.status == "running")
        for name in cluster.agents
    }


@pytest.mark.root
async def test_a_lost_nodes_replicas_run_elsewhere_and_never_twice_when_it_returns(
    cluster: Cluster,
) -> None:
    async with cluster.client() as client:
        await wait_all_ready(cluster, client)
        await client.apply(factories.namespace(name=NAMESPACE))
        await client.apply(deployment("web", namespace=NAMESPACE, replicas=6))
        await wait_running(client, NAMESPACE, 6, within=60)
        lost = {p.metadata.uid for p in await pods(client, NAMESPACE) if p.spec.node_name == "n1"}
        assert lost, "no replica landed on n1"

        killed_at = time.monotonic()
        await cluster.kill_agent("n1", containers_too=True)

        async def elsewhere() -> object:
            found = running(await pods(client, NAMESPACE))
            return (len(found) == 6 and "n1" not in found.values()) or found

        await eventually(elsewhere, "n1's replicas never ran on the other nodes", within=30)
        print(f"node loss -> its replicas Running elsewhere: {time.monotonic() - killed_at:.2f} s")
        listed = await pods(client, NAMESPACE)
        # Evicted pods are deleted gracefully: Terminating until their node confirms (or the
        # pod GC gives up on it), never counted or kept as replicas.
        uids = {p.metadata.uid for p in listed if not p.metadata.HasField("deletion_timestamp")}
        assert not lost & uids, "the lost node's pods were kept instead of replaced"
        containers = await _running_containers(cluster)
        assert sum(len(v) for k, v in containers.items() if k != "n1") == 6, (
            f"the surviving nodes do not run the 6 replicas as containers: {containers}"
        )

        await cluster.start_agent("n1")  # same state dir: it remembers what it ran
        await wait_all_ready(cluster, client)
        await asyncio.sleep(1.0)  # a heartbeat or two: anything stale would show by now
        assert await cluster.containers("n1") == [], (
            "the returning node still has containers of pods that moved away"
        )
        containers = await _running_containers(cluster)
        names = Counter(pod for found in containers.values() for pod in found)
        twice = [pod for pod, count in names.items() if count > 1]
        assert not twice, f"replicas run twice after n1 came back: {twice} ({containers})"
        final = running(await pods(client, NAMESPACE))
        assert len(final) == 6 and sum(names.values()) == 6, (final, containers)


async def test_a_control_plane_killed_mid_creation_resumes_with_exactly_the_replicas(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = await cluster_factory(agents=3, runtime="fake")
    async with cluster.client() as client:
        await wait_all_ready(cluster, client)
        # Killed as soon as the API has written the Deployment: the controller is then in
        # the middle of creating (and the scheduler of binding) its pods.
        await client.apply(factories.namespace(name=NAMESPACE))
        await client.apply(deployment("many", namespace=NAMESPACE, replicas=20))
        await cluster.kill_control_plane()
    await cluster.start_control_plane()

    async with cluster.client() as client:

        async def twenty_running() -> object:
            found = await pods(client, NAMESPACE)
            return len(running(found)) == 20 == len(found) or sorted(
                (p.metadata.name, p.status.phase) for p in found
            )

        await eventually(twenty_running, "the Deployment never settled at 20 Running pods")

        async def counted() -> object:
            """The controllers have caught up: the Deployment's status counts the 20."""
            d = await client.get(Kind.DEPLOYMENT, "many", namespace=NAMESPACE)
            s = d.status  # type: ignore[attr-defined]
            seen = (s.observed_generation == d.metadata.generation, s.replicas, s.ready_replicas)
            return seen == (True, 20, 20) or seen

        await eventually(counted, "the Deployment's status never counted its 20 pods")
        found = await pods(client, NAMESPACE)
        assert len(found) == 20, f"{len(found)} pods after the restart, not 20"
        replicasets = {
            r.metadata.uid: r
            for r in (await client.list(Kind.REPLICASET, namespace=NAMESPACE)).items
            if isinstance(r, o.ReplicaSet)
        }
        owner = (await client.get(Kind.DEPLOYMENT, "many", namespace=NAMESPACE)).metadata.uid  # type: ignore[attr-defined]
        orphans = [
            p.metadata.name
            for p in found
            if not any(ref.uid in replicasets for ref in p.metadata.owner_references)
        ]
        assert not orphans, f"pods without a live owner after the restart: {orphans}"
        for rs in replicasets.values():
            assert any(ref.uid == owner for ref in rs.metadata.owner_references), (
                f"ReplicaSet {rs.metadata.name} has no live Deployment as owner"
            )
        for name, agent in cluster.agents.items():
            bound = sorted(
                f"{p.metadata.namespace}/{p.metadata.name}"
                for p in found
                if p.spec.node_name == name
            )
            assert await agent.pods() == bound, (
                f"agent {name} does not run exactly the pods bound to it after the restart"
            )
