"""Pod sandboxes with real runc containers: a pod's containers share its namespace and IP.

The node is a node host (its own namespace on a bridge); the sandbox's CNI plugins run inside
it as they would for an agent started there.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from nodeagent.network import netns
from nodeagent.network.sandbox import Mode, PodNetworks, sandbox_id
from nodeagent.runtime import Status
from pilothouse.cli.cluster.netns import NodeHost
from tests import factories
from tests.e2e.network import fetch, missing_iptables, needs_network, node_hosts
from tests.fixtures.runtime import busybox_spec

pytestmark = needs_network()


@pytest.fixture
def host() -> Iterator[NodeHost]:
    with node_hosts(1) as (made,):
        yield made


@pytest.fixture
async def networks(host: NodeHost, tmp_path: Path) -> AsyncIterator[PodNetworks]:
    made = PodNetworks(
        mode=Mode.CNI,
        state_dir=tmp_path / "agent",
        node_ip=host.address,
        pod_cidr=host.pod_cidr,
        exec_prefix=host.exec_prefix(),
    )
    try:
        yield made
    finally:
        await made.detach_others([])


async def test_containers_of_a_pod_share_its_sandbox_and_answer_on_the_pod_ip(
    host: NodeHost, networks: PodNetworks, runc_runtime, busybox_rootfs: Path
) -> None:
    rt = runc_runtime
    port = 0 if missing_iptables() else 30080
    web = factories.pod(
        name="web", uid="uid-1", containers=[factories.container(name="web", host_port=port)]
    )
    sandbox = await networks.attach(web)
    assert sandbox.pod_ip.startswith("10.244.1."), f"pod IP {sandbox.pod_ip} is off the CIDR"
    server = replace(
        busybox_spec(busybox_rootfs, "sbx-web", "httpd", "-f", "-p", "8080", "-h", "/etc"),
        netns_path=sandbox.netns_path,
    )
    await rt.create(server)
    await rt.start(server.id)
    body = await fetch(host.exec_prefix(), f"http://{sandbox.pod_ip}:8080/passwd")
    assert body.startswith("root:"), "the pod's server does not answer on its pod IP"
    # A second container of the pod reaches the first one on localhost.
    sidecar = replace(
        busybox_spec(
            busybox_rootfs,
            "sbx-side",
            "sh",
            "-c",
            "for i in 1 2 3 4 5; do wget -q -O /dev/null http://127.0.0.1:8080/passwd "
            "&& exit 0; sleep 0.2; done; exit 1",
        ),
        netns_path=sandbox.netns_path,
    )
    await rt.create(sidecar)
    await rt.start(sidecar.id)
    done = await rt.wait(sidecar.id)
    assert done.exit_code == 0, "containers of one pod do not share the pod's network"
    if port:
        body = await fetch(host.exec_prefix(), f"http://{host.address}:{port}/passwd")
        assert body.startswith("root:"), "the pod's hostPort does not reach it"
    for cid in (server.id, sidecar.id):
        await rt.kill(cid, signal=9)
        await rt.delete(cid)
    await networks.detach(web)
    assert not netns.is_namespace(sandbox.netns_path), "the pod's namespace was left"
    assert await networks.detach_others([]) == [], "detach left something behind"


async def test_a_replaced_pod_gets_a_fresh_sandbox_and_orphans_are_removed(
    host: NodeHost, networks: PodNetworks, tmp_path: Path
) -> None:
    old, new = (
        factories.pod(name="web", uid="uid-1", containers=[factories.container(name="web")]),
        factories.pod(name="web", uid="uid-2", containers=[factories.container(name="web")]),
    )
    first = await networks.attach(old)
    second = await networks.attach(new)
    assert first.netns_path != second.netns_path and first.pod_ip != second.pod_ip
    assert await networks.attach(new) == second, "a retried start changed the pod's sandbox"
    assert await networks.detach_others([new]) == [sandbox_id(old)]
    assert not netns.is_namespace(first.netns_path)
    restarted = PodNetworks(
        mode=Mode.CNI,
        state_dir=tmp_path / "agent",
        pod_cidr=host.pod_cidr,
        exec_prefix=host.exec_prefix(),
    )
    assert await restarted.detach_others([]) == [sandbox_id(new)], (
        "a restarted agent does not find the sandboxes of pods it no longer runs"
    )
    leases = tmp_path / "agent" / "cni" / "ipam" / "pilothouse"
    assert not (leases / second.pod_ip).exists(), "the removed pod's address stayed leased"


async def test_host_mode_shares_the_node_network(runc_runtime, busybox_rootfs: Path) -> None:
    rt = runc_runtime
    host_mode = PodNetworks(mode=Mode.HOST, state_dir=Path("/nonexistent"), node_ip="1.2.3.4")
    sandbox = await host_mode.attach(
        factories.pod(name="h", uid="uid-h", containers=[factories.container(name="web")])
    )
    assert sandbox.pod_ip == "1.2.3.4"
    spec = replace(
        busybox_spec(busybox_rootfs, "sbx-host", "sh", "-c", "exit 0"),
        netns_path=sandbox.netns_path,
    )
    await rt.create(spec)
    state = await rt.state(spec.id)
    assert state.pid > 0
    container_ns = os.readlink(f"/proc/{state.pid}/ns/net")
    assert container_ns == os.readlink("/proc/self/ns/net"), "the container has its own network"
    await rt.start(spec.id)
    assert (await rt.wait(spec.id)).status is Status.STOPPED
    await rt.delete(spec.id)
    none = await PodNetworks(mode=Mode.NONE, state_dir=Path("/nonexistent")).attach(
        factories.pod(name="n", uid="uid-n", containers=[factories.container(name="web")])
    )
    assert none.netns_path is None and none.pod_ip == ""
