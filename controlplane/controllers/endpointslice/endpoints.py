"""A Service's endpoints and the EndpointSlices they fill (pure: no store, no clock).

An endpoint is one pod the Service selects that has an IP and has not finished, with
Kubernetes' conditions (endpointslice controller `podToEndpoint`):
- serving: the pod is Ready (or the Service publishes not-ready addresses), and its node is
  not lost (heartbeats stopped: Kubernetes marks such pods not Ready, we read the node);
- terminating: the pod is being deleted (deletionTimestamp);
- ready: serving and not terminating (or the Service publishes not-ready addresses).
Its ports are the Service's ports with each targetPort resolved on that pod: a number as is,
a name by the pod's container port of that name and protocol; a name the pod does not have
leaves that port out for that pod (Kubernetes does the same), so pods with different ports
land in different slices: endpoints are grouped by their resolved ports.

`plan(service, groups, existing)` says which slices to create, update and delete so that each
group's endpoints sit in slices of at most `MAX_ENDPOINTS`, moving as few as possible: an
endpoint stays in the slice that has it, new ones fill slices with room first. A Service with
no endpoints keeps one empty slice (Kubernetes' placeholder).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from controlplane.objects.endpoints import MANAGED_BY, MANAGED_BY_LABEL, SERVICE_NAME_LABEL
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

__all__ = ["MANAGED_BY", "MANAGED_BY_LABEL", "MAX_ENDPOINTS", "SERVICE_NAME_LABEL", "Plan"]

MAX_ENDPOINTS = 100
FINISHED = frozenset({"Succeeded", "Failed"})

# A slice's ports: (name, protocol, port) for each Service port the pods resolved.
PortKey = tuple[tuple[str, str, int], ...]


def is_ready(pod: objects_pb2.Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)


def resolve_ports(service: objects_pb2.Service, pod: objects_pb2.Pod) -> PortKey:
    """The Service's ports as this pod serves them (unresolvable names left out)."""
    found = []
    for port in service.spec.ports:
        protocol = port.protocol or "TCP"
        target = port.target_port
        number = 0
        if target.HasField("string_value"):
            name = target.string_value
            number = next(
                (
                    p.container_port
                    for c in pod.spec.containers
                    for p in c.ports
                    if p.name == name and (p.protocol or "TCP") == protocol
                ),
                0,
            )
        elif target.HasField("number_value"):
            number = int(target.number_value)
        else:
            number = port.port
        if number:
            found.append((port.name, protocol, number))
    return tuple(found)


def endpoint(
    service: objects_pb2.Service, pod: objects_pb2.Pod, *, node_lost: bool
) -> objects_pb2.Endpoint | None:
    """The pod as an endpoint of the Service, or None when it has no address to give."""
    if not pod.status.pod_ip or pod.status.phase in FINISHED:
        return None
    publish = service.spec.publish_not_ready_addresses
    serving = publish or (is_ready(pod) and not node_lost)
    terminating = pod.metadata.HasField("deletion_timestamp")
    out = objects_pb2.Endpoint(addresses=[pod.status.pod_ip])
    out.conditions.ready = publish or (serving and not terminating)
    out.conditions.serving = serving
    out.conditions.terminating = terminating
    meta = pod.metadata
    if pod.spec.hostname and pod.spec.subdomain == service.metadata.name:
        out.hostname = pod.spec.hostname
    if pod.spec.node_name:
        out.node_name = pod.spec.node_name
    out.target_ref.kind = Kind.POD.info.kind
    out.target_ref.namespace = meta.namespace
    out.target_ref.name = meta.name
    out.target_ref.uid = meta.uid
    return out


def groups(
    service: objects_pb2.Service,
    pods: Iterable[objects_pb2.Pod],
    *,
    lost_nodes: frozenset[str] = frozenset(),
) -> dict[PortKey, list[objects_pb2.Endpoint]]:
    """The Service's endpoints by their resolved ports, each group in pod-name order."""
    found: dict[PortKey, list[tuple[str, objects_pb2.Endpoint]]] = {}
    for pod in pods:
        ep = endpoint(service, pod, node_lost=pod.spec.node_name in lost_nodes)
        if ep is not None:
            found.setdefault(resolve_ports(service, pod), []).append((pod.metadata.name, ep))
    return {
        key: [ep for _, ep in sorted(items, key=lambda i: i[0])] for key, items in found.items()
    }


def ports_of(slice_: objects_pb2.EndpointSlice) -> PortKey:
    return tuple((p.name, p.protocol or "TCP", p.port) for p in slice_.ports)


@dataclass(slots=True)
class Plan:
    """What to write: new slices (named by generateName), changed ones, and ones to delete."""

    create: list[objects_pb2.EndpointSlice] = field(default_factory=list)
    update: list[objects_pb2.EndpointSlice] = field(default_factory=list)
    delete: list[objects_pb2.EndpointSlice] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def plan(
    service: objects_pb2.Service,
    wanted: Mapping[PortKey, Sequence[objects_pb2.Endpoint]],
    existing: Sequence[objects_pb2.EndpointSlice],
) -> Plan:
    """The writes that make `existing` (the Service's managed slices) hold `wanted`."""
    out = Plan()
    by_ports: dict[PortKey, list[objects_pb2.EndpointSlice]] = {}
    for slice_ in sorted(existing, key=lambda s: s.metadata.name):
        by_ports.setdefault(ports_of(slice_), []).append(slice_)
    if not any(wanted.values()):
        wanted = {(): []}  # the placeholder: one slice, no endpoints
    for key, endpoints in wanted.items():
        slices = by_ports.pop(key, [])
        _fill(service, key, endpoints, slices, out, placeholder=not endpoints)
    for leftover in by_ports.values():
        out.delete.extend(leftover)
    # A slice about to be deleted takes a new slice's content instead (one write, not two,
    # and never a moment without either).
    while out.create and out.delete:
        reused, made = out.delete.pop(), out.create.pop()
        made.metadata.CopyFrom(reused.metadata)
        made.metadata.labels.clear()
        made.metadata.labels.update(_labels(service))
        out.update.append(made)
    return out


def _fill(
    service: objects_pb2.Service,
    key: PortKey,
    endpoints: Sequence[objects_pb2.Endpoint],
    slices: list[objects_pb2.EndpointSlice],
    out: Plan,
    *,
    placeholder: bool,
) -> None:
    by_id = {_identity(ep): ep for ep in endpoints}
    placed: set[str] = set()
    contents: list[list[objects_pb2.Endpoint]] = []
    for slice_ in slices:
        kept = []
        for ep in slice_.endpoints:
            ident = _identity(ep)
            if ident in by_id and ident not in placed:
                kept.append(by_id[ident])
                placed.add(ident)
        contents.append(kept)
    fresh = [ep for ep in endpoints if _identity(ep) not in placed]
    for kept in contents:
        while fresh and len(kept) < MAX_ENDPOINTS:
            kept.append(fresh.pop(0))
    while fresh:
        contents.append(fresh[:MAX_ENDPOINTS])
        fresh = fresh[MAX_ENDPOINTS:]
    if placeholder and not contents:
        contents.append([])
    for index, items in enumerate(contents):
        existing = slices[index] if index < len(slices) else None
        if not items and not (placeholder and index == 0):
            if existing is not None:
                out.delete.append(existing)
            continue
        desired = _slice(service, key, items, existing)
        if existing is None:
            out.create.append(desired)
        elif desired != existing:
            out.update.append(desired)


def _identity(ep: objects_pb2.Endpoint) -> str:
    return ep.target_ref.uid or ",".join(ep.addresses)


def _slice(
    service: objects_pb2.Service,
    key: PortKey,
    endpoints: Sequence[objects_pb2.Endpoint],
    existing: objects_pb2.EndpointSlice | None,
) -> objects_pb2.EndpointSlice:
    out = objects_pb2.EndpointSlice()
    if existing is not None:
        out.CopyFrom(existing)
        del out.endpoints[:]
        del out.ports[:]
    else:
        meta = service.metadata
        out.metadata.generate_name = f"{meta.name}-"
        out.metadata.namespace = meta.namespace
        out.metadata.owner_references.add(
            api_version=Kind.SERVICE.info.api_version,
            kind=Kind.SERVICE.info.kind,
            name=meta.name,
            uid=meta.uid,
            controller=True,
            block_owner_deletion=True,
        )
    out.api_version = Kind.ENDPOINTSLICE.info.api_version
    out.kind = Kind.ENDPOINTSLICE.info.kind
    out.metadata.labels.clear()
    out.metadata.labels.update(_labels(service))
    out.address_type = "IPv4"
    for name, protocol, port in key:
        out.ports.add(name=name, protocol=protocol, port=port)
    out.endpoints.extend(endpoints)
    return out


def _labels(service: objects_pb2.Service) -> dict[str, str]:
    """A managed slice's labels: the Service's, its name and our mark (as Kubernetes)."""
    labels = dict(service.metadata.labels)
    labels[SERVICE_NAME_LABEL] = service.metadata.name
    labels[MANAGED_BY_LABEL] = MANAGED_BY
    return labels
