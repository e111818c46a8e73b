"""Pod networking with the real CNI plugins, inside a node namespace made by the test.

The plugins run inside the node's namespace (`ip netns exec`), as they do for an agent that
runs there, so the pod bridge, its addresses and portmap's iptables rules all live in a
namespace of ours and vanish with it.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nodeagent.network import cni, netns
from tests.e2e.network import (
    PLUGIN_DIR,
    Sandboxes,
    fetch,
    in_netns,
    missing_iptables,
    needs_network,
    pod_prefix,
    reachable,
    run_id,
    sh,
)

pytestmark = needs_network()

POD_CIDR = "10.244.0.0/24"


@dataclass
class Node:
    netns: str
    network: cni.CniNetwork
    pods: Sandboxes
    ipam_dir: Path

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns]

    def network_again(self) -> cni.CniNetwork:
        """The same node's network as a restarted agent builds it."""
        return cni.CniNetwork(
            PLUGIN_DIR,
            self.network.conf,
            self.network.state_dir,
            exec_prefix=self.prefix(),
        )


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    name = f"phcni-{run_id()}"
    sh("ip", "netns", "add", name)
    try:
        ipam_dir = tmp_path / "ipam"
        network = cni.CniNetwork(
            PLUGIN_DIR,
            cni.conflist(POD_CIDR, ipam_dir=str(ipam_dir)),
            tmp_path / "cni",
            exec_prefix=["ip", "netns", "exec", name],
        )
        pods = Sandboxes(network, tmp_path / "netns")
        try:
            yield Node(name, network, pods, ipam_dir)
        finally:
            await pods.close()
    finally:
        sh("ip", "netns", "delete", name, check=False)
    leftover = sh("ip", "netns", "list")
    assert name not in leftover, f"node namespace {name} was left behind"


def leased(node: Node, ip: str) -> bool:
    return (node.ipam_dir / "pilothouse" / ip).exists()


async def test_pods_get_distinct_addresses_and_reach_each_other(node: Node) -> None:
    a, b, c = await asyncio.gather(*(node.pods.add(f"default_web-{i}") for i in range(3)))
    ips = {a.ip, b.ip, c.ip}
    assert len(ips) == 3, f"pods share addresses: {ips}"
    for ip in ips:
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(POD_CIDR), (
            f"pod address {ip} is outside the node's pod CIDR {POD_CIDR}"
        )
    assert a.network.gateway == "10.244.0.1"
    node.pods.serve(b, 8080, "hello from b")
    assert await fetch(pod_prefix(a), f"http://{b.ip}:8080/") == "hello from b"
    assert await reachable(pod_prefix(c), a.ip), f"pod c cannot ping pod a at {a.ip}"
    loopback = in_netns(pod_prefix(a), ["ip", "-br", "link", "show", "lo"])
    assert "UP" in loopback, f"the pod's loopback is down: {loopback}"


async def test_teardown_releases_the_address_and_the_interface(node: Node) -> None:
    pod = await node.pods.add("default_gone-1")
    assert leased(node, pod.ip), "host-local recorded no lease for the pod"
    veths = in_netns(node.prefix(), ["ip", "-br", "link", "show", "type", "veth"])
    assert len(veths.splitlines()) == 1, veths
    await node.network.teardown(pod.id)
    assert not leased(node, pod.ip), f"address {pod.ip} is still leased after teardown"
    veths = in_netns(node.prefix(), ["ip", "-br", "link", "show", "type", "veth"])
    assert veths.strip() == "", f"the pod's veth is left on the node: {veths}"
    await node.network.teardown(pod.id)  # idempotent
    assert node.network.attached() == {}


async def test_a_restarted_agent_tears_down_a_pod_whose_namespace_is_gone(node: Node) -> None:
    pod = await node.pods.add("default_crashed-1")
    netns.delete(pod.netns_path)  # the sandbox vanished while no agent ran
    restarted = node.network_again()
    assert restarted.attached() == {pod.id: pod.network}, "the restarted agent lost the pod IP"
    await restarted.teardown(pod.id)
    assert not leased(node, pod.ip), f"address {pod.ip} leaked after a crash"
    assert restarted.attached() == {}


@pytest.mark.skipif(missing_iptables() is not None, reason=str(missing_iptables()))
async def test_host_port_reaches_the_pod_until_teardown(node: Node) -> None:
    pod = await node.pods.add(
        "default_hp-1", [cni.PortMapping(host_port=18080, container_port=8080)]
    )
    node.pods.serve(pod, 8080, "via hostPort")
    gateway = pod.network.gateway  # an address of the node itself
    assert await fetch(node.prefix(), f"http://{gateway}:18080/") == "via hostPort"
    await node.network.teardown(pod.id)
    rules = in_netns(node.prefix(), ["iptables", "-t", "nat", "-S"])
    assert "18080" not in rules, f"hostPort rules left after teardown:\n{rules}"
