"""What a node's Services data plane is programmed from: plain, frozen, validated data.

Vocabulary (as in Kubernetes):
- *service port*: one (port, protocol) of a Service, with its ready endpoints and, for a
  NodePort Service, its node port;
- *endpoint*: a ready backend of one service port: a pod IP and the container port the
  service port's targetPort resolved to on that pod;
- *node facts*: the node's own addresses (where NodePorts are open), its pod CIDR(s), the
  cluster CIDR (all pods of the cluster) and the service CIDR (where ClusterIPs live).

Invariants:
- every value is checked at construction (addresses parse, ports are in range, names are
  DNS labels), so the renderer can put them in nft text without quoting or escaping, and a
  bad value fails where it was made, naming the field;
- a headless Service (no ClusterIP) has nothing for the data plane; the renderer skips it;
- endpoints of a port are kept in the order given and de-duplicated, so the rendered table is
  a pure function of the state.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass, field

DEFAULT_AFFINITY_TIMEOUT_S = 10800  # Kubernetes' sessionAffinityConfig.clientIP default (3 h)
_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
_PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")  # a DNS label


class Protocol(enum.Enum):
    TCP = "tcp"
    UDP = "udp"
    SCTP = "sctp"


class Affinity(enum.Enum):
    NONE = "None"
    CLIENT_IP = "ClientIP"


class InvalidState(ValueError):
    """A value the data plane cannot be programmed with; the message names the field."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A ready backend: pod `ip`, container `port`."""

    ip: str
    port: int

    def __post_init__(self) -> None:
        _ipv4(self.ip, "endpoint.ip")
        _port(self.port, "endpoint.port")

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServicePort:
    """One port of a Service; `node_port` 0 when the Service is not a NodePort."""

    port: int
    protocol: Protocol = Protocol.TCP
    name: str = ""
    node_port: int = 0
    endpoints: tuple[Endpoint, ...] = ()

    def __post_init__(self) -> None:
        _port(self.port, "port")
        if self.node_port:
            _port(self.node_port, "nodePort")
        if self.name and not _PORT_NAME.match(self.name):
            raise InvalidState(f"port name {self.name!r} is not a DNS label")
        object.__setattr__(self, "endpoints", tuple(dict.fromkeys(self.endpoints)))

    @property
    def key(self) -> str:
        """The port's name within its Service: its name, else its number."""
        return self.name or str(self.port)


@dataclass(frozen=True, slots=True)
class Service:
    """A Service as the data plane sees it; `cluster_ip` "" for a headless Service."""

    namespace: str
    name: str
    cluster_ip: str
    ports: tuple[ServicePort, ...]
    affinity: Affinity = Affinity.NONE
    affinity_timeout_s: int = DEFAULT_AFFINITY_TIMEOUT_S

    def __post_init__(self) -> None:
        for value, path in ((self.namespace, "metadata.namespace"), (self.name, "metadata.name")):
            if not _NAME.match(value):
                raise InvalidState(f"{path} {value!r} is not a DNS name")
        if self.cluster_ip:
            _ipv4(self.cluster_ip, "spec.clusterIP")
        if not 0 < self.affinity_timeout_s <= 86400:
            raise InvalidState(
                f"sessionAffinityConfig.clientIP.timeoutSeconds {self.affinity_timeout_s} "
                "is outside 1..86400"
            )
        seen: set[tuple[int, Protocol]] = set()
        for port in self.ports:
            if (port.port, port.protocol) in seen:
                raise InvalidState(
                    f"spec.ports: {port.protocol.name}/{port.port} appears twice in "
                    f"{self.namespace}/{self.name}"
                )
            seen.add((port.port, port.protocol))

    @property
    def headless(self) -> bool:
        return not self.cluster_ip


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """The node's addresses and the cluster's ranges."""

    node_ips: tuple[str, ...] = ()
    pod_cidrs: tuple[str, ...] = ()
    cluster_cidr: str = ""
    service_cidr: str = ""

    def __post_init__(self) -> None:
        for ip in self.node_ips:
            _ipv4(ip, "node IP")
        for cidr in self.pod_cidrs:
            _cidr(cidr, "pod CIDR")
        if self.cluster_cidr:
            _cidr(self.cluster_cidr, "cluster CIDR")
        if self.service_cidr:
            _cidr(self.service_cidr, "service CIDR")

    @property
    def pod_network(self) -> tuple[str, ...]:
        """Where pods' addresses come from: the cluster CIDR, else the node's pod CIDRs."""
        return (self.cluster_cidr,) if self.cluster_cidr else self.pod_cidrs


@dataclass(frozen=True, slots=True)
class ProxyState:
    """Everything one node's data plane is programmed from."""

    node: NodeFacts
    services: tuple[Service, ...] = field(default=())

    def __post_init__(self) -> None:
        seen: dict[tuple[str, int, Protocol], str] = {}
        for svc in self.services:
            for port in svc.ports:
                taken = [(svc.cluster_ip, port.port, port.protocol)] if svc.cluster_ip else []
                if port.node_port:
                    taken.append(("nodePort", port.node_port, port.protocol))
                for key in taken:
                    other = seen.setdefault(key, f"{svc.namespace}/{svc.name}")
                    if other != f"{svc.namespace}/{svc.name}":
                        raise InvalidState(
                            f"{key[0]} {port.protocol.name}/{key[1]} is used by both {other} "
                            f"and {svc.namespace}/{svc.name}"
                        )


def _ipv4(value: str, path: str) -> None:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise InvalidState(f"{path} {value!r} is not an IPv4 address") from None


def _cidr(value: str, path: str) -> None:
    try:
        ipaddress.IPv4Network(value, strict=True)
    except ValueError:
        raise InvalidState(f"{path} {value!r} is not an IPv4 network") from None


def _port(value: int, path: str) -> None:
    if not isinstance(value, int) or not 0 < value < 65536:
        raise InvalidState(f"{path} {value!r} is outside 1..65535")
