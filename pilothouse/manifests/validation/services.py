"""Services and EndpointSlices: types, cluster IPs, ports, selectors, session affinity.

What is checked here needs nothing but the object: a clusterIP that is an IPv4 address or
"None", port numbers and names, protocols, a nodePort only where the type has node ports. The
ranges cluster IPs and node ports come from are control-plane settings, so whether a requested
one lies in its range (and is free) is decided where it is allocated, at Apply, with the same
field paths (`controlplane.services`).

Invariant: messages are Kubernetes' own (ValidateService, ValidateEndpointSlice) where it has
one, with the field paths a person wrote.
"""

from __future__ import annotations

import ipaddress

from google.protobuf.struct_pb2 import Value

from pilothouse.manifests import names
from pilothouse.manifests.validation.findings import Findings
from pilothouse.manifests.validation.meta import labels
from pilothouse.v1 import objects_pb2

SERVICE_TYPES = ("ClusterIP", "LoadBalancer", "NodePort")
NODE_PORT_TYPES = frozenset({"LoadBalancer", "NodePort"})
PROTOCOLS = ("SCTP", "TCP", "UDP")
AFFINITIES = ("ClientIP", "None")
ADDRESS_TYPES = ("FQDN", "IPv4", "IPv6")
HEADLESS = "None"
MAX_AFFINITY_TIMEOUT_S = 86400
MAX_SLICE_ENDPOINTS = 1000
MAX_ENDPOINT_ADDRESSES = 100
MAX_SLICE_PORTS = 100


def service(found: Findings, svc: objects_pb2.Service) -> None:
    spec = svc.spec
    if spec.type and spec.type not in SERVICE_TYPES:
        found.unsupported("spec.type", spec.type, SERVICE_TYPES)
    headless = spec.cluster_ip == HEADLESS
    _cluster_ip(found, spec, headless=headless)
    if not spec.ports and not headless:
        found.required("spec.ports")
    _ports(found, spec)
    labels(found, "spec.selector", spec.selector)
    _affinity(found, spec)


def _cluster_ip(found: Findings, spec: objects_pb2.ServiceSpec, *, headless: bool) -> None:
    if spec.cluster_ip and not headless and not is_ipv4(spec.cluster_ip):
        found.invalid(
            "spec.clusterIP",
            spec.cluster_ip,
            "must be a valid IPv4 address, (e.g. 10.9.8.7), or None for a headless Service",
        )
    if len(spec.cluster_ips) > 1:
        found.invalid(
            "spec.clusterIPs",
            ",".join(spec.cluster_ips),
            "may hold one address only: Services are single-stack IPv4",
        )
    elif spec.cluster_ips and spec.cluster_ips[0] != spec.cluster_ip:
        found.invalid(
            "spec.clusterIPs[0]",
            spec.cluster_ips[0],
            "must match clusterIP when both are specified",
        )
    if headless and spec.type in NODE_PORT_TYPES:
        found.invalid(
            "spec.clusterIP", HEADLESS, f"may not be set to 'None' for {spec.type} services"
        )


def _ports(found: Findings, spec: objects_pb2.ServiceSpec) -> None:
    seen_names: set[str] = set()
    seen_ports: set[tuple[int, str]] = set()
    seen_node_ports: set[tuple[int, str]] = set()
    for i, port in enumerate(spec.ports):
        where = f"spec.ports[{i}]"
        protocol = port.protocol or "TCP"
        if len(spec.ports) > 1 and not port.name:
            found.required(f"{where}.name")
        if port.name:
            for error in names.dns1123_label(port.name):
                found.invalid(f"{where}.name", port.name, error)
            if port.name in seen_names:
                found.duplicate(f"{where}.name", port.name)
            seen_names.add(port.name)
        if not 1 <= port.port <= 65535:
            found.invalid(f"{where}.port", port.port, "must be between 1 and 65535, inclusive")
        if port.protocol and port.protocol not in PROTOCOLS:
            found.unsupported(f"{where}.protocol", port.protocol, PROTOCOLS)
        if (port.port, protocol) in seen_ports:
            found.duplicate(where, {"port": port.port, "protocol": protocol})
        seen_ports.add((port.port, protocol))
        if port.HasField("target_port"):
            _target_port(found, port.target_port, f"{where}.targetPort")
        if port.node_port:
            if spec.type not in NODE_PORT_TYPES:
                found.forbidden(
                    f"{where}.nodePort", f"may not be used when `type` is '{spec.type}'"
                )
            elif not 1 <= port.node_port <= 65535:
                found.invalid(
                    f"{where}.nodePort", port.node_port, "must be between 1 and 65535, inclusive"
                )
            elif (port.node_port, protocol) in seen_node_ports:
                found.duplicate(
                    f"{where}.nodePort", {"nodePort": port.node_port, "protocol": protocol}
                )
            seen_node_ports.add((port.node_port, protocol))


def _target_port(found: Findings, value: Value, field: str) -> None:
    if value.HasField("string_value"):
        text = value.string_value
        if text.isdigit():
            found.invalid(field, text, "must contain at least one letter (a-z)")
            return
        for error in names.port_name(text):
            found.invalid(field, text, error)
    elif value.HasField("number_value") and value.number_value.is_integer():
        number = int(value.number_value)
        if not 1 <= number <= 65535:
            found.invalid(field, number, "must be between 1 and 65535, inclusive")
    else:
        found.invalid(field, str(value.number_value), "must be an integer or a port name")


def _affinity(found: Findings, spec: objects_pb2.ServiceSpec) -> None:
    affinity = spec.session_affinity
    if affinity and affinity not in AFFINITIES:
        found.unsupported("spec.sessionAffinity", affinity, AFFINITIES)
        return
    if not spec.HasField("session_affinity_config"):
        return
    if affinity != "ClientIP":
        found.invalid(
            "spec.sessionAffinityConfig",
            "clientIP",
            "must not be set when session affinity is None",
        )
        return
    client_ip = spec.session_affinity_config.client_ip
    if client_ip.HasField("timeout_seconds"):
        timeout = client_ip.timeout_seconds
        if not 0 < timeout <= MAX_AFFINITY_TIMEOUT_S:
            found.invalid(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                timeout,
                f"must be greater than 0 and less than {MAX_AFFINITY_TIMEOUT_S}",
            )


def endpoint_slice(found: Findings, eps: objects_pb2.EndpointSlice) -> None:
    if not eps.address_type:
        found.required("addressType")
    elif eps.address_type not in ADDRESS_TYPES:
        found.unsupported("addressType", eps.address_type, ADDRESS_TYPES)
    if len(eps.endpoints) > MAX_SLICE_ENDPOINTS:
        found.items.append(
            (
                "endpoints",
                f"Too many: {len(eps.endpoints)}: must have at most {MAX_SLICE_ENDPOINTS} items",
            )
        )
    for i, endpoint in enumerate(eps.endpoints):
        where = f"endpoints[{i}]"
        if not endpoint.addresses:
            found.required(f"{where}.addresses", "must contain at least 1 address")
        elif len(endpoint.addresses) > MAX_ENDPOINT_ADDRESSES:
            found.items.append(
                (
                    f"{where}.addresses",
                    f"Too many: {len(endpoint.addresses)}: must have at most "
                    f"{MAX_ENDPOINT_ADDRESSES} items",
                )
            )
        for j, address in enumerate(endpoint.addresses):
            _address(found, f"{where}.addresses[{j}]", address, eps.address_type)
        if endpoint.HasField("hostname"):
            for error in names.dns1123_label(endpoint.hostname):
                found.invalid(f"{where}.hostname", endpoint.hostname, error)
        if endpoint.HasField("node_name"):
            for error in names.dns1123_subdomain(endpoint.node_name):
                found.invalid(f"{where}.nodeName", endpoint.node_name, error)
    if len(eps.ports) > MAX_SLICE_PORTS:
        found.items.append(
            ("ports", f"Too many: {len(eps.ports)}: must have at most {MAX_SLICE_PORTS} items")
        )
    seen: set[str] = set()
    for i, port in enumerate(eps.ports):
        where = f"ports[{i}]"
        if port.name:
            for error in names.dns1123_label(port.name):
                found.invalid(f"{where}.name", port.name, error)
        if port.name in seen:
            found.duplicate(f"{where}.name", port.name)
        seen.add(port.name)
        if port.HasField("protocol") and port.protocol not in PROTOCOLS:
            found.unsupported(f"{where}.protocol", port.protocol, PROTOCOLS)
        if port.HasField("port") and not 0 <= port.port <= 65535:
            found.invalid(f"{where}.port", port.port, "must be between 0 and 65535, inclusive")


def _address(found: Findings, field: str, address: str, address_type: str) -> None:
    if address_type == "IPv4" and not is_ipv4(address):
        found.invalid(field, address, "must be a valid IPv4 address")
    elif address_type == "IPv6":
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            found.invalid(field, address, "must be a valid IPv6 address")
    elif address_type == "FQDN":
        for error in names.dns1123_subdomain(address):
            found.invalid(field, address, error)


def is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True
