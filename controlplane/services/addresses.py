"""What an Apply or a Delete of a Service takes from the ranges, or gives back.

`ServiceAddresses.apply(service, dry_run=...)` is the Apply of a Service (called by the API
after defaults and validation):
1. what the stored Service holds is kept: a manifest that leaves clusterIP or a nodePort out
   keeps the allocated one (matched by port and protocol, else by port name), as Kubernetes
   does; a clusterIP that differs from the stored one is refused (it is immutable);
2. requested values are checked against the ranges: `spec.clusterIP: Invalid value:
   "1.2.3.4": provided IP is not in the valid range. The range of valid IPs is
   10.96.0.0/16` (and `spec.ports[i].nodePort`);
3. they are reserved, and free ones allocated for what is left empty (clusterIP of a
   non-headless Service; nodePorts of NodePort and LoadBalancer Services); a requested value
   another Service holds is refused (`provided IP is already allocated`, `provided port is
   already allocated`);
4. the Service is written; if that fails, what this call reserved is released; if it
   succeeds, what the Service held before and holds no more (a NodePort Service turned
   ClusterIP) is released.
`released(service)` gives back what a deleted Service held.

Invariants: all problems are reported at once with their field paths (a `ManifestError`, as
validation reports them); a dry run or a refused Apply reserves nothing; a value is released
only by its holder (see `allocator`).
"""

from __future__ import annotations

import structlog

from controlplane.objects import Applied, ObjectStore
from controlplane.services.allocator import Allocator, ClusterIPs, Exhausted, NodePorts
from controlplane.services.settings import ServiceSettings
from controlplane.store import NotFound
from pilothouse.kinds import Kind
from pilothouse.manifests.problems import ManifestError, Problem
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

HEADLESS = "None"
NODE_PORT_TYPES = frozenset({"NodePort", "LoadBalancer"})


def owner_of(service: objects_pb2.Service) -> str:
    return f"{service.metadata.namespace or 'default'}/{service.metadata.name}"


def holdings(service: objects_pb2.Service) -> tuple[set[str], set[str]]:
    """(cluster IPs, node ports) a stored Service holds."""
    ips = {service.spec.cluster_ip} if service.spec.cluster_ip not in ("", HEADLESS) else set()
    ports = {str(p.node_port) for p in service.spec.ports if p.node_port}
    return ips, ports


class ServiceAddresses:
    def __init__(self, objects: ObjectStore, settings: ServiceSettings | None = None) -> None:
        self.settings = settings or ServiceSettings()
        self._objects = objects
        self.ips = Allocator(objects.store, ClusterIPs(self.settings.network))
        low, high = self.settings.port_range
        self.ports = Allocator(objects.store, NodePorts(low, high))

    async def apply(self, service: objects_pb2.Service, *, dry_run: bool = False) -> Applied:
        """Reserve what `service` needs, then apply it (see the module docstring)."""
        wanted = objects_pb2.Service()
        wanted.CopyFrom(service)
        try:
            current = await self._objects.get(
                Kind.SERVICE, wanted.metadata.namespace, wanted.metadata.name
            )
        except NotFound:
            current = None
        problems: list[tuple[str, str]] = []
        if current is not None:
            _keep(wanted, current, problems)
        self._check_ranges(wanted, problems)
        if problems:
            raise _error(problems)
        if dry_run:
            return await self._objects.apply(wanted, dry_run=True)
        owner = owner_of(wanted)
        taken_ips, taken_ports = await self._reserve(wanted, owner)
        try:
            applied = await self._objects.apply(wanted)
        except BaseException:
            await self._give_back(owner, taken_ips, taken_ports)
            raise
        if current is not None:
            old_ips, old_ports = holdings(current)
            new_ips, new_ports = holdings(applied.object)
            await self._give_back(owner, old_ips - new_ips, old_ports - new_ports)
        return applied

    async def released(self, service: objects_pb2.Service) -> None:
        """Give back what a deleted Service held."""
        ips, ports = holdings(service)
        await self._give_back(owner_of(service), ips, ports)

    def _check_ranges(self, svc: objects_pb2.Service, problems: list[tuple[str, str]]) -> None:
        ip = svc.spec.cluster_ip
        if ip not in ("", HEADLESS) and not self.ips.pool.contains(ip):
            problems.append(
                (
                    "spec.clusterIP",
                    f'Invalid value: "{ip}": provided IP is not in the valid range. '
                    f"The range of valid IPs is {self.ips.pool.describe()}",
                )
            )
        for i, port in enumerate(svc.spec.ports):
            if port.node_port and not self.ports.pool.contains(str(port.node_port)):
                problems.append(
                    (
                        f"spec.ports[{i}].nodePort",
                        f"Invalid value: {port.node_port}: provided port is not in the valid "
                        f"range. The range of valid ports is {self.ports.pool.describe()}",
                    )
                )

    async def _reserve(self, svc: objects_pb2.Service, owner: str) -> tuple[set[str], set[str]]:
        """Hold every value `svc` names and allocate the ones it needs; refuse what is taken.
        Returns what this call newly reserved (to release if the write fails)."""
        problems: list[tuple[str, str]] = []
        new_ips: set[str] = set()
        new_ports: set[str] = set()
        spec = svc.spec
        try:
            if spec.cluster_ip == "":
                ip = await self.ips.allocate(owner)
                new_ips.add(ip)
                spec.cluster_ip = ip
                del spec.cluster_ips[:]
                spec.cluster_ips.append(ip)
            elif spec.cluster_ip != HEADLESS and await self.ips.owner(spec.cluster_ip) != owner:
                if await self.ips.reserve(spec.cluster_ip, owner):
                    new_ips.add(spec.cluster_ip)
                else:
                    problems.append(
                        (
                            "spec.clusterIP",
                            f'Invalid value: "{spec.cluster_ip}": provided IP is already allocated',
                        )
                    )
            if spec.type in NODE_PORT_TYPES:
                for i, port in enumerate(spec.ports):
                    if port.node_port:
                        value = str(port.node_port)
                        if await self.ports.owner(value) == owner:
                            continue
                        if await self.ports.reserve(value, owner):
                            new_ports.add(value)
                        else:
                            problems.append(
                                (
                                    f"spec.ports[{i}].nodePort",
                                    f"Invalid value: {port.node_port}: provided port is "
                                    "already allocated",
                                )
                            )
                for port in spec.ports:
                    if not port.node_port:
                        value = await self.ports.allocate(owner)
                        new_ports.add(value)
                        port.node_port = int(value)
        except Exhausted as error:
            await self._give_back(owner, new_ips, new_ports)
            raise _error(
                [("spec", f"Internal error: {error}; free some or widen the range")]
            ) from None
        except BaseException:
            await self._give_back(owner, new_ips, new_ports)
            raise
        if problems:
            await self._give_back(owner, new_ips, new_ports)
            raise _error(problems)
        return new_ips, new_ports

    async def _give_back(self, owner: str, ips: set[str], ports: set[str]) -> None:
        for ip in ips:
            await self.ips.release(ip, owner)
        for port in ports:
            await self.ports.release(port, owner)
        if ips or ports:
            log.debug("services.released", service=owner, ips=sorted(ips), ports=sorted(ports))


def _keep(wanted: objects_pb2.Service, current: objects_pb2.Service, problems: list) -> None:
    """Carry what `current` holds into `wanted`; refuse a changed clusterIP."""
    spec, old = wanted.spec, current.spec
    if old.cluster_ip:
        if spec.cluster_ip == "":
            spec.cluster_ip = old.cluster_ip
            del spec.cluster_ips[:]
            spec.cluster_ips.extend(old.cluster_ips or [old.cluster_ip])
        elif spec.cluster_ip != old.cluster_ip:
            problems.append(
                (
                    "spec.clusterIP",
                    f'Invalid value: "{spec.cluster_ip}": field is immutable (it is '
                    f'"{old.cluster_ip}"; delete the Service and apply it again to change it)',
                )
            )
    if spec.type not in NODE_PORT_TYPES or old.type not in NODE_PORT_TYPES:
        return
    for port in spec.ports:
        if port.node_port:
            continue
        match = next(
            (p for p in old.ports if p.port == port.port and p.protocol == port.protocol), None
        ) or next((p for p in old.ports if port.name and p.name == port.name), None)
        if match is not None and match.node_port:
            port.node_port = match.node_port


def _error(problems: list[tuple[str, str]]) -> ManifestError:
    return ManifestError(Problem("", 0, field, message) for field, message in problems)
