"""Pod specs and their containers: names, images, policies, env, ports, resources, probes.

Invariant: resource amounts are Kubernetes quantities; a request above its limit is reported
on the request, as the API server does.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Value

from pilothouse import quantity as quantities
from pilothouse.manifests import names
from pilothouse.manifests.validation import actions, security
from pilothouse.manifests.validation.findings import Findings, show
from pilothouse.manifests.validation.meta import labels
from pilothouse.v1 import objects_pb2

RESOURCE_NAMES = ("cpu", "ephemeral-storage", "memory")


def pod_spec(
    found: Findings, spec: objects_pb2.PodSpec, path: str, *, restart_policies: tuple[str, ...]
) -> None:
    if not spec.containers:
        found.required(f"{path}.containers")
    seen: set[str] = set()
    host_ports: set[str] = set()
    for i, container in enumerate(spec.containers):
        where = f"{path}.containers[{i}]"
        if container.name in seen:
            found.duplicate(f"{where}.name", container.name)
        seen.add(container.name)
        _container(found, container, where)
        for j, port in enumerate(container.ports):
            if port.host_port:
                key = f"{port.host_port}/{port.protocol or 'TCP'}"
                if key in host_ports:
                    found.duplicate(f"{where}.ports[{j}].hostPort", key)
                host_ports.add(key)
    if spec.restart_policy and spec.restart_policy not in restart_policies:
        found.unsupported(f"{path}.restartPolicy", spec.restart_policy, restart_policies)
    dns = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
    if spec.dns_policy and spec.dns_policy not in dns:
        found.unsupported(f"{path}.dnsPolicy", spec.dns_policy, dns)
    if spec.HasField("termination_grace_period_seconds"):
        found.nonnegative(
            f"{path}.terminationGracePeriodSeconds", spec.termination_grace_period_seconds
        )
    labels(found, f"{path}.nodeSelector", spec.node_selector)
    security.pod(found, spec, path)
    if spec.node_name:
        for error in names.dns1123_subdomain(spec.node_name):
            found.invalid(f"{path}.nodeName", spec.node_name, error)


def _container(found: Findings, container: objects_pb2.Container, path: str) -> None:
    if not container.name:
        found.required(f"{path}.name")
    else:
        for error in names.dns1123_label(container.name):
            found.invalid(f"{path}.name", container.name, error)
    if not container.image.strip():
        found.required(f"{path}.image")
    policies = ("Always", "IfNotPresent", "Never")
    if container.image_pull_policy and container.image_pull_policy not in policies:
        found.unsupported(f"{path}.imagePullPolicy", container.image_pull_policy, policies)
    message_policies = ("FallbackToLogsOnError", "File")
    if (
        container.termination_message_policy
        and container.termination_message_policy not in message_policies
    ):
        found.unsupported(
            f"{path}.terminationMessagePolicy",
            container.termination_message_policy,
            message_policies,
        )
    for i, env in enumerate(container.env):
        if not env.name:
            found.required(f"{path}.env[{i}].name")
        else:
            for error in names.env_var_name(env.name):
                found.invalid(f"{path}.env[{i}].name", env.name, error)
    _ports(found, container.ports, f"{path}.ports")
    _resources(found, container.resources, f"{path}.resources")
    for field, json_name in (
        ("liveness_probe", "livenessProbe"),
        ("readiness_probe", "readinessProbe"),
        ("startup_probe", "startupProbe"),
    ):
        if container.HasField(field):
            probe = getattr(container, field)
            _probe(found, probe, f"{path}.{json_name}", single_success=field != "readiness_probe")


def _ports(found: Findings, ports: Iterable[objects_pb2.ContainerPort], path: str) -> None:
    names_seen: set[str] = set()
    for i, port in enumerate(ports):
        where = f"{path}[{i}]"
        if port.name:
            for error in names.port_name(port.name):
                found.invalid(f"{where}.name", port.name, error)
            if port.name in names_seen:
                found.duplicate(f"{where}.name", port.name)
            names_seen.add(port.name)
        if port.container_port == 0:
            found.required(f"{where}.containerPort")
        else:
            _port_number(found, f"{where}.containerPort", port.container_port)
        if port.host_port:
            _port_number(found, f"{where}.hostPort", port.host_port)
        protocols = ("SCTP", "TCP", "UDP")
        if port.protocol and port.protocol not in protocols:
            found.unsupported(f"{where}.protocol", port.protocol, protocols)


def _port_number(found: Findings, field: str, number: int) -> None:
    if not 1 <= number <= 65535:
        found.invalid(field, number, "must be between 1 and 65535, inclusive")


def quantity(found: Findings, field: str, amount: str) -> Decimal | None:
    try:
        value = quantities.parse(amount)
    except quantities.QuantityError:
        found.invalid(
            field,
            amount,
            f"quantities must match the regular expression {quantities.K8S_PATTERN!r}",
        )
        return None
    if value < 0:
        found.invalid(field, amount, "must be greater than or equal to 0")
        return None
    return value


def _resources(found: Findings, resources: objects_pb2.ResourceRequirements, path: str) -> None:
    parsed: dict[str, dict[str, Any]] = {"limits": {}, "requests": {}}
    for kind in ("limits", "requests"):
        for name, amount in getattr(resources, kind).items():
            field = f"{path}.{kind}[{name}]"
            if name not in RESOURCE_NAMES:
                found.unsupported(field, name, RESOURCE_NAMES)
                continue
            value = quantity(found, field, amount)
            if value is not None:
                parsed[kind][name] = value
    for name, request in parsed["requests"].items():
        limit = parsed["limits"].get(name)
        if limit is not None and request > limit:
            found.invalid(
                f"{path}.requests[{name}]",
                resources.requests[name],
                f"must be less than or equal to {name} limit of {resources.limits[name]}",
            )


def _probe(found: Findings, probe: objects_pb2.Probe, path: str, *, single_success: bool) -> None:
    handlers = [
        (field, json_name)
        for field, json_name in (
            ("exec", "exec"),
            ("http_get", "httpGet"),
            ("tcp_socket", "tcpSocket"),
            ("grpc", "grpc"),
        )
        if probe.HasField(field)
    ]
    if not handlers:
        found.required(path, "must specify a handler type")
    for _, json_name in handlers[1:]:
        found.forbidden(f"{path}.{json_name}", "may not specify more than 1 handler type")
    if probe.HasField("exec") and not probe.exec.command:
        found.required(f"{path}.exec.command")
    if probe.HasField("http_get"):
        _probe_port(found, probe.http_get, f"{path}.httpGet.port")
        schemes = ("HTTP", "HTTPS")
        if probe.http_get.scheme and probe.http_get.scheme not in schemes:
            found.unsupported(f"{path}.httpGet.scheme", probe.http_get.scheme, schemes)
        actions.http_get(found, probe.http_get, f"{path}.httpGet")
    if probe.HasField("grpc"):
        _port_number(found, f"{path}.grpc.port", probe.grpc.port)
    if probe.HasField("tcp_socket"):
        _probe_port(found, probe.tcp_socket, f"{path}.tcpSocket.port")
        actions.host(found, probe.tcp_socket.host, f"{path}.tcpSocket.host")
    for field, json_name in (
        ("initial_delay_seconds", "initialDelaySeconds"),
        ("timeout_seconds", "timeoutSeconds"),
        ("period_seconds", "periodSeconds"),
        ("success_threshold", "successThreshold"),
        ("failure_threshold", "failureThreshold"),
    ):
        found.nonnegative(f"{path}.{json_name}", getattr(probe, field))
    if single_success and probe.success_threshold not in (0, 1):
        found.invalid(f"{path}.successThreshold", probe.success_threshold, "must be 1")
    grace = probe.termination_grace_period_seconds
    if probe.HasField("termination_grace_period_seconds") and grace <= 0:
        found.invalid(f"{path}.terminationGracePeriodSeconds", grace, "must be greater than 0")


def _probe_port(found: Findings, action: Message, field: str) -> None:
    if not action.HasField("port"):
        found.required(field)
        return
    port: Value = action.port
    if port.HasField("string_value"):
        text = port.string_value
        if text.isdigit():
            found.invalid(field, text, "must contain at least one letter (a-z)")
            return
        for error in names.port_name(text):
            found.invalid(field, text, error)
    elif port.HasField("number_value") and port.number_value.is_integer():
        _port_number(found, field, int(port.number_value))
    else:
        found.invalid(field, show(port.number_value), "must be an integer or a port name")
