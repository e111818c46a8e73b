"""Hollow nodes against a real control plane (etcd, mutual TLS): 50 simulated nodes join with
one token through the real join flow, register and heartbeat; a uniform Deployment spreads
within the Spread score's promise (no node more than 2 pods above the mean), and resource fit
is never violated (requests summed per node from the API, against each node's allocatable)."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pilothouse import quantity
from pilothouse.cli.cluster.hollow import LARGE_CLUSTER_CIDR
from pilothouse.kinds import Kind
from tests import factories
from tests.fixtures.controlplane import ControlPlaneProcess
from tests.fixtures.hollow import IMAGE, hollow_nodes

NODES = 50
# Waits grow with the node count: joining, and 5 pods per node to place and run.
WAIT_PER_NODE = 0.5
NAMESPACE = "hollow-test"


@pytest.fixture(params=[NODES], ids=str)
def size(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def control_plane(control_plane_factory: Callable[..., ControlPlaneProcess]) -> ControlPlaneProcess:
    """A control plane whose cluster CIDR has a pod range (/24) for every hollow node, as
    `up --hollow-nodes` starts it (the default /16 holds 256)."""
    return control_plane_factory(flags=("--cluster-cidr", LARGE_CLUSTER_CIDR))


@pytest.fixture
def hollow(control_plane: ControlPlaneProcess, tmp_path: Path, size: int) -> Iterator[Path]:
    """`size` hollow nodes of 4 CPU and 8 GiB each; yields their process' log."""
    with hollow_nodes(
        control_plane, tmp_path, count=size, flags=("--cpu", "4", "--memory", "8Gi")
    ) as log:
        yield log


async def _until(check, *, within: float, what: str):  # type: ignore[no-untyped-def]
    began = time.monotonic()
    deadline = began + within
    while True:
        found = await check()
        if found:
            print(f"{what}: {time.monotonic() - began:.1f} s")  # shown when a later step fails
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def _ready(node) -> bool:  # type: ignore[no-untyped-def]
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)


def _requests(pod) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    cpu = sum(quantity.parse_cpu(c.resources.requests.get("cpu", "0")) for c in pod.spec.containers)
    memory = sum(
        quantity.parse_memory(c.resources.requests.get("memory", "0")) for c in pod.spec.containers
    )
    return cpu, memory


async def test_hollow_nodes_spread_and_fit(
    control_plane: ControlPlaneProcess, hollow: Path, size: int
) -> None:
    wait = max(120.0, WAIT_PER_NODE * size)
    async with control_plane.client() as client:

        async def nodes_ready():  # type: ignore[no-untyped-def]
            nodes = (await client.list(Kind.NODE)).items
            ready = [n for n in nodes if _ready(n)]
            return ready if len(ready) == size else None

        nodes = await _until(nodes_ready, within=wait, what=f"{size} hollow nodes Ready")
        assert all(
            n.metadata.labels.get("node.kubernetes.io/instance-type") == "hollow" for n in nodes
        )
        await client.apply(factories.namespace(name=NAMESPACE))
        small = factories.container(image=IMAGE, cpu="100m", memory="64Mi")
        await client.apply(
            factories.deployment(
                name="uniform", namespace=NAMESPACE, replicas=4 * size, containers=[small]
            )
        )

        async def running(app: str, count: int):  # type: ignore[no-untyped-def]
            pods = (
                await client.list(Kind.POD, namespace=NAMESPACE, label_selector=f"app={app}")
            ).items
            up = [p for p in pods if p.status.phase == "Running" and p.spec.node_name]
            return up if len(up) == count else None

        uniform = await _until(
            lambda: running("uniform", 4 * size), within=wait, what="the uniform pods Running"
        )
        per_node = collections.Counter(p.spec.node_name for p in uniform)
        mean = len(uniform) / size
        assert max(per_node.values()) <= mean + 2, per_node.most_common(5)

        # Big pods: one fits a node beside the small ones (3 + 0.4 <= 4 CPU), two never do.
        big = factories.container(image=IMAGE, cpu="3", memory="1Gi")
        await client.apply(
            factories.deployment(
                name="big", namespace=NAMESPACE, replicas=size + 10, containers=[big]
            )
        )
        await _until(lambda: running("big", size), within=wait, what="a big pod on every node")
        pods = (await client.list(Kind.POD, namespace=NAMESPACE)).items
        allocatable = {
            n.metadata.name: (
                quantity.parse_cpu(n.status.allocatable["cpu"]),
                quantity.parse_memory(n.status.allocatable["memory"]),
            )
            for n in nodes
        }
        used: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
        for pod in pods:
            if pod.spec.node_name:
                cpu, memory = _requests(pod)
                used[pod.spec.node_name][0] += cpu
                used[pod.spec.node_name][1] += memory
        for node, (cpu, memory) in used.items():
            assert cpu <= allocatable[node][0], (node, cpu)
            assert memory <= allocatable[node][1], (node, memory)
        pending = [p for p in pods if not p.spec.node_name]
        assert len(pending) == 10  # the rest stay Pending: nothing more fits anywhere
