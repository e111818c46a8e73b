"""Node hosts: network namespaces on a bridge that behave like machines on a switch.

Each test makes its own cluster (unique name, bridge and 172.30.X.0/24 subnet) and removes it;
the pods are wired by the real CNI plugins run inside their node's namespace.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from nodeagent.network import cni
from pilothouse.cli.cluster.netns import HostNetwork, HostNetworkError, NodeHost
from tests.e2e.network import (
    PLUGIN_DIR,
    Sandboxes,
    fetch,
    missing_iptables,
    needs_network,
    node_hosts,
    pod_prefix,
    reachable,
    run_id,
    sh,
)

pytestmark = needs_network()


@pytest.fixture
def hosts() -> Iterator[list[NodeHost]]:
    with node_hosts(2) as made:
        yield made


@pytest.fixture
async def pods(hosts: list[NodeHost], tmp_path: Path) -> AsyncIterator[list[Sandboxes]]:
    """One pod sandbox set per node, its CNI plugins run inside the node's namespace."""
    made = [
        Sandboxes(
            cni.CniNetwork(
                PLUGIN_DIR,
                cni.conflist(host.pod_cidr, ipam_dir=str(tmp_path / host.name / "ipam")),
                tmp_path / host.name / "cni",
                exec_prefix=host.exec_prefix(),
            ),
            tmp_path / host.name / "netns",
        )
        for host in hosts
    ]
    try:
        yield made
    finally:
        for sandboxes in made:
            await sandboxes.close()


async def run(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(*argv, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 0, f"{' '.join(argv)} failed: {err.decode()}"


async def test_a_node_reaches_the_other_node_and_the_bridge(hosts: list[NodeHost]) -> None:
    one, two = hosts
    assert await reachable(one.exec_prefix(), two.address), (
        f"{one.name} cannot reach {two.name} at {two.address}"
    )

    async def greet(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"control plane here\n")
        await writer.drain()
        writer.close()

    # A service of the machine (the control plane) listens on the bridge address.
    server = await asyncio.start_server(greet, one.gateway, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        address = one.reach(f"127.0.0.1:{port}")
        assert address == f"{one.gateway}:{port}"
        proc = await asyncio.create_subprocess_exec(
            *one.exec_prefix(), "timeout", "3", "busybox", "nc", *address.split(":"),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        assert out == b"control plane here\n", f"{one.name} cannot reach {address}"
    finally:
        server.close()
        await server.wait_closed()


async def test_pods_on_different_nodes_reach_each_other_by_pod_ip(
    hosts: list[NodeHost], pods: list[Sandboxes]
) -> None:
    web = await pods[1].add("default_web-1")
    client = await pods[0].add("default_client-1")
    assert web.network.ip.startswith("10.244.2."), f"{web.ip} is not from node-2's pod CIDR"
    assert client.network.ip.startswith("10.244.1.")
    pods[1].serve(web, 8080, "served on node-2")
    # Agents route to the other nodes' pod CIDRs themselves (nodeagent.network.routes); here
    # no agent runs, so the test adds the host-gw routes an agent would.
    for here, there in ((hosts[0], hosts[1]), (hosts[1], hosts[0])):
        await run("ip", "-n", here.netns, "route", "replace", there.pod_cidr, "via", there.address)
    body = await fetch(pod_prefix(client), f"http://{web.ip}:8080/")
    assert body == "served on node-2", "a pod on node-1 cannot fetch from a pod on node-2"


@pytest.mark.skipif(missing_iptables() is not None, reason=str(missing_iptables()))
async def test_a_host_port_is_reachable_from_another_node(
    hosts: list[NodeHost], pods: list[Sandboxes]
) -> None:
    one, two = hosts
    web = await pods[0].add("default_hp-1", [cni.PortMapping(host_port=30080, container_port=80)])
    pods[0].serve(web, 80, "hostPort on node-1")
    body = await fetch(two.exec_prefix(), f"http://{one.address}:30080/")
    assert body == "hostPort on node-1"


async def test_cutting_a_link_isolates_the_node_until_restored(hosts: list[NodeHost]) -> None:
    one, two = hosts
    network = HostNetwork()
    network.set_link(two, False)
    assert not await reachable(one.exec_prefix(), two.address), "node-2 is still reachable"
    network.set_link(two, True)
    for _ in range(20):
        if await reachable(one.exec_prefix(), two.address):
            break
    else:
        raise AssertionError("node-2 stays unreachable after its link was restored")


def test_destroy_removes_everything_even_after_a_crash() -> None:
    with node_hosts(2) as made:
        cluster = made[0].netns.split("-")[1]
        subnet = made[0].gateway.rsplit(".", 1)[0] + "."
        sleeper = sh(*made[0].exec_prefix(), "sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!")
        # A crashed `up` leaves only names behind: a fresh HostNetwork finds them.
        removed = HostNetwork().destroy(cluster, kill_processes=True)
        assert int(sleeper) in removed.killed_pids, "a process left in a node namespace survived"
        assert sorted(removed.namespaces) == sorted(h.netns for h in made)
        assert HostNetwork.namespaces(cluster) == []
        links = sh("ip", "-br", "link", "show")
        assert HostNetwork().bridge(cluster) not in links, "the cluster's bridge was left"
        assert made[0].link[:9] not in links, f"veths of the cluster were left:\n{links}"
        assert subnet not in sh("ip", "-4", "addr", "show"), "the bridge address was left"
        again = HostNetwork().destroy(cluster)
        assert again.namespaces == [] and again.links == [], "a second destroy found leftovers"


def test_a_subnet_in_use_is_refused() -> None:
    with node_hosts(1) as (host,):
        subnet = host.gateway.rsplit(".", 1)[0] + ".0/24"
        other = f"t{run_id()}"
        with pytest.raises(HostNetworkError, match="overlaps"):
            HostNetwork(subnet=subnet).create(other, {"node-1": "10.244.1.0/24"})
        assert HostNetwork.namespaces(other) == []


def test_names_are_checked_before_anything_is_made() -> None:
    with pytest.raises(ValueError, match="lowercase letters and digits"):
        HostNetwork().create("my-cluster", {"node-1": "10.244.1.0/24"})
    with pytest.raises(ValueError, match="overlap"):
        HostNetwork().create("x", {"a": "10.244.0.0/16", "b": "10.244.1.0/24"})
