"""Routes to the other nodes' pods, from the node list the control plane pushes (the *peers*).

Each node's pods get addresses from its pod CIDR (the CNI bridge routes those locally); this
module makes every OTHER node's pod CIDR reachable, as flannel does, so no person or harness
adds a route by hand:
- host-gw: a peer whose address is on one of this node's links is reached directly:
  `ip route replace <its pod CIDR> via <its address> dev <link>`;
- vxlan: a peer behind a router is reached through a kernel VXLAN device (`ph.vxlan`, VNI 1,
  UDP 8472, no learning): the device holds this node's VTEP address (the network address of
  its own pod CIDR, /32) and MAC (derived from the pod CIDR, `vtep_mac`), and for each such
  peer there is a route `<pod CIDR> via <its VTEP address> dev ph.vxlan onlink`, a permanent
  neighbour entry for that address with the peer's MAC, and a forwarding entry sending that MAC
  to the peer's address. Nothing has to be published: every VTEP address and MAC follows from
  the pod CIDRs in the pushed list.

`RouteMode` (`--pod-routes`): auto (host-gw where the peer is on a link, else vxlan), host-gw,
vxlan, none. The pods' MTU (`pod_mtu`) leaves room for the VXLAN header (50 bytes) whenever
vxlan may be used, as flannel's does, so a pod's packets fit whichever way they leave.

Invariants:
- level-triggered: `push` compares the routes this module owns (marked `proto 158`), the
  VXLAN device and its neighbour and forwarding entries with the peers, and adds, replaces and
  deletes until they match; a push of the same peers changes nothing; routes of anyone else
  are never touched;
- this node itself, peers with no address or pod CIDR, a peer whose pod CIDR is this node's
  own, and peers on this very machine (this node's address, or loopback: several agents
  sharing one network namespace) are skipped: routes to them would lead nowhere;
- pushes are serialised; one that fails says why (`RoutesOutcome.error`) and the next push
  (at the latest the control plane's periodic resync) tries again from the state it finds.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)

ROUTE_PROTO = "158"  # marks the routes this module owns (iproute2 `proto`)
VXLAN_DEVICE = "ph.vxlan"
VXLAN_VNI = 1
VXLAN_PORT = 8472  # Linux's and flannel's VXLAN port
VXLAN_OVERHEAD = 50  # outer Ethernet, IPv4, UDP and VXLAN headers
DEFAULT_MTU = 1500


class RouteMode(enum.Enum):
    AUTO = "auto"
    HOST_GW = "host-gw"
    VXLAN = "vxlan"
    NONE = "none"


class Backend(enum.Enum):
    HOST_GW = "host-gw"
    VXLAN = "vxlan"


@dataclass(frozen=True, slots=True)
class Peer:
    """A node of the cluster: its pods (`pod_cidr`) are reached through `address`."""

    name: str
    address: str
    pod_cidr: str


@dataclass(frozen=True, slots=True)
class PeerRoute:
    """How one peer's pod CIDR is reached from this node."""

    peer: Peer
    backend: Backend
    device: str  # host-gw: the link the peer is on; vxlan: VXLAN_DEVICE


@dataclass(frozen=True, slots=True)
class RoutesOutcome:
    programmed: bool
    error: str = ""
    host_gw: int = 0
    vxlan: int = 0


def vtep_address(pod_cidr: str) -> str:
    """A node's VTEP address: its pod CIDR's network address (never given to a pod)."""
    return str(ipaddress.ip_network(pod_cidr, strict=False).network_address)


def vtep_mac(pod_cidr: str) -> str:
    """A node's VTEP MAC, derived from its pod CIDR: locally administered, unicast."""
    packed = ipaddress.ip_network(pod_cidr, strict=False).network_address.packed
    return "02:70:" + ":".join(f"{b:02x}" for b in packed)


def plan(
    peers: Sequence[Peer],
    *,
    node: str,
    own_pod_cidr: str,
    mode: RouteMode,
    on_link: dict[str, str],
    node_ip: str = "",
) -> tuple[list[PeerRoute], list[str]]:
    """The routes to make for `peers` (pure). `on_link`: peer address -> the link it is
    directly on (absent: behind a router). Returns the routes and, for peers that cannot be
    reached in this mode, one problem each."""
    routes: list[PeerRoute] = []
    problems: list[str] = []
    if mode is RouteMode.NONE:
        return routes, problems
    for peer in sorted(peers, key=lambda p: p.name):
        if peer.name == node or not peer.address or not peer.pod_cidr:
            continue
        if own_pod_cidr and peer.pod_cidr == own_pod_cidr:
            continue
        if peer.address == node_ip or _loopback(peer.address):
            continue
        link = on_link.get(peer.address)
        if mode is RouteMode.VXLAN or (mode is RouteMode.AUTO and link is None):
            routes.append(PeerRoute(peer, Backend.VXLAN, VXLAN_DEVICE))
        elif link is None:
            problems.append(f"node {peer.name} ({peer.address}) is on no link of this node")
        else:
            routes.append(PeerRoute(peer, Backend.HOST_GW, link))
    return routes, problems


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def pod_mtu(link_mtu: int, mode: RouteMode) -> int:
    """The pods' MTU on a node whose link has `link_mtu`."""
    return link_mtu - VXLAN_OVERHEAD if mode in (RouteMode.AUTO, RouteMode.VXLAN) else link_mtu


class PeerRoutes:
    """Programs this node's routes to its peers' pods (see the module docstring)."""

    def __init__(
        self,
        *,
        node: str,
        node_ip: str,
        mode: RouteMode = RouteMode.AUTO,
        own_pod_cidr: Callable[[], str] = lambda: "",
        exec_prefix: Sequence[str] = (),
    ) -> None:
        """`exec_prefix` runs `ip`/`bridge` in the node's namespace when the caller is not in
        it (tests); an agent runs in its node's namespace and leaves it empty."""
        self._node = node
        self._node_ip = node_ip
        self._mode = mode
        self._own = own_pod_cidr
        self._prefix = list(exec_prefix)
        self._lock = asyncio.Lock()

    @property
    def mode(self) -> RouteMode:
        return self._mode

    async def push(self, peers: Sequence[Peer]) -> RoutesOutcome:
        async with self._lock:
            try:
                return await self._converge(peers)
            except RoutesError as error:
                log.warning("node.routes_failed", error=str(error))
                return RoutesOutcome(programmed=False, error=str(error))

    async def cleanup(self) -> None:
        """Remove every route, device and entry of this module (tests, `--pod-routes none`)."""
        async with self._lock:
            await self._delete_stale_routes(keep=set())
            await self._run("ip", "link", "delete", VXLAN_DEVICE, check=False)

    async def _converge(self, peers: Sequence[Peer]) -> RoutesOutcome:
        own = self._own()
        node_link = await self._link_of(self._node_ip) if self._mode is not RouteMode.NONE else ""
        on_link = {}
        for peer in peers:
            if peer.address and peer.name != self._node:
                found = await self._on_link(peer.address)
                if found:
                    on_link[peer.address] = found
        routes, problems = plan(
            peers,
            node=self._node,
            own_pod_cidr=own,
            mode=self._mode,
            on_link=on_link,
            node_ip=self._node_ip,
        )
        vxlan = [r for r in routes if r.backend is Backend.VXLAN]
        if vxlan:
            if not own:
                raise RoutesError("no pod CIDR yet for this node's VXLAN address")
            if not node_link:
                raise RoutesError(f"the node address {self._node_ip} is on no link")
            await self._ensure_vxlan(own, node_link)
            await self._sync_vxlan_entries(vxlan)
        else:
            await self._run("ip", "link", "delete", VXLAN_DEVICE, check=False)
        lines = []
        for route in routes:
            cidr = route.peer.pod_cidr
            if route.backend is Backend.HOST_GW:
                via = f"via {route.peer.address} dev {route.device}"
            else:
                via = f"via {vtep_address(cidr)} dev {VXLAN_DEVICE} onlink"
            lines.append(f"route replace {cidr} {via} proto {ROUTE_PROTO}")
        if lines:
            await self._run("sysctl", "-qw", "net.ipv4.ip_forward=1")
            await self._batch("ip", lines)
        await self._delete_stale_routes(keep={r.peer.pod_cidr for r in routes})
        if problems:
            raise RoutesError("; ".join(problems))
        host_gw = len(routes) - len(vxlan)
        log.debug("node.routes", host_gw=host_gw, vxlan=len(vxlan))
        return RoutesOutcome(programmed=True, host_gw=host_gw, vxlan=len(vxlan))

    async def _ensure_vxlan(self, own: str, link: str) -> None:
        mtu = await self._mtu(link)
        found = await self._json("ip", "-d", "link", "show", VXLAN_DEVICE, check=False)
        info = found[0].get("linkinfo", {}).get("info_data", {}) if found else {}
        if found and (info.get("id") != VXLAN_VNI or info.get("local") != self._node_ip):
            await self._run("ip", "link", "delete", VXLAN_DEVICE)
            found = []
        if not found:
            await self._run("ip", "link", "add", VXLAN_DEVICE, "type", "vxlan",
                "id", str(VXLAN_VNI), "local", self._node_ip, "dev", link,
                "dstport", str(VXLAN_PORT), "nolearning")  # fmt: skip
        await self._run("ip", "link", "set", VXLAN_DEVICE, "address", vtep_mac(own),
            "mtu", str(mtu - VXLAN_OVERHEAD), "up")  # fmt: skip
        await self._run("ip", "addr", "replace", f"{vtep_address(own)}/32", "dev", VXLAN_DEVICE)

    async def _sync_vxlan_entries(self, routes: Sequence[PeerRoute]) -> None:
        macs = {vtep_mac(r.peer.pod_cidr): r.peer.address for r in routes}
        neighbours = {vtep_address(r.peer.pod_cidr): vtep_mac(r.peer.pod_cidr) for r in routes}
        for entry in await self._json("bridge", "fdb", "show", "dev", VXLAN_DEVICE):
            mac, dst = entry.get("mac", ""), entry.get("dst", "")
            if dst and macs.get(mac) != dst:
                await self._run("bridge", "fdb", "del", mac, "dev", VXLAN_DEVICE, "dst", dst,
                    check=False)  # fmt: skip
        for entry in await self._json("ip", "neigh", "show", "dev", VXLAN_DEVICE):
            address = entry.get("dst", "")
            if address and address not in neighbours:
                await self._run("ip", "neigh", "del", address, "dev", VXLAN_DEVICE, check=False)
        await self._batch(
            "bridge",
            [f"fdb replace {mac} dev {VXLAN_DEVICE} dst {dst} self permanent"
             for mac, dst in macs.items()],
        )  # fmt: skip
        await self._batch(
            "ip",
            [f"neigh replace {address} lladdr {mac} dev {VXLAN_DEVICE} nud permanent"
             for address, mac in neighbours.items()],
        )  # fmt: skip

    async def _delete_stale_routes(self, *, keep: set[str]) -> None:
        for route in await self._json("ip", "-4", "route", "show", "proto", ROUTE_PROTO):
            dst = route.get("dst", "")
            if dst and dst not in keep:
                await self._run("ip", "route", "del", dst, "proto", ROUTE_PROTO, check=False)

    # -- what the node has -----------------------------------------------------------------

    async def _link_of(self, address: str) -> str:
        for link in await self._json("ip", "-4", "addr", "show"):
            for info in link.get("addr_info", []):
                if info.get("local") == address:
                    return str(link.get("ifname", ""))
        return ""

    async def _on_link(self, address: str) -> str:
        """The link `address` is directly on ("" when it is reached through a router)."""
        found = await self._json("ip", "-4", "route", "get", address, check=False)
        if not found or "gateway" in found[0] or found[0].get("dev") == VXLAN_DEVICE:
            return ""
        device = str(found[0].get("dev", ""))
        return "" if device in ("", "lo") else device

    async def _mtu(self, link: str) -> int:
        found = await self._json("ip", "link", "show", link)
        return int(found[0].get("mtu", DEFAULT_MTU)) if found else DEFAULT_MTU

    # -- commands --------------------------------------------------------------------------

    async def _json(self, *argv: str, check: bool = True) -> list[dict]:  # type: ignore[type-arg]
        out = await self._run(argv[0], "-j", *argv[1:], check=check)
        try:
            found = json.loads(out or "[]")
        except ValueError:
            return []
        return found if isinstance(found, list) else []

    async def _batch(self, tool: str, lines: Sequence[str]) -> None:
        if lines:
            await self._run(tool, "-force", "-batch", "-", stdin="\n".join(lines) + "\n")

    async def _run(self, *argv: str, check: bool = True, stdin: str | None = None) -> str:
        proc = await asyncio.create_subprocess_exec(
            *self._prefix,
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        if check and proc.returncode != 0:
            raise RoutesError(f"{' '.join(argv)}: {err.decode().strip() or 'failed'}")
        return out.decode()


async def link_mtu(node_ip: str) -> int:
    """The MTU of the link holding `node_ip` (DEFAULT_MTU when none does)."""
    probe = PeerRoutes(node="", node_ip=node_ip)
    link = await probe._link_of(node_ip)
    return await probe._mtu(link) if link else DEFAULT_MTU


class RoutesError(Exception):
    """A command that programs routes failed; the message says which and why."""
