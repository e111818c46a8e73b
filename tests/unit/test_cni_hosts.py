"""Node hosts without root: names, addresses and how a node reaches the machine's services."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilothouse.cli.cluster import iproute
from pilothouse.cli.cluster import netns as hosts
from pilothouse.cli.cluster.netns import HostNetwork, HostNetworkError, NodeHost, default_pod_cidrs


def test_names_fit_linux_limits_and_derive_from_the_cluster() -> None:
    network = HostNetwork()
    assert network.netns("c1", "node-1") == "ph-c1-node-1"
    for node in ("node-1", "a-very-long-node-name-that-goes-on-and-on"):
        link = network.link("c1", node)
        assert len(link) <= 15, f"interface name {link} is longer than Linux allows"
        assert link.startswith("phv"), "destroy finds veths by their prefix"
    assert network.link("c1", "node-1") != network.link("c1", "node-2")
    assert network.link("c1", "node-1") != network.link("c2", "node-1")
    assert network.bridge("c1") != network.bridge("c2"), "two clusters would share a bridge"
    assert len(network.bridge("c1")) <= 15
    assert HostNetwork(bridge="phbr0").bridge("c1") == "phbr0"


def test_addresses_follow_the_subnet() -> None:
    network = HostNetwork(subnet="172.30.5.0/24")
    assert network.gateway == "172.30.5.1"
    assert network.address(1) == "172.30.5.11"
    assert network.address(3) == "172.30.5.13"
    with pytest.raises(HostNetworkError, match="does not fit"):
        network.address(250)
    assert default_pod_cidrs(["a", "b"]) == {"a": "10.244.1.0/24", "b": "10.244.2.0/24"}


def test_a_bad_subnet_or_bridge_is_refused() -> None:
    with pytest.raises(ValueError):
        HostNetwork(subnet="172.30.0.5/24")
    with pytest.raises(ValueError, match="at least a /27"):
        HostNetwork(subnet="172.30.0.0/30")
    with pytest.raises(ValueError, match="15 characters"):
        HostNetwork(bridge="a-bridge-name-too-long")


def test_a_node_reaches_machine_services_through_the_bridge() -> None:
    host = NodeHost(
        name="node-1",
        netns="ph-c1-node-1",
        address="172.30.0.11",
        pod_cidr="10.244.1.0/24",
        gateway="172.30.0.1",
        link="phvx",
    )
    assert host.reach("127.0.0.1:5000") == "172.30.0.1:5000"
    assert host.reach("0.0.0.0:7443") == "172.30.0.1:7443"
    assert host.reach(":7443") == "172.30.0.1:7443"
    assert host.reach("172.30.0.12:10250") == "172.30.0.12:10250"
    assert host.exec_prefix() == ["ip", "netns", "exec", "ph-c1-node-1"]
    assert host.command(["pilothouse", "agent"]) == [
        "nsenter",
        "--net=/run/netns/ph-c1-node-1",
        "--",
        "pilothouse",
        "agent",
    ], "an agent must keep the machine's mount namespace (its mounts outlive it)"


def test_a_cluster_name_is_stable_for_its_data_dir(tmp_path: Path) -> None:
    name = hosts.cluster_name(tmp_path / "cluster")
    assert name == hosts.cluster_name(tmp_path / "cluster"), "down would not find what up made"
    assert name != hosts.cluster_name(tmp_path / "other")
    assert hosts._CLUSTER_NAME.match(name)


def test_a_free_subnet_avoids_routed_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(iproute, "routed", lambda ignore_dev="": {})
    assert hosts.free_subnet() == "172.30.0.0/24"
    taken = {"172.30.0.0/24": "phbaaaaaa", "172.30.1.0/24": "phbbbbbbb"}
    monkeypatch.setattr(iproute, "routed", lambda ignore_dev="": taken)
    assert hosts.free_subnet() == "172.30.2.0/24"
