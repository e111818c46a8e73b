"""Two real agents, each in its own node host, with CNI pod networking (as root).

What a user relies on: a pod gets an IP from its node's pod CIDR, shown as status.podIP; a pod
on node-1 fetches a page from a busybox httpd pod on node-2 by that IP, through the routes the
agents make from the node list pushed with the pods (the test pushes it, as the control plane
does; nobody else adds a route); the pod's hostPort answers on node-2's address; removing the
pods removes their namespaces and addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from nodeagent import config as agent_config
from pilothouse.cli.cluster.netns import NodeHost
from pilothouse.v1 import agent_pb2, agent_pb2_grpc, objects_pb2
from tests import factories
from tests.e2e.network import fetch, missing_iptables, missing_support

pytestmark = [pytest.mark.root, pytest.mark.slow]


def _missing() -> str | None:
    if reason := missing_support():
        return reason
    for tool in ("runc", "conmon"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if "--network" not in agent_config.parser().format_help():
        return "the agent has no --network flag yet (pod network wiring pending)"
    return None


class NodeAgent:
    """`python3 -m nodeagent --network cni` started inside a node host."""

    def __init__(self, host: NodeHost, cgroup_parent: str) -> None:
        from pilothouse.oci.testimage import build_test_image

        self.host = host
        self.cgroup_parent = cgroup_parent
        self.state = Path(tempfile.mkdtemp(prefix="ph-ag-"))  # short: conmon socket paths
        build_test_image(self.state / "images" / "import" / "busybox.tar")
        argv = [
            sys.executable, "-m", "nodeagent", "--name", host.name,
            "--listen", f"{host.address}:0", "--node-ip", host.address,
            "--state-dir", str(self.state), "--cgroup-parent", cgroup_parent,
            "--network", "cni", "--pod-cidr", host.pod_cidr, "--backoff-initial", "0.2",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            host.command(argv),
            stdout=subprocess.DEVNULL,
            stderr=open(self.state / "agent.log", "ab"),  # noqa: SIM115
        )
        addr = self.state / "agent.addr"
        deadline = time.monotonic() + 30
        while not (addr.exists() and addr.read_text().endswith("\n")):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"agent on {host.name} did not start:\n{self.log()}")
            time.sleep(0.05)
        self.address = addr.read_text().strip()

    def log(self) -> str:
        return (self.state / "agent.log").read_text(errors="replace")[-4000:]

    async def close(self) -> None:
        from nodeagent.runtime import mounts
        from nodeagent.runtime.cgroups import Cgroups
        from nodeagent.runtime.runc import RuncRuntime

        try:
            if self.proc.poll() is None:
                async with grpc.aio.insecure_channel(self.address) as channel:
                    stub = agent_pb2_grpc.NodeAgentStub(channel)
                    await stub.SyncPods(agent_pb2.SyncPodsRequest(), timeout=10)
                    for _ in range(100):
                        if not (await stub.ListPods(agent_pb2.ListPodsRequest())).pods:
                            break
                        await asyncio.sleep(0.1)
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            rt = RuncRuntime(self.state / "runtime", cgroup_parent=self.cgroup_parent)
            for c in await rt.list():
                await rt.delete(c.id)
            Cgroups().remove(self.cgroup_parent)
            for m in (self.state / "runtime" / "containers").glob("*/bundle/rootfs"):
                mounts.unmount(m)
            from nodeagent.network import netns

            for ns in (self.state / "netns").glob("*"):
                netns.delete(ns)
            shutil.rmtree(self.state, ignore_errors=True)


@pytest.fixture
async def agents(cluster_hosts: list[NodeHost]) -> AsyncIterator[list[NodeAgent]]:
    if reason := _missing():
        pytest.skip(reason)
    parent = f"/pilothouse-e2e-{uuid.uuid4().hex[:8]}"
    started: list[NodeAgent] = []
    try:
        for i, host in enumerate(cluster_hosts[:2]):
            started.append(NodeAgent(host, f"{parent}-{i}"))
        yield started
    finally:
        for agent in started:
            await agent.close()


def make_pod(name: str, script: str, *, host_port: int = 0, never: bool = False) -> objects_pb2.Pod:
    """A pod (tests.factories) whose container "app" runs `script` with sh, publishing its
    port 8080 on `host_port` if given; 1 s grace; restartPolicy Never if `never`."""
    app = factories.container(name="app", script=script, host_port=host_port)
    policy = "Never" if never else ""
    return factories.pod(name=name, restart_policy=policy, grace=1, containers=[app])


async def pod_status(address: str, name: str, check: object) -> objects_pb2.Pod:
    """Poll ListPods until `check(pod)` holds for the named pod."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = agent_pb2_grpc.NodeAgentStub(channel)
        last = None
        for _ in range(300):
            pods = {
                p.metadata.name: p for p in (await stub.ListPods(agent_pb2.ListPodsRequest())).pods
            }
            last = pods.get(name)
            if last is not None and check(last):  # type: ignore[operator]
                return last
            await asyncio.sleep(0.1)
    raise AssertionError(f"pod {name} never reached the expected state; last: {last}")


async def sync(
    address: str, *pods: objects_pb2.Pod, peers: list[agent_pb2.PeerNode] | None = None
) -> None:
    """Push `pods` (and, given `peers`, the node list the agent routes by)."""
    request = agent_pb2.SyncPodsRequest(pods=list(pods))
    if peers is not None:
        request.peers_included = True
        request.peers.extend(peers)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = agent_pb2_grpc.NodeAgentStub(channel)
        resp = await stub.SyncPods(request, timeout=10)
        assert dict(resp.rejected) == {}
        assert resp.routes_programmed, f"the agent did not route to its peers: {resp.routes_error}"


async def test_a_pod_fetches_a_page_from_a_pod_on_another_node(
    agents: list[NodeAgent],
) -> None:
    one, two = agents
    peers = [
        agent_pb2.PeerNode(name=a.host.name, address=a.host.address, pod_cidr=a.host.pod_cidr)
        for a in agents
    ]
    port = 0 if missing_iptables() else 30080
    web = make_pod("web", "exec httpd -f -p 8080 -h /etc", host_port=port)
    await sync(two.address, web, peers=peers)
    running = await pod_status(
        two.address, "web", lambda p: p.status.pod_ip and p.status.phase == "Running"
    )
    web_ip = running.status.pod_ip
    assert ipaddress.ip_address(web_ip) in ipaddress.ip_network(two.host.pod_cidr), (
        f"podIP {web_ip} is not from {two.host.name}'s pod CIDR {two.host.pod_cidr}"
    )
    assert running.status.host_ip == two.host.address
    client = make_pod(
        "client",
        f"for i in $(seq 50); do wget -q -O /tmp/page http://{web_ip}:8080/passwd && "
        "grep -q root /tmp/page && exit 0; sleep 0.2; done; exit 1",
        never=True,
    )
    await sync(one.address, client, peers=peers)
    done = await pod_status(
        one.address, "client", lambda p: p.status.phase in ("Succeeded", "Failed")
    )
    assert done.status.phase == "Succeeded", (
        f"a pod on {one.host.name} could not fetch from {web_ip} on {two.host.name}"
    )
    assert done.status.pod_ip.startswith(one.host.pod_cidr.rsplit(".", 1)[0])
    if port:
        body = await fetch(one.host.exec_prefix(), f"http://{two.host.address}:{port}/passwd")
        assert body.startswith("root:"), "the web pod's hostPort does not answer on its node"
    await sync(two.address)
    await sync(one.address)
    for agent in agents:
        for _ in range(100):
            if not list((agent.state / "netns").glob("*")):
                break
            await asyncio.sleep(0.1)
        assert not list((agent.state / "netns").glob("*")), (
            f"pod namespaces left on {agent.host.name} after its pods were removed"
        )
