"""The Services data plane in a real kernel: ClusterIPs and NodePorts between namespaces.

A node namespace with two CNI pods and an outside client (tests/integration/servicesnet.py);
`DataPlane` programs its table there, and real TCP/UDP connections show what users would see:
load spread over endpoints from pods, from the node and from outside, hairpin, immediate
refusal without endpoints, affinity, a reprogram taking effect, and nothing left after remove.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nodeagent.services import requirements
from nodeagent.services.model import (
    Affinity,
    Endpoint,
    NodeFacts,
    Protocol,
    ProxyState,
    Service,
    ServicePort,
)
from nodeagent.services.proxy import DataPlane, DataPlaneError, Step
from nodeagent.services.render import render
from tests.integration import servicesnet as net
from tests.integration.servicesnet import ask, ask_udp, refused_within


def _missing() -> str | None:
    if shutil.which("nft") is None:
        return "nft is not installed (apt-get install nftables)"
    if not (net.PLUGIN_DIR / "bridge").exists():
        return "CNI plugins missing in /usr/lib/cni (apt-get install containernetworking-plugins)"
    if not Path("/proc/sys/net/bridge").exists():
        return "br_netfilter is not loaded (modprobe br_netfilter)"
    return None


pytestmark = [pytest.mark.root, pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]

WEB_IP, SELF_IP, EMPTY_IP, STICKY_IP, DNS_IP = (
    "10.96.0.10",
    "10.96.0.11",
    "10.96.0.12",
    "10.96.0.13",
    "10.96.0.53",
)
REQUESTS = 40  # all on one of two endpoints by chance: 2 * 2**-40


def state(topo: net.Topology, *, web: tuple[str, ...] = ("a", "b")) -> ProxyState:
    pods = topo.pods
    ep = {label: Endpoint(pod.ip, 8080) for label, pod in pods.items()}
    return ProxyState(
        node=NodeFacts(
            node_ips=(net.NODE_IP,),
            pod_cidrs=(net.POD_CIDR,),
            cluster_cidr=net.CLUSTER_CIDR,
            service_cidr=net.SERVICE_CIDR,
        ),
        services=(
            Service(
                "default",
                "web",
                WEB_IP,
                (
                    ServicePort(
                        80, name="http", node_port=30080, endpoints=tuple(ep[p] for p in web)
                    ),
                ),
            ),
            Service("default", "self", SELF_IP, (ServicePort(80, endpoints=(ep["a"],)),)),
            Service("default", "empty", EMPTY_IP, (ServicePort(80, node_port=30081),)),
            Service(
                "default",
                "sticky",
                STICKY_IP,
                (ServicePort(80, endpoints=(ep["a"], ep["b"])),),
                affinity=Affinity.CLIENT_IP,
            ),
            Service(
                "default",
                "dns",
                DNS_IP,
                (
                    ServicePort(
                        53,
                        Protocol.UDP,
                        endpoints=(Endpoint(pods["a"].ip, 5353), Endpoint(pods["b"].ip, 5353)),
                    ),
                ),
            ),
        ),
    )


@pytest.fixture
async def topo(tmp_path: Path) -> AsyncIterator[net.Topology]:
    async with net.topology(tmp_path) as topo:
        for pod in topo.pods.values():
            await topo.serve(pod, 8080)
            await topo.serve_udp(pod, 5353)
        yield topo


@pytest.fixture
async def plane(topo: net.Topology) -> AsyncIterator[DataPlane]:
    dp = DataPlane(netns=topo.node_netns, route_device=net.BRIDGE)
    try:
        yield dp
    finally:
        await dp.remove()


async def servers_seen(netns: str, ip: str, port: int) -> dict[str, int]:
    seen: dict[str, int] = {}
    for _ in range(REQUESTS):
        reply = await ask(netns, ip, port)
        seen[reply.server] = seen.get(reply.server, 0) + 1
    return seen


async def test_the_node_meets_the_data_plane_requirements(topo: net.Topology) -> None:
    assert await requirements.check(netns=topo.node_netns) == ()


async def test_cluster_ip_spreads_from_pods_and_from_the_node(
    topo: net.Topology, plane: DataPlane
) -> None:
    done = await plane.program(state(topo))
    assert done.services == 5 and done.rules > 0
    a, b = topo.pods["a"], topo.pods["b"]
    for who, netns in (("pod b", b.netns), ("pod a", a.netns), ("the node", topo.node)):
        seen = await servers_seen(netns, WEB_IP, 80)
        assert set(seen) == {"a", "b"}, f"from {who}, {WEB_IP}:80 reached only {seen}"
    replies = [await ask(b.netns, WEB_IP, 80) for _ in range(REQUESTS)]
    peers = {r.peer for r in replies if r.server == "a"}
    assert peers == {b.ip}, f"pod b ({b.ip}) reached pod a as {peers}: it must not be masqueraded"


async def test_a_pod_reaches_itself_through_its_service(
    topo: net.Topology, plane: DataPlane
) -> None:
    await plane.program(state(topo))
    a = topo.pods["a"]
    for _ in range(5):
        reply = await ask(a.netns, SELF_IP, 80)
        assert reply.server == "a"
        assert reply.peer != a.ip, "hairpin traffic must be masqueraded, else the reply is lost"


async def test_no_ready_endpoints_refuses_at_once(topo: net.Topology, plane: DataPlane) -> None:
    await plane.program(state(topo))
    cases = (
        ("pod a", topo.pods["a"].netns, EMPTY_IP, 80),
        ("the node", topo.node, EMPTY_IP, 80),
        ("outside", topo.client, net.NODE_IP, 30081),
        ("pod b, unknown port", topo.pods["b"].netns, WEB_IP, 81),
        ("the node, unknown port", topo.node, WEB_IP, 81),
    )
    for who, netns, ip, port in cases:
        # Refused, not timed out: a reject rule answers (a dropped packet would wait 5 s).
        try:
            await refused_within(netns, ip, port)
        except AssertionError as failure:
            raise AssertionError(f"from {who}: {failure}") from None


async def test_node_port_on_the_node_address(topo: net.Topology, plane: DataPlane) -> None:
    await plane.program(state(topo))
    for who, netns in (("outside", topo.client), ("a pod", topo.pods["b"].netns)):
        seen = await servers_seen(netns, net.NODE_IP, 30080)
        assert set(seen) == {"a", "b"}, f"from {who}, NodePort 30080 reached only {seen}"
    reply = await ask(topo.client, net.NODE_IP, 30080)
    assert reply.peer != net.CLIENT_IP, "NodePort traffic must be masqueraded to come back"


async def test_udp_and_client_ip_affinity(topo: net.Topology, plane: DataPlane) -> None:
    await plane.program(state(topo))
    b = topo.pods["b"]
    answered = {(await ask_udp(b.netns, DNS_IP, 53)).server for _ in range(REQUESTS)}
    assert answered == {"a", "b"}, f"UDP {DNS_IP}:53 reached only {answered}"
    sticky = {(await ask(b.netns, STICKY_IP, 80)).server for _ in range(20)}
    assert len(sticky) == 1, f"ClientIP affinity let one client reach {sticky}"


async def test_reprogramming_replaces_the_table_and_remove_leaves_nothing(
    topo: net.Topology, plane: DataPlane
) -> None:
    await plane.program(state(topo))
    await plane.program(state(topo, web=("b",)))
    seen = await servers_seen(topo.pods["a"].netns, WEB_IP, 80)
    assert set(seen) == {"b"}, f"an endpoint removed from the state still got traffic: {seen}"
    listing = await plane.listing()
    assert listing.count("table ip pilothouse") == 1
    await plane.remove()
    assert not await plane.present(), "the table is still there after remove()"
    routes = net.sh("ip", "-n", topo.node, "route", "show", net.SERVICE_CIDR)
    assert routes.strip() == "", f"the service route is still there: {routes}"
    await plane.remove()  # idempotent


async def test_a_failed_apply_leaves_the_previous_table_whole(
    topo: net.Topology, plane: DataPlane
) -> None:
    good = state(topo)
    await plane.program(good)
    before = await plane.listing()
    broken = render(good).replace_text().replace("jump services", "jump no-such-chain", 1)
    with pytest.raises(DataPlaneError, match="apply failed"):
        await plane._run(Step.APPLY, ["nft", "-f", "-"], stdin=broken)
    assert await plane.listing() == before, "a failed transaction changed the table"
    seen = await servers_seen(topo.pods["b"].netns, WEB_IP, 80)
    assert set(seen) == {"a", "b"}, f"after a failed apply, {WEB_IP}:80 reached only {seen}"
