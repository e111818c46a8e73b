"""From the Services and EndpointSlices the control plane pushes to what this node programs:
the data plane's `ProxyState` and the DNS server's `ClusterRecords` (pure).

Rules (kube-proxy's and CoreDNS' reading of the same objects):
- a Service's endpoints are those of the IPv4 slices labelled with its name in its namespace;
  an endpoint takes new connections only when ready (the condition true or unset); a
  terminating endpoint takes none, even when no other is left (the Service then rejects);
- a service port's endpoints are the slice ports of the same name and protocol: the number
  a pod serves it on (a pod lacking a named targetPort sits in a slice without that port);
- addresses in `exclude` (this node's pods on their way out) are left out, so the node stops
  choosing them before they get SIGTERM;
- NodePort and LoadBalancer Services get their node ports; ClientIP affinity its timeout;
- a headless Service has no data plane, and DNS answers its ready endpoints' addresses;
- a Service the data plane cannot take (`InvalidState`) is left out and named in `problems`,
  so one bad object never keeps the others from being programmed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nodeagent.dns.records import ClusterRecords, DnsEndpoint, DnsPort, DnsService
from nodeagent.services.model import (
    DEFAULT_AFFINITY_TIMEOUT_S,
    Affinity,
    Endpoint,
    InvalidState,
    NodeFacts,
    Protocol,
    ProxyState,
    Service,
    ServicePort,
)
from pilothouse.v1 import objects_pb2

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
HEADLESS = "None"
NODE_PORT_TYPES = frozenset({"NodePort", "LoadBalancer"})


@dataclass(frozen=True, slots=True)
class Pushed:
    """The cluster's Services as last pushed, and its ranges."""

    services: tuple[objects_pb2.Service, ...] = ()
    slices: tuple[objects_pb2.EndpointSlice, ...] = ()
    service_cidr: str = ""
    cluster_cidr: str = ""
    cluster_domain: str = "cluster.local"


@dataclass(frozen=True, slots=True)
class Converted:
    state: ProxyState
    records: ClusterRecords
    problems: tuple[str, ...] = ()


def convert(
    pushed: Pushed,
    *,
    node_ips: Sequence[str],
    pod_cidrs: Sequence[str],
    exclude: frozenset[str] = frozenset(),
) -> Converted:
    slices = _by_service(pushed.slices)
    problems: list[str] = []
    services: list[Service] = []
    dns: list[DnsService] = []
    for svc in pushed.services:
        meta = svc.metadata
        own = slices.get((meta.namespace, meta.name), [])
        headless = svc.spec.cluster_ip in ("", HEADLESS)
        dns.append(_dns_service(svc, own, headless=headless))
        if headless:
            continue
        try:
            services.append(_service(svc, own, exclude))
        except InvalidState as error:
            problems.append(f"service {meta.namespace}/{meta.name}: {error}")
    node = NodeFacts(
        node_ips=tuple(node_ips),
        pod_cidrs=tuple(c for c in pod_cidrs if c),
        cluster_cidr=pushed.cluster_cidr,
        service_cidr=pushed.service_cidr,
    )
    try:
        state = ProxyState(node=node, services=tuple(services))
    except InvalidState as error:  # two Services claim one address: program neither
        problems.append(str(error))
        state = ProxyState(node=node)
    records = ClusterRecords(services=tuple(dns), domain=pushed.cluster_domain or "cluster.local")
    return Converted(state, records, tuple(problems))


def ready_addresses(slices: Iterable[objects_pb2.EndpointSlice]) -> frozenset[str]:
    return frozenset(address for _, ep in _ready(slices) for address in ep.addresses[:1])


def _by_service(
    slices: Iterable[objects_pb2.EndpointSlice],
) -> dict[tuple[str, str], list[objects_pb2.EndpointSlice]]:
    found: dict[tuple[str, str], list[objects_pb2.EndpointSlice]] = {}
    for slice_ in slices:
        name = slice_.metadata.labels.get(SERVICE_NAME_LABEL)
        if name and slice_.address_type == "IPv4":
            found.setdefault((slice_.metadata.namespace, name), []).append(slice_)
    return found


def _ready(
    slices: Iterable[objects_pb2.EndpointSlice],
) -> Iterable[tuple[objects_pb2.EndpointSlice, objects_pb2.Endpoint]]:
    for slice_ in slices:
        for ep in slice_.endpoints:
            conditions = ep.conditions
            if ep.addresses and (not conditions.HasField("ready") or conditions.ready):
                yield slice_, ep


def _service(
    svc: objects_pb2.Service, slices: list[objects_pb2.EndpointSlice], exclude: frozenset[str]
) -> Service:
    spec = svc.spec
    ports = []
    for port in spec.ports:
        protocol = port.protocol or "TCP"
        endpoints = []
        for slice_, ep in _ready(slices):
            number = next(
                (
                    p.port
                    for p in slice_.ports
                    if p.name == port.name and (p.protocol or "TCP") == protocol and p.port
                ),
                0,
            )
            address = ep.addresses[0]
            if number and address not in exclude:
                endpoints.append(Endpoint(address, number))
        try:
            proto = Protocol[protocol]
        except KeyError:
            raise InvalidState(f"protocol {protocol!r} is not supported") from None
        ports.append(
            ServicePort(
                port.port,
                proto,
                name=port.name,
                node_port=port.node_port if spec.type in NODE_PORT_TYPES else 0,
                endpoints=tuple(endpoints),
            )
        )
    affinity = Affinity.CLIENT_IP if spec.session_affinity == "ClientIP" else Affinity.NONE
    timeout = DEFAULT_AFFINITY_TIMEOUT_S
    client_ip = spec.session_affinity_config.client_ip
    if client_ip.HasField("timeout_seconds"):
        timeout = client_ip.timeout_seconds
    return Service(
        svc.metadata.namespace,
        svc.metadata.name,
        spec.cluster_ip,
        tuple(ports),
        affinity=affinity,
        affinity_timeout_s=timeout,
    )


def _dns_service(
    svc: objects_pb2.Service, slices: list[objects_pb2.EndpointSlice], *, headless: bool
) -> DnsService:
    ports = tuple(
        DnsPort(p.name, p.port, (p.protocol or "TCP").lower()) for p in svc.spec.ports if p.name
    )
    endpoints: tuple[DnsEndpoint, ...] = ()
    if headless:
        endpoints = tuple(
            DnsEndpoint(
                ep.addresses[0],
                hostname=ep.hostname if ep.HasField("hostname") else "",
                ports=tuple(
                    DnsPort(p.name, p.port, (p.protocol or "TCP").lower())
                    for p in slice_.ports
                    if p.name and p.port
                ),
            )
            for slice_, ep in _ready(slices)
        )
    return DnsService(
        svc.metadata.namespace,
        svc.metadata.name,
        "" if headless else svc.spec.cluster_ip,
        ports=ports,
        endpoints=endpoints,
    )
