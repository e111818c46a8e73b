"""Which way each other node's pods are reached (nodeagent.network.routes.plan), and the VTEP
and MTU that follow from a node's pod CIDR and link: pure, no kernel."""

from __future__ import annotations

from nodeagent.network.routes import (
    VXLAN_DEVICE,
    Backend,
    Peer,
    RouteMode,
    plan,
    pod_mtu,
    vtep_address,
    vtep_mac,
)

PEERS = [
    Peer("a", "10.0.0.1", "10.244.1.0/24"),
    Peer("b", "10.0.0.2", "10.244.2.0/24"),
    Peer("c", "192.168.5.3", "10.244.3.0/24"),
    Peer("d", "", "10.244.4.0/24"),  # not registered with an address yet
]
ON_LINK = {"10.0.0.2": "eth0"}  # b shares a's link; c is behind a router


def routes_of(mode: RouteMode) -> tuple[dict[str, tuple[Backend, str]], list[str]]:
    routes, problems = plan(
        PEERS, node="a", own_pod_cidr="10.244.1.0/24", mode=mode, on_link=ON_LINK
    )
    return {r.peer.name: (r.backend, r.device) for r in routes}, problems


def test_auto_goes_direct_on_a_shared_link_and_through_vxlan_otherwise() -> None:
    routes, problems = routes_of(RouteMode.AUTO)
    assert routes == {"b": (Backend.HOST_GW, "eth0"), "c": (Backend.VXLAN, VXLAN_DEVICE)}
    assert problems == []


def test_forced_modes_and_none() -> None:
    assert routes_of(RouteMode.VXLAN)[0] == {
        "b": (Backend.VXLAN, VXLAN_DEVICE),
        "c": (Backend.VXLAN, VXLAN_DEVICE),
    }
    routes, problems = routes_of(RouteMode.HOST_GW)
    assert routes == {"b": (Backend.HOST_GW, "eth0")}
    assert problems == ["node c (192.168.5.3) is on no link of this node"]
    assert routes_of(RouteMode.NONE) == ({}, [])


def test_a_peer_holding_this_nodes_pod_cidr_is_never_routed_to() -> None:
    routes, _ = plan(
        [Peer("old-a", "10.0.0.9", "10.244.1.0/24")],
        node="a",
        own_pod_cidr="10.244.1.0/24",
        mode=RouteMode.AUTO,
        on_link={"10.0.0.9": "eth0"},
    )
    assert routes == []


def test_peers_on_this_very_machine_are_never_routed_to() -> None:
    shared = [Peer("b", "127.0.0.1", "10.244.2.0/24"), Peer("c", "10.0.0.1", "10.244.3.0/24")]
    routes, problems = plan(
        shared,
        node="a",
        own_pod_cidr="10.244.1.0/24",
        mode=RouteMode.AUTO,
        on_link={},
        node_ip="10.0.0.1",
    )
    assert (routes, problems) == ([], [])


def test_vtep_and_mtu_follow_from_the_pod_cidr_and_the_link() -> None:
    assert vtep_address("10.244.3.0/24") == "10.244.3.0"
    assert vtep_mac("10.244.3.0/24") == "02:70:0a:f4:03:00"
    assert pod_mtu(1500, RouteMode.AUTO) == 1450
    assert pod_mtu(1500, RouteMode.VXLAN) == 1450
    assert pod_mtu(9000, RouteMode.HOST_GW) == 9000
