"""Routes to other nodes' pods in a real kernel: host-gw on a shared link, VXLAN across a router.

Four network namespaces made here: a router R between two links, nodes A and C on the first
(10.90.1.0/24), node B on the second (10.90.2.0/24). Each node has a device ("pods", one end
of a veth pair) holding the first address of its pod CIDR, standing in for its pods.
`PeerRoutes` programs each node from the same node list, as agents do from the control plane's
push; real pings between the pod
addresses show what users would see: A reaches C directly (host-gw) and B through the VXLAN
device (the router knows no pod CIDR); a node that leaves the list is no longer routed to,
and the device goes when no VXLAN peer is left; a push of the same list changes nothing; the
pods' MTU leaves room for VXLAN's header; `cleanup` leaves nothing of ours.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from nodeagent.network.routes import (
    ROUTE_PROTO,
    VXLAN_DEVICE,
    Peer,
    PeerRoutes,
    RouteMode,
    vtep_mac,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 is not installed"),
]

NODES = {  # name -> (address, pod CIDR, router side)
    "a": ("10.90.1.2", "10.244.1.0/24", "1"),
    "b": ("10.90.2.2", "10.244.2.0/24", "2"),
    "c": ("10.90.1.3", "10.244.3.0/24", "1"),
}


def sh(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr.strip()}"
    return done.stdout


class Lab:
    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.ns = {name: f"phrt-{tag}-{name}" for name in ("r", *NODES)}
        self.tag = tag

    def ip(self, node: str, *args: str) -> str:
        return sh("ip", "-n", self.ns[node], *args)

    def make(self) -> None:
        for ns in self.ns.values():
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        router = self.ns["r"]
        for side in ("1", "2"):
            sh("ip", "-n", router, "link", "add", f"br{side}", "type", "bridge")
            sh("ip", "-n", router, "addr", "add", f"10.90.{side}.1/24", "dev", f"br{side}")
            sh("ip", "-n", router, "link", "set", f"br{side}", "up")
        sh("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for name, (address, cidr, side) in NODES.items():
            ns, veth = self.ns[name], f"v{self.tag}{name}"
            sh("ip", "-n", router, "link", "add", veth, "type", "veth", "peer", "name", "eth0",
               "netns", ns)  # fmt: skip
            sh("ip", "-n", router, "link", "set", veth, "master", f"br{side}", "up")
            self.ip(name, "addr", "add", f"{address}/24", "dev", "eth0")
            self.ip(name, "link", "set", "eth0", "up")
            self.ip(name, "route", "add", "default", "via", f"10.90.{side}.1")
            self.ip(name, "link", "add", "pods", "type", "veth", "peer", "name", "pods-peer")
            self.ip(name, "addr", "add", f"{pod_ip(cidr)}/24", "dev", "pods")
            self.ip(name, "link", "set", "pods-peer", "up")
            self.ip(name, "link", "set", "pods", "up")

    def remove(self) -> None:
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=30)

    def routes(self, node: str) -> PeerRoutes:
        address, cidr, _ = NODES[node]
        return PeerRoutes(
            node=node,
            node_ip=address,
            mode=RouteMode.AUTO,
            own_pod_cidr=lambda: cidr,
            exec_prefix=("ip", "netns", "exec", self.ns[node]),
        )

    def reaches(self, node: str, other: str) -> bool:
        """A ping from `node`'s pod address to `other`'s gets an answer."""
        done = subprocess.run(
            ["ip", "netns", "exec", self.ns[node], "ping", "-c", "1", "-W", "2", "-I",
             pod_ip(NODES[node][1]), pod_ip(NODES[other][1])],
            capture_output=True, timeout=30,
        )  # fmt: skip
        return done.returncode == 0

    def owned(self, node: str) -> dict[str, str]:
        """The routes of ours on `node`: destination -> device."""
        found = json.loads(self.ip(node, "-j", "route", "show", "proto", ROUTE_PROTO) or "[]")
        return {r["dst"]: r["dev"] for r in found}

    def has_vxlan(self, node: str) -> bool:
        found = subprocess.run(["ip", "-n", self.ns[node], "link", "show", VXLAN_DEVICE],
                               capture_output=True, timeout=30)  # fmt: skip
        return found.returncode == 0


def pod_ip(cidr: str) -> str:
    return cidr.rsplit(".", 1)[0] + ".1"


def peers(*names: str) -> list[Peer]:
    return [Peer(name=n, address=NODES[n][0], pod_cidr=NODES[n][1]) for n in names]


@pytest.fixture
def lab() -> Iterator[Lab]:
    if shutil.which("ping") is None:
        pytest.skip("ping is not installed (apt-get install iputils-ping)")
    made = Lab()
    try:
        made.make()
        yield made
    finally:
        made.remove()


async def test_nodes_route_to_each_others_pods_directly_or_through_vxlan(lab: Lab) -> None:
    routes = {name: lab.routes(name) for name in NODES}
    assert not lab.reaches("a", "b"), "pods reached each other before any route was made"
    everyone = peers("a", "b", "c")
    for name, programmer in routes.items():
        outcome = await programmer.push(everyone)
        assert outcome.programmed, f"node {name}: {outcome.error}"
    assert (routes["a"].mode, (await routes["a"].push(everyone)).host_gw) == (RouteMode.AUTO, 1)
    assert lab.owned("a") == {"10.244.3.0/24": "eth0", "10.244.2.0/24": VXLAN_DEVICE}, (
        "node a should reach c on its link and b through VXLAN"
    )
    for one, other in (("a", "b"), ("b", "a"), ("a", "c"), ("c", "a"), ("b", "c")):
        assert lab.reaches(one, other), f"a pod on {one} does not reach a pod on {other}"
    link = json.loads(lab.ip("a", "-j", "-d", "link", "show", VXLAN_DEVICE))[0]
    assert link["mtu"] == 1450, "the VXLAN device leaves no room for its header"
    assert link["address"] == vtep_mac(NODES["a"][1])

    before = {name: lab.owned(name) for name in NODES}
    for programmer in routes.values():
        assert (await programmer.push(everyone)).programmed
    assert {name: lab.owned(name) for name in NODES} == before, "a same push changed routes"

    # b leaves the cluster: nobody routes to it, and a needs no VXLAN device any more.
    for name in ("a", "c"):
        assert (await routes[name].push(peers("a", "c"))).programmed
    assert lab.owned("a") == {"10.244.3.0/24": "eth0"}
    assert not lab.has_vxlan("a"), "the VXLAN device stayed with no peer behind a router"
    assert not lab.reaches("a", "b")
    assert lab.reaches("a", "c")

    # b joins again: routed to at once.
    for programmer in routes.values():
        assert (await programmer.push(everyone)).programmed
    assert lab.reaches("c", "b") and lab.reaches("a", "b")

    for programmer in routes.values():
        await programmer.cleanup()
    for name in NODES:
        assert lab.owned(name) == {}, f"routes of ours left on {name}"
        assert not lab.has_vxlan(name), f"the VXLAN device left on {name}"


async def test_host_gw_refuses_a_node_behind_a_router_and_says_so(lab: Lab) -> None:
    address, cidr, _ = NODES["a"]
    programmer = PeerRoutes(
        node="a",
        node_ip=address,
        mode=RouteMode.HOST_GW,
        own_pod_cidr=lambda: cidr,
        exec_prefix=("ip", "netns", "exec", lab.ns["a"]),
    )
    outcome = await programmer.push(peers("a", "b", "c"))
    assert not outcome.programmed
    assert outcome.error == "node b (10.90.2.2) is on no link of this node"
    assert lab.owned("a") == {"10.244.3.0/24": "eth0"}, "the reachable peer was not routed"
    await programmer.cleanup()
