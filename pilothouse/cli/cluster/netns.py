"""Node hosts: one network namespace per node on a bridge, so one machine runs a real cluster.

A *node host* is a network namespace "ph-<cluster>-<node>" with its own address on the
cluster's bridge, like a VM on a switch (kind does the same with Docker containers):

    root namespace:  bridge (default "phb<hash>", 172.30.0.1/24)  <- control plane, registry
                        |  veth "phv<hash><hash>" per node
    node namespace:  eth0 172.30.0.(10+i)/24, lo up, ip_forward on

Pods live in namespaces below their node (the CNI bridge "ph0" is created inside the node
namespace), so pod CIDRs (10.244.i.0/24) exist only inside node namespaces. Nothing here adds
a default route, NAT or forwarding in the root namespace: traffic from a node or a pod can reach
the bridge subnet and the other nodes' pods, and nothing else. Nodes switch at layer 2 on the
bridge, so the root namespace's ip_forward is never needed and never touched. The routes to the
other nodes' pod CIDRs are the agents' own (host-gw over the bridge, from the node list the
control plane pushes: nodeagent.network.routes), as on machines that are not made here.

Invariants:
- every name derives from the cluster's name (netns "ph-<cluster>-<node>", bridge alias
  "pilothouse cluster <cluster>", interfaces named by hashes of cluster and node), so
  `destroy(cluster)` finds everything after a crash with no state of ours; cluster names are
  lowercase letters and digits only, so "ph-a-" can never match another cluster's namespaces;
- `create` is idempotent (it ensures each piece) and undoes everything when it fails;
- `destroy` is idempotent and removes every namespace, veth, bridge and iptables rule of the
  cluster; it refuses nothing and reports what it removed;
- a subnet already routed in the root namespace by anything else is refused (a cluster never
  shadows a real network).

Commands run synchronously (`ip` answers in milliseconds); async callers use
`asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import re
import shutil
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from pilothouse.cli.cluster import iproute
from pilothouse.cli.cluster.iproute import HostNetworkError

log = structlog.get_logger(__name__)

NETNS_DIR = Path("/run/netns")
DEFAULT_SUBNET = "172.30.0.0/24"
FIRST_NODE_OFFSET = 10  # node i (1-based) gets the subnet's host number 10 + i
FIRST_CONTROLPLANE_OFFSET = 1  # control plane i (1-based, up to 8) gets host number 1 + i
_CLUSTER_NAME = re.compile(r"^[a-z0-9]{1,32}$")
_NODE_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class NodeHost:
    """A node's network namespace and its place on the cluster bridge."""

    name: str  # the node's name, e.g. "node-1"
    netns: str  # the namespace's name under /run/netns, "ph-<cluster>-<node>"
    address: str  # the node's IP on the bridge: agents listen on it, report it as hostIP
    pod_cidr: str  # the node's pod CIDR, routed to this node by every other node's agent
    gateway: str = ""  # the bridge's address: how the node reaches the machine's services
    link: str = ""  # the root-namespace end of the node's veth (cut it to isolate the node)

    @property
    def netns_path(self) -> str:
        return str(NETNS_DIR / self.netns)

    def exec_prefix(self) -> list[str]:
        """Run a command in the node's network namespace, as `ip netns exec` does.

        `ip netns exec` also gives the command a mount namespace of its own (to show the
        node's /sys), so mounts it makes are invisible outside it: fine for one-shot commands.
        """
        return ["ip", "netns", "exec", self.netns]

    def enter_prefix(self) -> list[str]:
        """Run a command in the node's network namespace and the machine's mount namespace.

        For agents: the overlay mounts and pod namespace files an agent makes stay visible
        to the next agent process started after a crash, and to `pilothouse down`.
        """
        return ["nsenter", f"--net={self.netns_path}", "--"]

    def command(self, argv: Sequence[str]) -> list[str]:
        """The argv that runs `argv` (a long-lived process such as an agent) on this host."""
        return [*self.enter_prefix(), *argv]

    def reach(self, address: str) -> str:
        """How this host reaches "HOST:PORT" of a service started in the root namespace.

        Loopback and wildcard hosts become the bridge address (the service must listen on
        it or on all addresses); any other address is kept.
        """
        host, _, port = address.rpartition(":")
        if host in ("", "0.0.0.0", "127.0.0.1", "localhost", "[::]", "::"):
            return f"{self.gateway}:{port}"
        return address


@dataclass(frozen=True, slots=True)
class Removed:
    """What `destroy` removed (empty lists when nothing of the cluster was left)."""

    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    iptables_rules: list[str] = field(default_factory=list)
    killed_pids: list[int] = field(default_factory=list)


def default_pod_cidrs(names: Sequence[str]) -> dict[str, str]:
    """Pod CIDRs for nodes in order: 10.244.1.0/24, 10.244.2.0/24, ... (the control plane's
    allocator will replace this)."""
    return {name: f"10.244.{i}.0/24" for i, name in enumerate(names, start=1)}


def cluster_name(data_dir: str | os.PathLike[str]) -> str:
    """A cluster name derived from its data dir, so `down` after a crash finds the same one."""
    return "c" + short_hash(str(Path(data_dir).absolute()), 10)


def free_subnet(preferred: str = DEFAULT_SUBNET) -> str:
    """`preferred` if nothing in the root namespace routes it, else the first free
    172.30.X.0/24 (two local clusters then run side by side)."""
    candidates = [preferred] + [f"172.30.{x}.0/24" for x in range(1, 256)]
    taken = [ipaddress.ip_network(r, strict=False) for r in iproute.routed()]
    for candidate in candidates:
        subnet = ipaddress.ip_network(candidate, strict=True)
        if not any(subnet.overlaps(t) for t in taken):
            return str(subnet)
    raise HostNetworkError("no free 172.30.X.0/24 subnet for node hosts")


def short_hash(text: str, size: int = 6) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


class HostNetwork:
    """Makes and removes the node hosts of clusters on one machine."""

    def __init__(self, *, subnet: str = DEFAULT_SUBNET, bridge: str | None = None) -> None:
        self.subnet = ipaddress.ip_network(subnet, strict=True)
        if self.subnet.version != 4 or self.subnet.num_addresses < 32:
            raise ValueError(f"node subnet {subnet} must be IPv4 and at least a /27")
        if bridge is not None and not 0 < len(bridge) <= 15:
            raise ValueError(f"bridge name {bridge!r} must have 1 to 15 characters")
        self._bridge = bridge
        self.gateway = str(self.subnet.network_address + 1)

    # -- names -----------------------------------------------------------------------------

    def bridge(self, cluster: str) -> str:
        return self._bridge or f"phb{short_hash(cluster)}"

    @staticmethod
    def netns(cluster: str, node: str) -> str:
        return f"ph-{cluster}-{node}"

    @staticmethod
    def link(cluster: str, node: str) -> str:
        return f"phv{short_hash(cluster)}{short_hash(node, 5)}"

    def address(self, index: int) -> str:
        """The address of the `index`-th node (1-based)."""
        host = self.subnet.network_address + FIRST_NODE_OFFSET + index
        if host not in self.subnet or host == self.subnet.broadcast_address:
            raise HostNetworkError(f"node {index} does not fit in {self.subnet}")
        return str(host)

    # -- create / destroy ------------------------------------------------------------------------

    def create(self, cluster: str, nodes: Mapping[str, str]) -> list[NodeHost]:
        """Make (or complete) a host per node; `nodes` maps node name -> pod CIDR, in order."""
        _check_names(cluster, nodes)
        self._refuse_foreign_subnet(cluster)
        hosts = [
            NodeHost(
                name=name,
                netns=self.netns(cluster, name),
                address=self.address(i),
                pod_cidr=str(ipaddress.ip_network(cidr, strict=True)),
                gateway=self.gateway,
                link=self.link(cluster, name),
            )
            for i, (name, cidr) in enumerate(nodes.items(), start=1)
        ]
        try:
            self._ensure_bridge(cluster)
            for host in hosts:
                self._ensure_node(cluster, host)
            self._ensure_forwarding(cluster)
        except BaseException:
            with contextlib.suppress(Exception):
                self.destroy(cluster)
            raise
        log.info("hosts.created", cluster=cluster, nodes=[h.name for h in hosts],
                 bridge=self.bridge(cluster), subnet=str(self.subnet))  # fmt: skip
        return hosts

    def destroy(self, cluster: str, *, kill_processes: bool = False) -> Removed:
        """Remove every namespace, veth, bridge and iptables rule of `cluster` (idempotent).

        With `kill_processes`, processes still inside the cluster's namespaces (what a crashed
        `up` left) are killed first; otherwise a namespace with processes stays alive, unnamed,
        until they end.
        """
        _check_cluster(cluster)
        removed = Removed()
        for ns in self.namespaces(cluster):
            if kill_processes:
                for pid in iproute.netns_pids(ns):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                        removed.killed_pids.append(pid)
            iproute.ip("netns", "delete", ns, check=False)
            removed.namespaces.append(ns)
        tag = f"phv{short_hash(cluster)}"
        alias = _alias(cluster)
        for link in iproute.links():
            name = link.get("ifname", "")
            if name.startswith(tag) or name == self.bridge(cluster) or link.get("ifalias") == alias:
                iproute.ip("link", "delete", name, check=False)
                removed.links.append(name)
        removed.iptables_rules.extend(iproute.delete_forward_rules(_rule_tag(cluster)))
        log.info("hosts.destroyed", cluster=cluster, namespaces=removed.namespaces,
                 links=removed.links, killed=removed.killed_pids)  # fmt: skip
        return removed

    def create_plain(self, cluster: str, names: Sequence[str]) -> list[NodeHost]:
        """Hosts with no pod network (control planes: "cp-1" …) on the cluster's bridge, at
        host numbers 2, 3 … of the subnet (below the nodes'); `create` must have made the
        bridge. Idempotent."""
        _check_cluster(cluster)
        if len(names) > FIRST_NODE_OFFSET - FIRST_CONTROLPLANE_OFFSET - 1:
            raise HostNetworkError("at most 8 control-plane hosts fit below the nodes' addresses")
        made = [
            NodeHost(
                name=name,
                netns=self.netns(cluster, name),
                address=str(self.subnet.network_address + FIRST_CONTROLPLANE_OFFSET + i),
                pod_cidr="",
                gateway=self.gateway,
                link=self.link(cluster, name),
            )
            for i, name in enumerate(names, start=1)
        ]
        for host in made:
            if not _NODE_NAME.match(host.name):
                raise ValueError(f"host name {host.name!r} is not a DNS-1123 label")
            self._ensure_node(cluster, host)
        log.info("hosts.created", cluster=cluster, controlplanes=[h.name for h in made])
        return made

    def set_link(self, node: NodeHost, up: bool) -> None:
        """Connect (`up`) or cut a node's link to the bridge, as pulling its cable would."""
        iproute.ip("link", "set", node.link, "up" if up else "down")
        log.info("hosts.link", node=node.name, up=up)

    @staticmethod
    def namespaces(cluster: str) -> list[str]:
        """The cluster's namespaces that exist now."""
        prefix = f"ph-{cluster}-"
        if not NETNS_DIR.is_dir():
            return []
        return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))

    def processes(self, cluster: str) -> dict[str, list[int]]:
        """The pids inside each of the cluster's namespaces."""
        return {ns: iproute.netns_pids(ns) for ns in self.namespaces(cluster)}

    # -- pieces ----------------------------------------------------------------------------------

    def _ensure_bridge(self, cluster: str) -> None:
        bridge = self.bridge(cluster)
        if not iproute.link_exists(bridge):
            iproute.ip("link", "add", bridge, "type", "bridge")
        iproute.ip("link", "set", bridge, "alias", _alias(cluster))
        iproute.ip("addr", "replace", f"{self.gateway}/{self.subnet.prefixlen}", "dev", bridge)
        iproute.ip("link", "set", bridge, "up")

    def _ensure_node(self, cluster: str, host: NodeHost) -> None:
        if not (NETNS_DIR / host.netns).exists():
            iproute.ip("netns", "add", host.netns)
        if not iproute.link_exists(host.link):
            iproute.ip("link", "add", host.link, "type", "veth", "peer", "name", "eth0",
                "netns", host.netns)  # fmt: skip
        iproute.ip("link", "set", host.link, "alias", _alias(cluster))
        iproute.ip("link", "set", host.link, "master", self.bridge(cluster), "up")
        iproute.ip("-n", host.netns, "link", "set", "lo", "up")
        iproute.ip("-n", host.netns, "addr", "replace", f"{host.address}/{self.subnet.prefixlen}",
            "dev", "eth0")  # fmt: skip
        iproute.ip("-n", host.netns, "link", "set", "eth0", "up")
        # The node routes between its pods' bridge and eth0, inside its own namespace only.
        iproute.run(["ip", "netns", "exec", host.netns, "sysctl", "-qw", "net.ipv4.ip_forward=1"])

    def overlapping(self, cluster: str) -> dict[str, str]:
        """Routes in the root namespace, other than this cluster's bridge's, that overlap its
        subnet (destination -> device). Empty when the subnet is the cluster's alone; checked
        again after `create`, since two clusters created at once could both pass the check."""
        return {
            dst: dev
            for dst, dev in iproute.routed(ignore_dev=self.bridge(cluster)).items()
            if ipaddress.ip_network(dst, strict=False).overlaps(self.subnet)
        }

    def _refuse_foreign_subnet(self, cluster: str) -> None:
        for dst, dev in self.overlapping(cluster).items():
            raise HostNetworkError(
                f"node subnet {self.subnet} overlaps {dst} on {dev}; "
                "pick another subnet (is another cluster running?)"
            )

    def _ensure_forwarding(self, cluster: str) -> None:
        """Let bridged node traffic pass a root FORWARD chain that drops by default.

        Only needed when br_netfilter hands bridged frames to iptables and the policy is
        not ACCEPT (Docker sets DROP); the rule is tagged with the cluster for `destroy`.
        """
        call = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
        if not call.exists() or call.read_text().strip() != "1" or not shutil.which("iptables"):
            return
        if "-P FORWARD ACCEPT" in iproute.run(["iptables", "-S", "FORWARD"]):
            return
        if iproute.forward_rules(_rule_tag(cluster)):
            return
        bridge = self.bridge(cluster)
        iproute.run(["iptables", "-I", "FORWARD", "-i", bridge, "-o", bridge, "-m", "comment",
                     "--comment", _rule_tag(cluster), "-j", "ACCEPT"])  # fmt: skip


# -- names ---------------------------------------------------------------------------------------


def _check_cluster(cluster: str) -> None:
    if not _CLUSTER_NAME.match(cluster):
        raise ValueError(f"cluster name {cluster!r} must be 1-32 lowercase letters and digits")


def _check_names(cluster: str, nodes: Mapping[str, str]) -> None:
    _check_cluster(cluster)
    if not nodes:
        raise ValueError("a cluster needs at least one node")
    for name in nodes:
        if not _NODE_NAME.match(name):
            raise ValueError(f"node name {name!r} is not a DNS-1123 label")
    cidrs = [ipaddress.ip_network(c, strict=True) for c in nodes.values()]
    for i, a in enumerate(cidrs):
        for b in cidrs[i + 1 :]:
            if a.overlaps(b):
                raise ValueError(f"pod CIDRs {a} and {b} overlap")


def _alias(cluster: str) -> str:
    return f"pilothouse cluster {cluster}"


def _rule_tag(cluster: str) -> str:
    return f"pilothouse-{cluster}"
