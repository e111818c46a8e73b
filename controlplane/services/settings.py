"""Flags of Services: the service CIDR, the node-port range and the cluster's DNS domain.

- `--service-cluster-ip-range 10.96.0.0/16`: ClusterIPs are allocated from it (IPv4, at
  least 8 addresses); it must not overlap the pods' `--cluster-cidr`.
- `--service-node-port-range 30000-32767`: NodePorts are allocated from it.
- `--cluster-domain cluster.local`: the domain every node's DNS answers for.

`split(argv)` takes these flags out of a control-plane command line, like the node flags do
(`controlplane.nodes.settings`), and `add_flags` shows them in `--help`.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_SERVICE_CIDR = "10.96.0.0/16"
DEFAULT_NODE_PORTS = "30000-32767"
DEFAULT_CLUSTER_DOMAIN = "cluster.local"
_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


class SettingsError(ValueError):
    """A Services flag with an unusable value."""


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    service_cidr: str = DEFAULT_SERVICE_CIDR
    node_ports: str = DEFAULT_NODE_PORTS
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.service_cidr)

    @property
    def port_range(self) -> tuple[int, int]:
        low, _, high = self.node_ports.partition("-")
        return int(low), int(high)


_FLAGS: tuple[tuple[str, str, str, str], ...] = (
    (
        "--service-cluster-ip-range",
        "service_cidr",
        "CIDR",
        "ClusterIPs are allocated from this range (default %(default)s)",
    ),
    (
        "--service-node-port-range",
        "node_ports",
        "LOW-HIGH",
        "NodePorts are allocated from this range (default %(default)s)",
    ),
    (
        "--cluster-domain",
        "cluster_domain",
        "DOMAIN",
        "the DNS domain of Services and pods (default %(default)s)",
    ),
)


def add_flags(parser: argparse.ArgumentParser) -> None:
    defaults = ServiceSettings()
    group = parser.add_argument_group("services")
    for flag, field, metavar, help in _FLAGS:
        group.add_argument(
            flag, dest=field, default=getattr(defaults, field), metavar=metavar, help=help
        )


def split(argv: Sequence[str], *, cluster_cidr: str = "") -> tuple[ServiceSettings, list[str]]:
    """The Services settings in `argv`, and the arguments that are not Services flags."""
    parser = argparse.ArgumentParser(add_help=False)
    add_flags(parser)
    args, rest = parser.parse_known_args(list(argv))
    settings = ServiceSettings(
        **{field: str(getattr(args, field)).strip() for _, field, *_ in _FLAGS}
    )
    check(settings, cluster_cidr=cluster_cidr)
    return settings, rest


def check(settings: ServiceSettings, *, cluster_cidr: str = "") -> None:
    try:
        network = ipaddress.ip_network(settings.service_cidr, strict=True)
    except ValueError as error:
        raise SettingsError(
            f"--service-cluster-ip-range {settings.service_cidr}: {error} "
            "(expected a network such as 10.96.0.0/16)"
        ) from None
    if network.version != 4 or network.prefixlen > 29:
        raise SettingsError(
            f"--service-cluster-ip-range {network}: must be an IPv4 network of at least 8 addresses"
        )
    if cluster_cidr and network.overlaps(ipaddress.ip_network(cluster_cidr, strict=False)):
        raise SettingsError(
            f"--service-cluster-ip-range {network} overlaps the pods' --cluster-cidr "
            f"{cluster_cidr}; choose ranges apart"
        )
    low, sep, high = settings.node_ports.partition("-")
    if not sep or not low.isdigit() or not high.isdigit() or not 0 < int(low) <= int(high) < 65536:
        raise SettingsError(
            f"--service-node-port-range {settings.node_ports!r}: expected LOW-HIGH within "
            "1-65535, e.g. 30000-32767"
        )
    if not _DOMAIN.match(settings.cluster_domain):
        raise SettingsError(f"--cluster-domain {settings.cluster_domain!r} is not a DNS name")
