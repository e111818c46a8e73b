"""Control plane + node agents, all real processes: a real control plane with its embedded etcd
and `python3 -m nodeagent --runtime fake` agents (hollow nodes: real gRPC, real pod workers,
in-memory containers).

- A Deployment's replicas spread over the registered nodes, each agent runs exactly the pods
  bound to it, their Running status reaches the store, and deleting the Deployment empties
  every agent.
- Killing an agent (-9) makes its node NotReady and its replicas run on the other node within
  the default grace period + eviction delay; the agent started again re-registers, is told to
  stop every pod no longer its own before it counts as Ready, and no replica runs twice.
Each agent registers itself (`--server`); the test only starts and kills processes and reads
what the control plane and the agents report.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest

from pilothouse import kinds
from pilothouse.manifests import loader
from pilothouse.v1 import agent_pb2, agent_pb2_grpc
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc
from tests import factories
from tests.fixtures.controlplane import ControlPlaneProcess
from tests.fixtures.joined import JoinedAgent
from tests.unit import waiting

NAMESPACE = "nodes-test"
WAIT = 30.0

DEPLOYMENT = factories.manifest(
    factories.deployment(
        namespace=NAMESPACE,
        labels={},
        replicas=4,
        grace=1,
        typed=True,
        containers=[factories.container(name="web")],
    )
)


class Agent(JoinedAgent):
    """A joined agent (default: `--runtime fake`) and the pods it runs."""

    def __init__(
        self,
        name: str,
        state_dir: Path,
        plane: ControlPlaneProcess,
        *,
        flags: Sequence[str] = ("--runtime", "fake"),
    ) -> None:
        super().__init__(name, state_dir, plane, flags=flags)

    async def pods(self) -> list[str]:
        """The pods this agent runs (not yet stopped), as namespace/name."""
        async with self.plane.agent_channel(self.address, self.name) as channel:
            listed = await agent_pb2_grpc.NodeAgentStub(channel).ListPods(
                agent_pb2.ListPodsRequest(), timeout=10
            )
        return sorted(f"{p.metadata.namespace}/{p.metadata.name}" for p in listed.pods)


@pytest.fixture
async def cluster(
    control_plane: ControlPlaneProcess, tmp_path: Path
) -> AsyncIterator[tuple[api_grpc.ControlPlaneStub, dict[str, Agent]]]:
    agents = {name: Agent(name, tmp_path / name, control_plane) for name in ("n1", "n2")}
    try:
        for agent in agents.values():
            await agent.start()
        async with control_plane.channel() as channel:
            yield api_grpc.ControlPlaneStub(channel), agents
    finally:
        for agent in agents.values():
            await agent.kill()


async def eventually(check: Callable[[], object], what: str, *, within: float = WAIT) -> None:
    await waiting.eventually(check, what, within, interval=0.1)


async def listed(stub: api_grpc.ControlPlaneStub, kind: str, namespace: str = "") -> list:
    response = await stub.List(api.ListRequest(kind=kind, namespace=namespace), timeout=10)
    return [kinds.unwrap(item) for item in response.items]


async def ready_nodes(stub: api_grpc.ControlPlaneStub) -> list[str]:
    return sorted(
        n.metadata.name
        for n in await listed(stub, "nodes")
        if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)
    )


async def running_pods(stub: api_grpc.ControlPlaneStub) -> dict[str, str]:
    """Pod name -> node, of the pods `get pods` shows Running."""
    return {
        p.metadata.name: p.spec.node_name
        for p in await listed(stub, "pods", NAMESPACE)
        if p.status.phase == "Running"
    }


async def apply_deployment(stub: api_grpc.ControlPlaneStub) -> None:
    documents, problems = loader.parse(DEPLOYMENT, source="web.yaml")
    assert not problems, problems
    namespace = kinds.wrap(factories.namespace(name=NAMESPACE))
    await stub.Apply(api.ApplyRequest(object=namespace), timeout=10)
    await stub.Apply(api.ApplyRequest(object=kinds.wrap(documents[0].message)), timeout=10)


async def bound_to(stub: api_grpc.ControlPlaneStub, node: str) -> list[str]:
    return sorted(
        f"{p.metadata.namespace}/{p.metadata.name}"
        for p in await listed(stub, "pods")
        if p.spec.node_name == node and not p.metadata.HasField("deletion_timestamp")
    )


async def test_replicas_run_on_registered_nodes_and_leave_with_the_deployment(
    cluster: tuple[api_grpc.ControlPlaneStub, dict[str, Agent]],
) -> None:
    stub, agents = cluster

    async def both_ready() -> object:
        found = await ready_nodes(stub)
        return found == ["n1", "n2"] or found

    await eventually(both_ready, "`get nodes` never showed both agents' nodes Ready")
    nodes = {n.metadata.name: n for n in await listed(stub, "nodes")}
    for name, agent in agents.items():
        assert nodes[name].metadata.labels["kubernetes.io/hostname"] == name
        port = int(agent.address.rpartition(":")[2])
        assert nodes[name].status.daemon_endpoints.kubelet_endpoint.port == port
        assert nodes[name].status.allocatable["pods"] == "110"

    await apply_deployment(stub)

    async def four_running() -> object:
        found = await running_pods(stub)
        return len(found) == 4 or found

    await eventually(four_running, "the 4 replicas never all showed Running")
    spread = Counter((await running_pods(stub)).values())
    assert spread == {"n1": 2, "n2": 2}, f"4 replicas on 2 nodes landed as {dict(spread)}"
    for name, agent in agents.items():
        assert await agent.pods() == await bound_to(stub, name), (
            f"agent {name} does not run exactly the pods bound to its node"
        )

    await stub.Delete(
        api.DeleteRequest(kind="deployments", namespace=NAMESPACE, name="web"), timeout=10
    )
    for name, agent in agents.items():
        await eventually(
            lambda agent=agent: _empty(agent),
            f"agent {name} still runs pods of the deleted Deployment",
        )


async def _empty(agent: Agent) -> object:
    pods = await agent.pods()
    return pods == [] or pods


async def test_a_killed_agents_replicas_move_and_it_comes_back_without_duplicates(
    cluster: tuple[api_grpc.ControlPlaneStub, dict[str, Agent]],
) -> None:
    stub, agents = cluster
    await eventually(
        lambda: _equal(ready_nodes(stub), ["n1", "n2"]), "both nodes never became Ready"
    )
    await apply_deployment(stub)
    await eventually(lambda: _count(running_pods(stub), 4), "4 replicas never all Running")
    before = await running_pods(stub)
    assert "n1" in before.values(), f"no replica landed on n1: {before}"
    lost = {
        p.metadata.uid for p in await listed(stub, "pods", NAMESPACE) if p.spec.node_name == "n1"
    }

    killed_at = time.monotonic()
    await agents["n1"].kill()

    async def all_on_n2() -> object:
        found = await running_pods(stub)
        return (len(found) == 4 and set(found.values()) == {"n2"}) or found

    await eventually(all_on_n2, "n1's replicas never ran on n2")
    healed = time.monotonic() - killed_at
    print(f"node loss -> all replicas Running elsewhere: {healed:.2f} s")
    n1 = next(n for n in await listed(stub, "nodes") if n.metadata.name == "n1")
    ready = next(c for c in n1.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("Unknown", "NodeStatusUnknown")
    uids = {p.metadata.uid for p in await listed(stub, "pods", NAMESPACE)}
    assert not lost & uids, "the lost node's pods were kept instead of replaced"

    await agents["n1"].start()  # same state dir: it remembers the pods it ran
    await eventually(lambda: _equal(ready_nodes(stub), ["n1", "n2"]), "n1 never became Ready again")
    assert await agents["n1"].pods() == await bound_to(stub, "n1") == [], (
        "the returning agent still runs pods that were moved to another node"
    )
    final = await running_pods(stub)
    assert len(final) == 4 and set(final.values()) == {"n2"}, final


async def _equal(value: Awaitable[object], expected: object) -> object:
    got = await value
    return got == expected or got


async def _count(value: Awaitable[dict[str, str]], expected: int) -> object:
    got = await value
    return len(got) == expected or got
