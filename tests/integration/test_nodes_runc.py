"""The whole path with real containers (as root): control plane with embedded etcd, one agent
with real runc and the busybox test image. A Deployment's replicas become real containers,
`pilothouse logs` streams their output through the control plane, restarting the agent keeps
the same containers, and deleting the Deployment removes every container."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pilothouse import kinds
from pilothouse.manifests import loader
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc
from tests import factories
from tests.fixtures.controlplane import ControlPlaneProcess
from tests.integration.test_nodes import Agent, eventually, listed

pytestmark = [pytest.mark.root, pytest.mark.slow]

NAMESPACE = "nodes-runc"
DEPLOYMENT = factories.manifest(
    factories.deployment(
        name="hello",
        namespace=NAMESPACE,
        labels={},
        replicas=2,
        grace=1,
        typed=True,
        containers=[
            factories.container(name="hello", script="echo hello from $(hostname); exec sleep 1000")
        ],
    )
)


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (namespaces, cgroups, mounts)"
    for tool in ("runc", "conmon"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not Path("/bin/busybox").exists():
        return "busybox-static is not installed"
    return None


@pytest.fixture
async def runc_agent(control_plane: ControlPlaneProcess) -> AsyncIterator[Agent]:
    if reason := _missing():
        pytest.skip(reason)
    from pilothouse.oci.testimage import build_test_image

    state = Path(tempfile.mkdtemp(prefix="ph-nr-"))  # short: conmon socket paths must fit
    build_test_image(state / "images" / "import" / "busybox.tar")
    parent = f"/pilothouse-nodes-test-{uuid.uuid4().hex[:8]}"
    agent = Agent(
        "r1",
        state,
        control_plane,
        flags=("--runtime", "runc", "--cgroup-parent", parent),
    )
    try:
        await agent.start()
        yield agent
    finally:
        await _clean_up(agent, parent)


async def _clean_up(agent: Agent, parent: str) -> None:
    """Stop the agent, then delete whatever containers, cgroups and mounts are left."""
    await agent.stop()
    from nodeagent.runtime.cgroups import Cgroups
    from nodeagent.runtime.runc import RuncRuntime
    from pilothouse.cli.cluster.cleanup import unmount_below

    runtime = RuncRuntime(agent.state_dir / "runtime", cgroup_parent=parent)
    for container in await runtime.list():
        await runtime.delete(container.id)
    Cgroups().remove(parent)
    # Every mount the agent left (rootfs, pod namespaces, volumes): rmtree cannot.
    unmount_below(agent.state_dir)
    shutil.rmtree(agent.state_dir, ignore_errors=True)


async def containers(stub: api_grpc.ControlPlaneStub) -> dict[str, tuple[str, int]]:
    """Pod name -> (container id, restart count) as `get pods -o yaml` shows them."""
    found = {}
    for pod in await listed(stub, "pods", NAMESPACE):
        for status in pod.status.container_statuses:
            found[pod.metadata.name] = (status.container_id, status.restart_count)
    return found


async def test_replicas_run_as_real_containers_with_logs_through_the_control_plane(
    control_plane: ControlPlaneProcess, runc_agent: Agent
) -> None:
    from nodeagent.runtime.runc import RuncRuntime

    async with control_plane.channel() as channel:
        stub = api_grpc.ControlPlaneStub(channel)
        documents, problems = loader.parse(DEPLOYMENT, source="hello.yaml")
        assert not problems, problems
        namespace = kinds.wrap(factories.namespace(name=NAMESPACE))
        await stub.Apply(api.ApplyRequest(object=namespace), timeout=10)
        await stub.Apply(api.ApplyRequest(object=kinds.wrap(documents[0].message)), timeout=10)

        async def running() -> object:
            pods = await listed(stub, "pods", NAMESPACE)
            phases = {p.metadata.name: (p.status.phase, p.spec.node_name) for p in pods}
            ok = len(pods) == 2 and all(v == ("Running", "r1") for v in phases.values())
            return ok or phases

        await eventually(running, "the replicas never ran on node r1", within=60)
        for pod in await listed(stub, "pods", NAMESPACE):
            name = pod.metadata.name

            async def logged(name: str = name) -> object:
                request = api.PodLogsRequest(namespace=NAMESPACE, pod=name, tail_lines=-1)
                data = b"".join([c.data async for c in stub.PodLogs(request, timeout=10)])
                return data == f"hello from {name}\n".encode() or data

            await eventually(logged, f"`pilothouse logs {name}` did not show its output")

        # Restarting the agent (same state dir) keeps the same containers: no duplicates, no
        # restarts, and the node is Ready again once the control plane re-fenced it.
        before = await containers(stub)
        assert len(before) == 2 and all(before.values()), before
        await runc_agent.stop()
        await runc_agent.start()

        async def same_containers() -> object:
            now = await containers(stub)
            [node] = await listed(stub, "nodes")
            ready = [c.status for c in node.status.conditions if c.type == "Ready"]
            # The node re-registered with the new agent's port, then was fenced back to Ready.
            port = node.status.daemon_endpoints.kubelet_endpoint.port
            registered = runc_agent.address.endswith(f":{port}")
            return (now == before and ready == ["True"] and registered) or (now, ready, port)

        await eventually(same_containers, "the restarted agent did not keep its containers")
        runtime = RuncRuntime(runc_agent.state_dir / "runtime", cgroup_parent=runc_agent.flags[-1])
        assert len(await runtime.list()) == 2, "a replica runs twice after the agent restarted"

        await stub.Delete(
            api.DeleteRequest(kind="deployments", namespace=NAMESPACE, name="hello"), timeout=10
        )

        async def gone() -> object:
            left = [c.id for c in await runtime.list()]
            return left == [] or left

        await eventually(gone, "containers of the deleted Deployment are still there", within=60)
