"""Node hosts: where a local agent runs, and the address it has there.

A `NodeHost` turns an agent's argv into the command that starts it on that host, says which
address the agent listens on and reports, which pod CIDR its pods get addresses from (empty:
the agent's default pod network), and how that host reaches a service that runs on the
machine (the registry, the control plane). A `NodeNetwork` makes the hosts of a cluster and
removes them again, by the cluster's name alone (after a crash `down` has nothing else).

Two placements (`Placement`, `up --network`):
- `netns` (the default, `NetnsNetwork`): each node is a network namespace of its own on the
  cluster's bridge (`netns.HostNetwork`), its pods wired by CNI from the node's
  pod CIDR (the agents route between the nodes' pod CIDRs themselves); services listen on the
  bridge's address;
- `host` (`SharedNetwork`): every node shares the machine's network (address 127.0.0.1,
  commands unchanged, nothing to make); the escape hatch where namespaces cannot be made.

Pod CIDRs: node i (1-based) gets block i-1 of `CLUSTER_CIDR` in /24s, which is what the control
plane's allocator hands out when the nodes register in order (`up` registers them so) and
what it keeps when an agent asks for it.

Invariant: `destroy_all(cluster)` removes the cluster's hosts whatever placement made them, so
`down` needs no record of it.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import secrets
import shutil
import socket
from collections.abc import Sequence
from typing import Protocol

import structlog

from pilothouse.cli.cluster import netns

log = structlog.get_logger(__name__)

# The control plane's default --cluster-cidr and per-node block (controlplane.nodes.podcidr);
# `pilothouse` may not import the control plane, so the values are repeated here on purpose.
CLUSTER_CIDR = "10.244.0.0/16"
NODE_MASK = 24


class Placement(enum.Enum):
    NETNS = "netns"  # a network namespace per node on a bridge
    HOST = "host"  # every node on the machine's network


class NodeHost(Protocol):
    @property
    def name(self) -> str:
        """The node's name, e.g. "node-1"."""
        ...

    @property
    def address(self) -> str:
        """The node's IP: the agent listens on it and reports it as its hostIP."""
        ...

    @property
    def pod_cidr(self) -> str:
        """The node's pod CIDR ("": the agent's default pod network)."""
        ...

    def command(self, argv: Sequence[str]) -> list[str]:
        """The argv that runs `argv` (a long-lived agent) on this host."""
        ...

    def reach(self, address: str) -> str:
        """How this host reaches "HOST:PORT" of a service started on the machine."""
        ...


class NodeNetwork(Protocol):
    @property
    def service_host(self) -> str:
        """The address services on the machine listen on, so that every node reaches them."""
        ...

    def create(self, cluster: str, nodes: Sequence[str]) -> Sequence[NodeHost]:
        """Make (or complete) one host per node, in order (idempotent)."""
        ...

    def destroy(self, cluster: str) -> None:
        """Remove every host of `cluster` and what runs in it (idempotent, after a crash too)."""
        ...

    def create_controlplanes(self, cluster: str, names: Sequence[str]) -> Sequence[NodeHost]:
        """Hosts for control-plane members (no pod network), after `create`."""
        ...


class SharedHost:
    """A node on the machine's own network: loopback address, commands unchanged."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def address(self) -> str:
        return "127.0.0.1"

    @property
    def pod_cidr(self) -> str:
        return ""

    def command(self, argv: Sequence[str]) -> list[str]:
        return list(argv)

    def reach(self, address: str) -> str:
        return address


class SharedNetwork:
    """Every node on the machine's network: nothing to create or remove."""

    @property
    def service_host(self) -> str:
        return "127.0.0.1"

    def create(self, cluster: str, nodes: Sequence[str]) -> list[SharedHost]:
        return [SharedHost(name) for name in nodes]

    def create_controlplanes(self, cluster: str, names: Sequence[str]) -> list[SharedHost]:
        return [SharedHost(name) for name in names]

    def destroy(self, cluster: str) -> None:
        return None


class NetnsNetwork:
    """Each node in a network namespace of its own on the cluster's bridge.

    The bridge's subnet is the first free 172.30.X.0/24, picked by `create` (which must come
    before anything listens on `service_host`); if another cluster takes it at the same
    moment, a random free one is tried.
    """

    ATTEMPTS = 5

    def __init__(self, *, subnet: str | None = None) -> None:
        self._subnet = subnet
        self._network: netns.HostNetwork | None = None

    @property
    def service_host(self) -> str:
        if self._network is None:
            raise RuntimeError("the node hosts must be created before services listen")
        return self._network.gateway

    def create(self, cluster: str, nodes: Sequence[str]) -> list[netns.NodeHost]:
        cidrs = pod_cidrs(nodes)
        for attempt in range(self.ATTEMPTS):
            # The lowest free subnet first; after a collision, a random one, so two clusters
            # that collided do not collide again.
            preferred = netns.DEFAULT_SUBNET if attempt == 0 else _random_subnet()
            network = netns.HostNetwork(subnet=self._subnet or netns.free_subnet(preferred))
            try:
                made = network.create(cluster, cidrs)
            except netns.HostNetworkError as error:
                if self._subnet is not None or "overlaps" not in str(error):
                    raise
                if attempt == self.ATTEMPTS - 1:
                    raise
                log.info("hosts.subnet_taken", subnet=str(network.subnet), error=str(error))
                continue
            if (taken := network.overlapping(cluster)) and self._subnet is None:
                # Another cluster took the same subnet at the same moment: move away.
                log.info("hosts.subnet_collision", subnet=str(network.subnet), taken=taken)
                network.destroy(cluster, kill_processes=True)
                continue
            self._network = network
            return made
        raise netns.HostNetworkError(
            f"no 172.30.X.0/24 subnet stayed free for the nodes of {cluster} "
            f"after {self.ATTEMPTS} attempts (are many clusters starting at once?)"
        )

    def destroy(self, cluster: str) -> None:
        destroy_netns(cluster)

    def create_controlplanes(self, cluster: str, names: Sequence[str]) -> list[netns.NodeHost]:
        if self._network is None:
            raise RuntimeError("the node hosts (and the bridge) must be created first")
        return self._network.create_plain(cluster, names)


def _random_subnet() -> str:
    return f"172.30.{secrets.randbelow(63) + 1}.0/24"


def destroy_netns(cluster: str) -> None:
    """Remove the cluster's namespaces (killing what still runs in them), veths, bridge and
    iptables rules; nothing to do without root or iproute2."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return
    netns.HostNetwork().destroy(cluster, kill_processes=True)


def destroy_all(cluster: str) -> None:
    """Remove the hosts of `cluster`, whichever placement made them (idempotent)."""
    destroy_netns(cluster)


def network_for(placement: Placement) -> NodeNetwork:
    return NetnsNetwork() if placement is Placement.NETNS else SharedNetwork()


def missing_for(placement: Placement) -> str | None:
    """Why this machine cannot place nodes so, or None."""
    if placement is Placement.HOST:
        return None
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install iproute2 util-linux)"
    return None


def pod_cidrs(nodes: Sequence[str]) -> dict[str, str]:
    """Node name -> pod CIDR, in order: the blocks the control plane allocates in that order."""
    blocks = ipaddress.ip_network(CLUSTER_CIDR).subnets(new_prefix=NODE_MASK)
    return {name: str(block) for name, block in zip(nodes, blocks, strict=False)}


def node_names(count: int) -> list[str]:
    return [f"node-{i}" for i in range(1, count + 1)]


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on at `host` now (for fixed ports a config can name)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host.strip("[]"), 0))
        return int(probe.getsockname()[1])
