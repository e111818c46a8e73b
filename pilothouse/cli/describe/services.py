"""Services and EndpointSlices as kubectl describes them.

Invariant: a Service's `Endpoints` line lists, per port, the ready endpoints of its slices
(address:port), as kubectl's does; `<none>` when there are none (a Service that rejects).
"""

from __future__ import annotations

from pilothouse.cli import tables
from pilothouse.cli.describe import sections
from pilothouse.cli.sheet import NONE, Sheet
from pilothouse.client import Client, ClientError
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


async def service(sheet: Sheet, client: Client, svc: o.Service) -> None:
    spec = svc.spec
    sections.metadata(sheet, svc.metadata)
    sheet.field("Selector", tables.selector_text(spec.selector))
    sheet.field("Type", spec.type or "ClusterIP")
    sheet.field("IP Family Policy", "SingleStack")
    sheet.field("IP Families", "IPv4")
    sheet.field("IP", spec.cluster_ip or NONE)
    sheet.field("IPs", ",".join(spec.cluster_ips) or NONE)
    if spec.type == "LoadBalancer":
        ingress = svc.status.load_balancer.ingress
        sheet.field("LoadBalancer Ingress", ",".join(i.ip or i.hostname for i in ingress) or NONE)
    slices = await _slices_of(client, svc)
    for port in spec.ports:
        name = port.name or "<unset>"
        protocol = port.protocol or "TCP"
        sheet.field("Port", f"{name}  {port.port}/{protocol}")
        target = port.target_port
        shown = target.string_value if target.HasField("string_value") else int(target.number_value)
        sheet.field("TargetPort", f"{shown}/{protocol}")
        if port.node_port:
            sheet.field("NodePort", f"{name}  {port.node_port}/{protocol}")
        sheet.field("Endpoints", endpoints_line(slices, port) or NONE)
    sheet.field("Session Affinity", spec.session_affinity or "None")
    if spec.session_affinity == "ClientIP":
        timeout = spec.session_affinity_config.client_ip.timeout_seconds
        sheet.field("Session Affinity Timeout", f"{timeout}s")


def endpoints_line(slices: list[o.EndpointSlice], port: o.ServicePort) -> str:
    """The ready endpoints serving `port`, "ip:port" comma-separated."""
    found = []
    for slice_ in slices:
        number = next(
            (p.port for p in slice_.ports if p.name == port.name and p.HasField("port")), None
        )
        if number is None:
            continue
        for ep in slice_.endpoints:
            ready = not ep.conditions.HasField("ready") or ep.conditions.ready
            if ready and ep.addresses:
                found.append(f"{ep.addresses[0]}:{number}")
    return ",".join(sorted(found))


def endpoint_slice(sheet: Sheet, eps: o.EndpointSlice) -> None:
    sections.metadata(sheet, eps.metadata)
    sheet.field("AddressType", eps.address_type)
    sheet.heading("Ports:")
    sheet.table(
        ("Name", "Port", "Protocol"),
        [(p.name or "<unset>", str(p.port) if p.HasField("port") else "<unset>", p.protocol)
         for p in eps.ports] or [("<unset>", "<unset>", "<unset>")],
        level=1,
    )  # fmt: skip
    sheet.heading("Endpoints:")
    for ep in eps.endpoints:
        c = ep.conditions
        sheet.field("- Addresses", ",".join(ep.addresses), level=1)
        sheet.field(
            "Conditions",
            f"Ready: {_flag(c, 'ready')}, Serving: {_flag(c, 'serving')}, "
            f"Terminating: {_flag(c, 'terminating')}",
            level=2,
        )
        if ep.HasField("hostname"):
            sheet.field("Hostname", ep.hostname, level=2)
        if ep.HasField("target_ref"):
            sheet.field("TargetRef", f"{ep.target_ref.kind}/{ep.target_ref.name}", level=2)
        if ep.HasField("node_name"):
            sheet.field("NodeName", ep.node_name, level=2)


def _flag(conditions: o.EndpointConditions, name: str) -> str:
    return str(getattr(conditions, name)).lower() if conditions.HasField(name) else "<unset>"


async def _slices_of(client: Client, svc: o.Service) -> list[o.EndpointSlice]:
    try:
        listed = await client.list(
            Kind.ENDPOINTSLICE,
            namespace=svc.metadata.namespace,
            label_selector=f"{SERVICE_NAME_LABEL}={svc.metadata.name}",
        )
    except ClientError:
        return []
    return [s for s in listed.items if isinstance(s, o.EndpointSlice)]
