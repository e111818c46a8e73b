"""Each pod's /etc/resolv.conf and /etc/hosts: written into the pod's directory and
bind-mounted into every container of the pod, as the kubelet does.

`PodFiles(...)(pod, pod_ip, directory)` writes both files (their content is
`dns.podfiles`': dnsPolicy, dnsConfig, hostAliases, hostname and subdomain) and returns the
two bind mounts for the container's spec. The cluster DNS address and domain come from the
node's `ServiceSync` (none: ClusterFirst falls back to the node's resolvers, as the kubelet
does without cluster DNS); the node's resolvers are `resolv_conf` (the agent's
`--resolv-conf`, the kubelet's flag).

Invariants: files are replaced atomically (a container starting meanwhile reads the old or
the new one, never half), readable by the pod's processes (0644) and owned by the pod's
directory, so they go with it; a pod restarted later gets them written again.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from nodeagent.discovery.sync import ServiceSync
from nodeagent.dns import podfiles, resolvconf
from nodeagent.runtime import Mount
from pilothouse.v1 import objects_pb2

RESOLV_FILE = "resolv.conf"
HOSTS_FILE = "etc-hosts"
_OPTIONS = ("rbind", "rprivate")


class PodFiles:
    def __init__(
        self,
        *,
        sync: ServiceSync | None,
        resolv_conf: str | os.PathLike[str] = "/etc/resolv.conf",
        node_hosts: str | os.PathLike[str] = "/etc/hosts",
        host_network: bool = False,
    ) -> None:
        self._sync = sync
        self._resolv_conf = Path(resolv_conf)
        self._node_hosts = Path(node_hosts)
        self._host_network = host_network

    def __call__(self, pod: objects_pb2.Pod, pod_ip: str, directory: Path) -> tuple[Mount, ...]:
        spec, meta = pod.spec, pod.metadata
        cluster_dns = self._sync.cluster_dns if self._sync is not None else ""
        domain = self._sync.cluster_domain if self._sync is not None else "cluster.local"
        try:
            policy = podfiles.DnsPolicy(spec.dns_policy or "ClusterFirst")
        except ValueError:
            policy = podfiles.DnsPolicy.CLUSTER_FIRST
        config = podfiles.DnsConfig(
            nameservers=tuple(spec.dns_config.nameservers),
            searches=tuple(spec.dns_config.searches),
            options=tuple(
                podfiles.DnsOption(o.name, o.value if o.HasField("value") else None)
                for o in spec.dns_config.options
            ),
        )
        resolv = podfiles.resolv_conf(
            namespace=meta.namespace or "default",
            policy=policy,
            cluster_dns=(cluster_dns,) if cluster_dns else (),
            node=resolvconf.parse(_read(self._resolv_conf)),
            dns_config=config,
            host_network=self._host_network,
            domain=domain,
        )
        hosts = podfiles.hosts(
            pod_ips=(pod_ip,) if pod_ip else (),
            hostname=spec.hostname or meta.name,
            namespace=meta.namespace or "default",
            subdomain=spec.subdomain,
            host_aliases=tuple(
                podfiles.HostAlias(a.ip, tuple(a.hostnames)) for a in spec.host_aliases
            ),
            host_network=self._host_network,
            node_hosts=_read(self._node_hosts) if self._host_network else "",
            domain=domain,
        )
        directory.mkdir(parents=True, exist_ok=True)
        resolv_path = _write(directory / RESOLV_FILE, resolv.text)
        hosts_path = _write(directory / HOSTS_FILE, hosts)
        return (
            Mount("bind", str(resolv_path), "/etc/resolv.conf", _OPTIONS),
            Mount("bind", str(hosts_path), "/etc/hosts", _OPTIONS),
        )


def _read(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")
    return ""


def _write(path: Path, text: str) -> Path:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    temporary.chmod(0o644)
    temporary.replace(path)
    return path
