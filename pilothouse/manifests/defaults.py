"""Default values, exactly as the Kubernetes API server sets them (apps/v1 and core/v1).

Invariants: `set_defaults` only fills fields that are unset (or zero where Kubernetes treats
zero as unset), so applying it twice changes nothing. It never rejects anything: bad values
are `validation`'s business. Deployment templates are defaulted like Kubernetes defaults them,
which does NOT copy limits into requests: that happens to Pods only (SetDefaults_Pod), so the
controller that creates Pods from a template must call `set_defaults` on each Pod.
"""

from __future__ import annotations

from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Value

from pilothouse import kinds
from pilothouse.manifests import configdefaults
from pilothouse.manifests.kinddefaults import set_kind_defaults
from pilothouse.v1 import objects_pb2

DEFAULT_REPLICAS = 1
DEFAULT_MAX_UNAVAILABLE = "25%"
DEFAULT_MAX_SURGE = "25%"
DEFAULT_REVISION_HISTORY_LIMIT = 10
DEFAULT_PROGRESS_DEADLINE_SECONDS = 600
DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS = 30
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
DEFAULT_SESSION_AFFINITY_TIMEOUT_SECONDS = 10800  # 3 hours


def set_defaults(message: Message) -> None:
    """Fill in Kubernetes' defaults on any stored kind, in place (idempotent)."""
    kind = kinds.of_message(message)
    message.api_version = kind.info.api_version
    message.kind = kind.info.kind
    if not kind.info.namespaced:
        message.metadata.namespace = ""  # cluster-scoped: a namespace means nothing
    elif not message.metadata.namespace:
        message.metadata.namespace = kinds.DEFAULT_NAMESPACE
    if isinstance(message, objects_pb2.Deployment):
        _deployment_spec(message.spec)
    elif isinstance(message, objects_pb2.ReplicaSet):
        if not message.spec.HasField("replicas"):
            message.spec.replicas = DEFAULT_REPLICAS
        _pod_spec(message.spec.template.spec)
    elif isinstance(message, objects_pb2.Pod):
        _pod_spec(message.spec)
        for container in (*message.spec.init_containers, *message.spec.containers):
            _requests_from_limits(container)
    elif isinstance(message, objects_pb2.Node) and not message.status.allocatable:
        for name, amount in message.status.capacity.items():
            message.status.allocatable[name] = amount
    elif isinstance(message, objects_pb2.Service):
        _service_spec(message.spec)
    elif isinstance(message, objects_pb2.EndpointSlice):
        for port in message.ports:
            if not port.HasField("protocol"):
                port.protocol = "TCP"
            if not port.HasField("name"):
                port.name = ""
    elif isinstance(message, objects_pb2.Secret):
        configdefaults.secret(message)
    else:
        set_kind_defaults(message, pod_spec=_pod_spec)


def _service_spec(spec: objects_pb2.ServiceSpec) -> None:
    if not spec.type:
        spec.type = "ClusterIP"
    if not spec.session_affinity:
        spec.session_affinity = "None"
    if spec.session_affinity == "ClientIP":
        client_ip = spec.session_affinity_config.client_ip
        if not client_ip.HasField("timeout_seconds"):
            client_ip.timeout_seconds = DEFAULT_SESSION_AFFINITY_TIMEOUT_SECONDS
    if spec.cluster_ip and not spec.cluster_ips:
        spec.cluster_ips.append(spec.cluster_ip)
    elif spec.cluster_ips and not spec.cluster_ip:
        spec.cluster_ip = spec.cluster_ips[0]
    for port in spec.ports:
        if not port.protocol:
            port.protocol = "TCP"
        target = port.target_port
        unset = not port.HasField("target_port") or (
            target.HasField("number_value") and target.number_value == 0
        )
        if unset:
            port.target_port.CopyFrom(Value(number_value=port.port))


def _deployment_spec(spec: objects_pb2.DeploymentSpec) -> None:
    if not spec.HasField("replicas"):
        spec.replicas = DEFAULT_REPLICAS
    strategy = spec.strategy
    if not strategy.type:
        strategy.type = "RollingUpdate"
    if strategy.type == "RollingUpdate":
        rolling = strategy.rolling_update
        if not rolling.HasField("max_unavailable"):
            rolling.max_unavailable.CopyFrom(Value(string_value=DEFAULT_MAX_UNAVAILABLE))
        if not rolling.HasField("max_surge"):
            rolling.max_surge.CopyFrom(Value(string_value=DEFAULT_MAX_SURGE))
    if not spec.HasField("revision_history_limit"):
        spec.revision_history_limit = DEFAULT_REVISION_HISTORY_LIMIT
    if not spec.HasField("progress_deadline_seconds"):
        spec.progress_deadline_seconds = DEFAULT_PROGRESS_DEADLINE_SECONDS
    _pod_spec(spec.template.spec)


def _pod_spec(spec: objects_pb2.PodSpec) -> None:
    if not spec.dns_policy:
        spec.dns_policy = "ClusterFirst"
    if not spec.restart_policy:
        spec.restart_policy = "Always"
    if not spec.HasField("termination_grace_period_seconds"):
        spec.termination_grace_period_seconds = DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS
    if not spec.scheduler_name:
        spec.scheduler_name = "default-scheduler"
    for container in spec.containers:
        _container(container)
    configdefaults.pod_spec(spec, container=_container)


def image_tag(image: str) -> str:
    """The tag of an image reference; "latest" when it has neither tag nor digest."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.rsplit(":", 1)[1]
    return "" if digest else "latest"


def _container(container: objects_pb2.Container) -> None:
    if not container.image_pull_policy:
        latest = image_tag(container.image) == "latest"
        container.image_pull_policy = "Always" if latest else "IfNotPresent"
    if not container.termination_message_path:
        container.termination_message_path = DEFAULT_TERMINATION_MESSAGE_PATH
    if not container.termination_message_policy:
        container.termination_message_policy = "File"
    for port in container.ports:
        if not port.protocol:
            port.protocol = "TCP"
    for field in ("liveness_probe", "readiness_probe", "startup_probe"):
        if container.HasField(field):
            _probe(getattr(container, field))
    for hook in ("pre_stop", "post_start"):
        handler = getattr(container.lifecycle, hook)
        if container.lifecycle.HasField(hook) and handler.HasField("http_get"):
            _http_get(handler.http_get)


def _probe(probe: objects_pb2.Probe) -> None:
    if probe.timeout_seconds == 0:
        probe.timeout_seconds = 1
    if probe.period_seconds == 0:
        probe.period_seconds = 10
    if probe.success_threshold == 0:
        probe.success_threshold = 1
    if probe.failure_threshold == 0:
        probe.failure_threshold = 3
    if probe.HasField("http_get"):
        _http_get(probe.http_get)


def _http_get(action: objects_pb2.HTTPGetAction) -> None:
    if not action.path:
        action.path = "/"
    if not action.scheme:
        action.scheme = "HTTP"


def _requests_from_limits(container: objects_pb2.Container) -> None:
    resources = container.resources
    for name, amount in resources.limits.items():
        if name not in resources.requests:
            resources.requests[name] = amount
