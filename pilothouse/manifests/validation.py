"""Semantic checks of objects, with Kubernetes' field paths and wording.

Invariants: `check(message)` returns every problem it finds as (field path, message) pairs and
never stops at the first; it expects defaults to have been applied (as the Kubernetes API server
validates after defaulting) but does not crash without them. Messages follow apimachinery's
forms: `Required value`, `Invalid value: <v>: <why>`, `Unsupported value: "<v>": supported
values: …`, `Duplicate value: "<v>"`, `Forbidden: <why>`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Value

from pilothouse import quantity
from pilothouse.manifests import names
from pilothouse.v1 import objects_pb2

RESOURCE_NAMES = ("cpu", "memory")
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
_PERCENT = re.compile(r"^[0-9]+%$")
_PERCENT_MESSAGE = (
    "a valid percent string must be a numeric string followed by an ending '%' "
    "(e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"
)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return json.dumps(dict(value), sort_keys=True)
    return str(value)


class Findings:
    """The problems found in one object, in the order they were found."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def required(self, field: str, detail: str = "") -> None:
        self.items.append((field, f"Required value: {detail}" if detail else "Required value"))

    def invalid(self, field: str, value: Any, detail: str) -> None:
        self.items.append((field, f"Invalid value: {_show(value)}: {detail}"))

    def unsupported(self, field: str, value: str, supported: Iterable[str]) -> None:
        listed = ", ".join(f'"{s}"' for s in sorted(supported))
        self.items.append((field, f'Unsupported value: "{value}": supported values: {listed}'))

    def duplicate(self, field: str, value: Any) -> None:
        self.items.append((field, f"Duplicate value: {_show(value)}"))

    def forbidden(self, field: str, detail: str) -> None:
        self.items.append((field, f"Forbidden: {detail}"))

    def nonnegative(self, field: str, value: int) -> None:
        if value < 0:
            self.invalid(field, value, "must be greater than or equal to 0")


def check(message: Message) -> list[tuple[str, str]]:
    found = Findings()
    if isinstance(message, objects_pb2.Deployment):
        _metadata(found, message.metadata, namespaced=True)
        _deployment_spec(found, message.spec)
    elif isinstance(message, objects_pb2.Pod):
        _metadata(found, message.metadata, namespaced=True)
        _pod_spec(found, message.spec, "spec", restart_policies=("Always", "OnFailure", "Never"))
    elif isinstance(message, objects_pb2.Node):
        _metadata(found, message.metadata, namespaced=False)
        capacity = message.status.capacity
        for key, amount in capacity.items():
            _quantity(found, f"status.capacity[{key}]", amount)
        for key, amount in message.status.allocatable.items():
            if capacity.get(key) != amount:  # a copy of capacity (the default) is reported once
                _quantity(found, f"status.allocatable[{key}]", amount)
    elif isinstance(message, objects_pb2.ReplicaSet):
        _metadata(found, message.metadata, namespaced=True)
        spec = message.spec
        if spec.HasField("replicas"):
            found.nonnegative("spec.replicas", spec.replicas)
        _template(found, spec.selector, spec.template, restart_policies=("Always",), holder=spec)
        found.nonnegative("spec.minReadySeconds", spec.min_ready_seconds)
    elif hasattr(message, "metadata"):
        _metadata(found, message.metadata, namespaced=True)
    return found.items


# ---------------------------------------------------------------------------------------------
# Metadata and labels.


def _metadata(found: Findings, meta: objects_pb2.ObjectMeta, *, namespaced: bool) -> None:
    if not meta.name and not meta.generate_name:
        found.required("metadata.name", "name or generateName is required")
    elif meta.name:
        for error in names.dns1123_subdomain(meta.name):
            found.invalid("metadata.name", meta.name, error)
    if namespaced and meta.namespace:
        for error in names.dns1123_label(meta.namespace):
            found.invalid("metadata.namespace", meta.namespace, error)
    labels(found, "metadata.labels", meta.labels)
    size = 0
    for key, value in meta.annotations.items():
        for error in names.qualified_name(key.lower()):
            found.invalid("metadata.annotations", key, error)
        size += len(key) + len(value)
    if size > TOTAL_ANNOTATION_SIZE_LIMIT:
        found.items.append(
            (
                "metadata.annotations",
                f"Too long: must have at most {TOTAL_ANNOTATION_SIZE_LIMIT} bytes",
            )
        )


def labels(found: Findings, field: str, values: Mapping[str, str]) -> None:
    for key, value in values.items():
        for error in names.qualified_name(key):
            found.invalid(field, key, error)
        for error in names.label_value(value):
            found.invalid(field, value, error)


# ---------------------------------------------------------------------------------------------
# Deployments.


def _deployment_spec(found: Findings, spec: objects_pb2.DeploymentSpec) -> None:
    if spec.HasField("replicas"):
        found.nonnegative("spec.replicas", spec.replicas)
    _template(found, spec.selector, spec.template, restart_policies=("Always",), holder=spec)
    _strategy(found, spec.strategy)
    found.nonnegative("spec.minReadySeconds", spec.min_ready_seconds)
    if spec.HasField("revision_history_limit"):
        found.nonnegative("spec.revisionHistoryLimit", spec.revision_history_limit)
    if spec.HasField("progress_deadline_seconds"):
        found.nonnegative("spec.progressDeadlineSeconds", spec.progress_deadline_seconds)
        if spec.progress_deadline_seconds <= spec.min_ready_seconds:
            found.invalid(
                "spec.progressDeadlineSeconds",
                spec.progress_deadline_seconds,
                "must be greater than minReadySeconds",
            )
    if (
        spec.rollback_on_failure
        and spec.HasField("revision_history_limit")
        and spec.revision_history_limit == 0
    ):
        found.invalid(
            "spec.rollbackOnFailure",
            True,
            "needs a revisionHistoryLimit of at least 1, or there is no revision to go back to",
        )


def _template(
    found: Findings,
    selector: objects_pb2.LabelSelector,
    template: objects_pb2.PodTemplateSpec,
    *,
    restart_policies: tuple[str, ...],
    holder: Message,
) -> None:
    """A selector and the pod template it must select (Deployments, ReplicaSets)."""
    match_labels = selector.match_labels
    if not holder.HasField("selector"):
        found.required("spec.selector")
    elif not match_labels:
        found.invalid("spec.selector", {}, "empty selector is invalid for deployment")
    else:
        labels(found, "spec.selector.matchLabels", match_labels)
    template_labels = template.metadata.labels
    labels(found, "spec.template.metadata.labels", template_labels)
    if match_labels and any(template_labels.get(k) != v for k, v in match_labels.items()):
        found.invalid(
            "spec.template.metadata.labels",
            dict(template_labels),
            "`selector` does not match template `labels`",
        )
    if not holder.HasField("template"):
        found.required("spec.template")
    else:
        _pod_spec(found, template.spec, "spec.template.spec", restart_policies=restart_policies)


def _strategy(found: Findings, strategy: objects_pb2.DeploymentStrategy) -> None:
    path = "spec.strategy"
    if strategy.type and strategy.type not in ("Recreate", "RollingUpdate"):
        found.unsupported(f"{path}.type", strategy.type, ("Recreate", "RollingUpdate"))
        return
    if strategy.type == "Recreate":
        if strategy.HasField("rolling_update"):
            found.forbidden(
                f"{path}.rollingUpdate",
                "may not be specified when strategy `type` is 'Recreate'",
            )
        return
    rolling = strategy.rolling_update
    surge = _int_or_percent(found, f"{path}.rollingUpdate.maxSurge", rolling, "max_surge")
    unavailable = _int_or_percent(
        found, f"{path}.rollingUpdate.maxUnavailable", rolling, "max_unavailable"
    )
    if unavailable is not None and unavailable[1] and unavailable[0] > 100:
        found.invalid(
            f"{path}.rollingUpdate.maxUnavailable",
            f"{unavailable[0]}%",
            "must not be greater than 100%",
        )
    if surge is not None and unavailable is not None and surge[0] == 0 and unavailable[0] == 0:
        found.invalid(
            f"{path}.rollingUpdate.maxUnavailable",
            _show_int_or_string(rolling.max_unavailable),
            "may not be 0 when `maxSurge` is 0",
        )


def _show_int_or_string(value: Value) -> int | str:
    if value.HasField("string_value"):
        return value.string_value
    return int(value.number_value)


def _int_or_percent(
    found: Findings, field: str, holder: Message, name: str
) -> tuple[int, bool] | None:
    """(amount, is_percent) of an IntOrString field, or None when unset or invalid."""
    if not holder.HasField(name):
        return None
    value: Value = getattr(holder, name)
    if value.HasField("string_value"):
        text = value.string_value
        if not _PERCENT.match(text):
            found.invalid(field, text, _PERCENT_MESSAGE)
            return None
        return int(text[:-1]), True
    if value.HasField("number_value") and value.number_value.is_integer():
        number = int(value.number_value)
        if number < 0:
            found.invalid(field, number, "must be greater than or equal to 0")
            return None
        return number, False
    found.invalid(field, _show(value.number_value), "must be an integer or a percent string")
    return None


# ---------------------------------------------------------------------------------------------
# Pods and containers.


def _pod_spec(
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


def _quantity(found: Findings, field: str, amount: str) -> Decimal | None:
    try:
        value = quantity.parse(amount)
    except quantity.QuantityError:
        found.invalid(
            field,
            amount,
            f"quantities must match the regular expression {quantity.K8S_PATTERN!r}",
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
            value = _quantity(found, field, amount)
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
        for i, header in enumerate(probe.http_get.http_headers):
            if not header.name:
                found.required(f"{path}.httpGet.httpHeaders[{i}].name")
    if probe.HasField("tcp_socket"):
        _probe_port(found, probe.tcp_socket, f"{path}.tcpSocket.port")
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
        found.invalid(field, _show(port.number_value), "must be an integer or a port name")
