"""Per-node pod CIDRs, the agent's side, against a real control plane (mutual TLS, embedded
etcd) and hollow agents (`--runtime fake --network cni`, no pods run, so no plugin runs):

- an agent with no `--pod-cidr` gets the lowest free block of the cluster CIDR, its Node shows
  it, and its state dir remembers it; the next agent gets the next block;
- an agent asking for a range another node holds is refused, and its log says so and why;
- a restarted agent asks for the range its pods have addresses from, even when its Node was
  deleted meanwhile and a lower block is free;
- `--memory`/`--cpu` are the node's capacity as `get nodes` shows it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest

from pilothouse.client import ClientError, ErrorCode
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2
from tests.fixtures.controlplane import ControlPlaneProcess
from tests.fixtures.joined import JoinedAgent

REPO = Path(__file__).resolve().parents[2]
WAIT = 30.0


class Agent(JoinedAgent):
    """`python3 -m nodeagent --runtime fake --network cni`, joined to `plane`."""

    def __init__(
        self, name: str, state_dir: Path, plane: ControlPlaneProcess, flags: Sequence[str] = ()
    ) -> None:
        super().__init__(
            name, state_dir, plane, flags=("--runtime", "fake", "--network", "cni", *flags)
        )

    def remembered_pod_cidr(self) -> str:
        path = self.state_dir / "pod-cidr"
        return path.read_text().strip() if path.exists() else ""


@pytest.fixture
async def agents(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Agent]]]:
    """`await start(name, plane, *flags)`: one more agent; all are stopped at the end."""
    started: list[Agent] = []

    async def start(name: str, plane: ControlPlaneProcess, *flags: str) -> Agent:
        agent = Agent(name, tmp_path / "agents" / name, plane, flags)
        started.append(agent)
        await agent.start()
        return agent

    try:
        yield start
    finally:
        for agent in started:
            await agent.stop()


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(what)
        await asyncio.sleep(0.1)


async def node_pod_cidr(plane: ControlPlaneProcess, name: str) -> str | None:
    """The Node's spec.podCIDR ("" if it has none), or None when there is no such Node."""
    async with plane.client() as client:
        try:
            node = await client.get(Kind.NODE, name)
        except ClientError as error:
            if error.code is ErrorCode.NOT_FOUND:
                return None
            raise
    assert isinstance(node, objects_pb2.Node)
    return node.spec.pod_cidr


async def registered_pod_cidr(plane: ControlPlaneProcess, agent: Agent) -> str:
    found = ""

    async def there() -> bool:
        nonlocal found
        found = await node_pod_cidr(plane, agent.name) or ""
        return bool(found)

    await eventually(
        there, f"node {agent.name} never showed a pod CIDR; its agent said:\n{agent.log_tail()}"
    )
    return found


async def remembers(agent: Agent, pod_cidr: str) -> None:
    """The agent's state dir records `pod_cidr` (once it has read the registration's answer)."""

    async def recorded() -> bool:
        return agent.remembered_pod_cidr() == pod_cidr

    await eventually(
        recorded,
        f"agent {agent.name} did not record its pod CIDR {pod_cidr} in its state dir "
        f"(it has {agent.remembered_pod_cidr() or 'none'}):\n{agent.log_tail()}",
    )


async def cli(plane: ControlPlaneProcess, *argv: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "pilothouse.cli.main", *argv, "--server", plane.address],
        env=plane.cli_env(),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, f"pilothouse {' '.join(argv)} failed: {err.decode()}"
    return out.decode()


async def test_agents_get_pod_cidrs_from_the_control_plane_and_keep_them(
    control_plane_factory: Callable[..., ControlPlaneProcess],
    agents: Callable[..., Awaitable[Agent]],
) -> None:
    plane = control_plane_factory()
    n1 = await agents("n1", plane, "--memory", "3Gi", "--cpu", "3")
    assert await registered_pod_cidr(plane, n1) == "10.244.0.0/24", (
        "the first node of a fresh cluster should get the first block of 10.244.0.0/16"
    )
    await remembers(n1, "10.244.0.0/24")

    shown = json.loads(await cli(plane, "get", "nodes", "n1", "-o", "json"))
    spec = shown["spec"]
    assert spec.get("podCIDR") == "10.244.0.0/24", f"`get nodes` shows {spec}"
    assert shown["status"]["capacity"]["memory"] == "3Gi", (
        f"`get nodes` shows {shown['status']['capacity']} for an agent run with --memory 3Gi"
    )
    assert shown["status"]["capacity"]["cpu"] == "3"
    assert shown["status"]["allocatable"]["memory"] == "3Gi"
    table = await cli(plane, "get", "nodes")
    assert "3Gi" in table, f"`get nodes` does not show the 3Gi the node has:\n{table}"

    n2 = await agents("n2", plane)
    assert await registered_pod_cidr(plane, n2) == "10.244.1.0/24", (
        "the second node should get the next free block"
    )
    await remembers(n2, "10.244.1.0/24")

    # A range another node holds: refused, with the control plane's reason in the log.
    n3 = await agents("n3", plane, "--pod-cidr", "10.244.1.0/24")

    async def refused() -> bool:
        text = n3.log_path.read_text(errors="replace")
        return "overlaps 10.244.1.0/24" in text and "n2" in text

    await eventually(
        refused,
        "an agent asking for n2's pod CIDR did not say it was refused and why:\n" + n3.log_tail(),
    )
    assert await node_pod_cidr(plane, "n3") is None, "a node was registered with a taken range"
    assert n3.remembered_pod_cidr() == "", "a refused range was remembered as the node's"
    await n3.stop()

    # n2 restarted after its Node was deleted: it asks for the range its pods would have
    # addresses from, although a lower block (n1's, deleted too) is free now.
    await n1.stop()
    await n2.stop()
    async with plane.client() as client:
        await client.delete(Kind.NODE, "n1")
        await client.delete(Kind.NODE, "n2")
    # Deleting a Node cuts its certificate off: the agent joins again with a token, as a
    # person brings such a node back (its state dir keeps everything but its credentials).
    shutil.rmtree(n2.state_dir / "pki")
    await n2.start()
    assert await registered_pod_cidr(plane, n2) == "10.244.1.0/24", (
        "a restarted agent took a new pod CIDR while its pods have addresses from the old one"
    )
