"""A pod's /etc/resolv.conf and /etc/hosts, as the kubelet writes them (pure).

resolv.conf by `dnsPolicy` (kubelet `pkg/kubelet/network/dns`):
- ClusterFirst (default): the node's DNS server, search `<ns>.svc.D svc.D D` then the node's
  own search domains, `options ndots:5`; a hostNetwork pod falls back to Default;
- ClusterFirstWithHostNet: ClusterFirst, also for hostNetwork pods;
- Default: the node's resolv.conf (nameservers, search, options);
- None: nothing but `dnsConfig`.
Then `dnsConfig` is merged: nameservers and searches appended without duplicates, options
replacing same-named ones. Over-long results are cut as the kubelet cuts them (3 nameservers,
32 search domains, 2048 characters of search list) and the cut is reported in `notes`.
ClusterFirst without a cluster DNS address behaves as Default, also reported.

/etc/hosts: the localhost lines, each pod IP with the pod's hostname (and its FQDN when the pod
has a subdomain), then `hostAliases`. A hostNetwork pod gets the node's hosts file plus its
aliases.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from nodeagent.dns.records import DEFAULT_DOMAIN
from nodeagent.dns.resolvconf import ResolvConf

MAX_NAMESERVERS = 3
MAX_SEARCHES = 32
MAX_SEARCH_CHARS = 2048
CLUSTER_OPTIONS = ("ndots:5",)
_LOCALHOST = """# Kubernetes-managed hosts file.
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
fe00::0\tip6-mcastprefix
fe00::1\tip6-allnodes
fe00::2\tip6-allrouters
"""


class DnsPolicy(enum.Enum):
    CLUSTER_FIRST = "ClusterFirst"
    CLUSTER_FIRST_WITH_HOST_NET = "ClusterFirstWithHostNet"
    DEFAULT = "Default"
    NONE = "None"


@dataclass(frozen=True, slots=True)
class DnsOption:
    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True, slots=True)
class DnsConfig:
    """A pod's `spec.dnsConfig`."""

    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[DnsOption, ...] = ()


@dataclass(frozen=True, slots=True)
class HostAlias:
    ip: str
    hostnames: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PodResolv:
    """The file's content, and what was cut or fell back (for a pod event)."""

    text: str
    notes: tuple[str, ...] = ()


def resolv_conf(
    *,
    namespace: str,
    policy: DnsPolicy,
    cluster_dns: Sequence[str],
    node: ResolvConf,
    dns_config: DnsConfig | None = None,
    host_network: bool = False,
    domain: str = DEFAULT_DOMAIN,
) -> PodResolv:
    """The pod's /etc/resolv.conf."""
    notes: list[str] = []
    cluster = policy is DnsPolicy.CLUSTER_FIRST_WITH_HOST_NET or (
        policy is DnsPolicy.CLUSTER_FIRST and not host_network
    )
    if cluster and not cluster_dns:
        notes.append(f"dnsPolicy {policy.value}: the node has no cluster DNS; using its resolvers")
        cluster = False
    if policy is DnsPolicy.NONE:
        base = ResolvConf()
    elif cluster:
        local = (f"{namespace}.svc.{domain}", f"svc.{domain}", domain)
        base = ResolvConf(tuple(cluster_dns), local + node.searches, CLUSTER_OPTIONS)
    else:
        base = node
    config = dns_config or DnsConfig()
    nameservers = _unique((*base.nameservers, *config.nameservers))
    searches = _unique((*base.searches, *config.searches))
    options = _merge_options(base.options, config.options)
    if len(nameservers) > MAX_NAMESERVERS:
        notes.append(f"nameservers cut to the first {MAX_NAMESERVERS}: {' '.join(nameservers)}")
        nameservers = nameservers[:MAX_NAMESERVERS]
    searches, cut = _cut_searches(searches)
    if cut:
        notes.append(f"search list cut to {' '.join(searches)}")
    return PodResolv(ResolvConf(nameservers, searches, options).text(), tuple(notes))


def hosts(
    *,
    pod_ips: Sequence[str],
    hostname: str,
    namespace: str,
    subdomain: str = "",
    host_aliases: Sequence[HostAlias] = (),
    host_network: bool = False,
    node_hosts: str = "",
    domain: str = DEFAULT_DOMAIN,
) -> str:
    """The pod's /etc/hosts."""
    if host_network:
        out = "# Kubernetes-managed hosts file (host network).\n" + node_hosts
        if out and not out.endswith("\n"):
            out += "\n"
    else:
        out = _LOCALHOST
        for ip in pod_ips:
            if subdomain:
                out += f"{ip}\t{hostname}.{subdomain}.{namespace}.svc.{domain}\t{hostname}\n"
            else:
                out += f"{ip}\t{hostname}\n"
    if host_aliases:
        out += "\n# Entries added by HostAliases.\n"
        for alias in host_aliases:
            out += f"{alias.ip}\t" + "\t".join(alias.hostnames) + "\n"
    return out


def _unique(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def _merge_options(base: Sequence[str], extra: Sequence[DnsOption]) -> tuple[str, ...]:
    merged: dict[str, str] = {}
    for text in base:
        merged[text.split(":", 1)[0]] = text
    for option in extra:
        merged[option.name] = str(option)
    return tuple(merged.values())


def _cut_searches(searches: tuple[str, ...]) -> tuple[tuple[str, ...], bool]:
    kept: list[str] = []
    chars = 0
    for search in searches[:MAX_SEARCHES]:
        chars += len(search) + (1 if kept else 0)
        if chars > MAX_SEARCH_CHARS:
            break
        kept.append(search)
    return tuple(kept), len(kept) < len(searches)
