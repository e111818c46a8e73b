"""A `--network cni` agent with no `--pod-cidr` gives its pods addresses from the block the
control plane allocated it (as root: the agent runs in a node host, a network namespace of its
own on a throw-away bridge, so the CNI bridge it makes is the node's, not the machine's).

The agent is hollow (`--runtime fake`: no containers) but its pod sandboxes are real: a
namespace per pod, wired by the CNI plugins with an address from the node's pod CIDR.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from pilothouse.cli.cluster.netns import NodeHost
from pilothouse.kinds import Kind
from pilothouse.manifests import loader
from pilothouse.v1 import objects_pb2
from tests import factories
from tests.e2e.network import missing_support, node_hosts
from tests.fixtures.controlplane import ControlPlaneProcess

pytestmark = [pytest.mark.root]

REPO = Path(__file__).resolve().parents[2]
WAIT = 30.0
NAMESPACE = "podcidr-cni"
DEPLOYMENT = factories.manifest(
    factories.deployment(
        namespace=NAMESPACE,
        labels={},
        replicas=2,
        grace=1,
        typed=True,
        containers=[factories.container(name="web")],
    )
)


@pytest.fixture
def host() -> Iterator[NodeHost]:
    if reason := missing_support():
        pytest.skip(reason)
    with node_hosts(1) as (made,):
        yield made


@pytest.fixture
def plane(host: NodeHost, tmp_path: Path) -> Iterator[ControlPlaneProcess]:
    """A control plane on the bridge, where the node reaches it."""
    made = ControlPlaneProcess(tmp_path / "controlplane", listen=f"{host.gateway}:0")
    try:
        made.start()
        yield made
    finally:
        made.stop()


@pytest.fixture
async def agent(host: NodeHost, plane: ControlPlaneProcess) -> AsyncIterator[Path]:
    """The agent on `host`, with no --pod-cidr; yields its state dir."""
    state = Path(tempfile.mkdtemp(prefix="ph-ag-"))
    argv = [
        sys.executable, "-m", "nodeagent", "--name", host.name,
        "--listen", f"{host.address}:0", "--node-ip", host.address,
        "--state-dir", str(state), "--runtime", "fake", "--network", "cni",
        "--backoff-initial", "0.2", *plane.join_flags(),
    ]  # fmt: skip
    with (state / "agent.log").open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            *host.command(argv),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,
        )
    try:
        await eventually(
            lambda: _served(state),
            f"the agent never served:\n{_tail(state)}",
        )
        yield state
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        from nodeagent.network import netns

        for leftover in (state / "netns").glob("*"):
            netns.delete(leftover)
        shutil.rmtree(state, ignore_errors=True)


async def _served(state: Path) -> bool:
    address = state / "agent.addr"
    return address.exists() and address.read_text().endswith("\n")


def _tail(state: Path) -> str:
    with contextlib.suppress(FileNotFoundError):
        return (state / "agent.log").read_text(errors="replace")[-4000:]
    return "(no log)"


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(what)
        await asyncio.sleep(0.1)


async def test_pods_get_addresses_from_the_allocated_pod_cidr(
    host: NodeHost, plane: ControlPlaneProcess, agent: Path
) -> None:
    cidr = ""
    pods: list[objects_pb2.Pod] = []
    async with plane.client() as client:

        async def allocated() -> bool:
            nonlocal cidr
            with contextlib.suppress(Exception):
                node = await client.get(Kind.NODE, host.name)
                cidr = node.spec.pod_cidr  # type: ignore[attr-defined]
            return bool(cidr)

        await eventually(allocated, f"the node never got a pod CIDR:\n{_tail(agent)}")
        assert cidr == "10.244.0.0/24", "the only node should get the first block"

        documents, problems = loader.parse(DEPLOYMENT, source="web.yaml")
        assert not problems, problems
        await client.apply(factories.namespace(name=NAMESPACE))
        await client.apply(documents[0].message)

        async def addressed() -> bool:
            nonlocal pods
            listed = await client.list(Kind.POD, namespace=NAMESPACE)
            pods = list(listed.items)  # type: ignore[arg-type]
            return len(pods) == 2 and all(p.status.pod_ip for p in pods)

        await eventually(
            addressed,
            f"the pods never got addresses: {[p.status for p in pods]}\n{_tail(agent)}",
        )
        for pod in pods:
            assert ipaddress.ip_address(pod.status.pod_ip) in ipaddress.ip_network(cidr), (
                f"pod {pod.metadata.name} has IP {pod.status.pod_ip}, not from its node's "
                f"pod CIDR {cidr}"
            )
        assert len({p.status.pod_ip for p in pods}) == 2, "two pods share an address"
        assert (agent / "pod-cidr").read_text().strip() == cidr

        await client.delete(Kind.DEPLOYMENT, "web", namespace=NAMESPACE)

        async def sandboxes_gone() -> bool:
            return not list((agent / "netns").glob("*"))

        await eventually(sandboxes_gone, "the pods' network namespaces were left behind")
