"""What a cluster's administrator allows beyond the manifest syntax: the API server's checks.

These depend on how the control plane was started, so only it runs them (`pilothouse apply`
checks syntax locally; the control plane then applies its policy, and an object it refuses
writes nothing):
- a probe or preStop hook whose httpGet/tcpSocket `host` is set reaches outside its pod (the
  agent would connect to whatever that names): Forbidden unless the control plane runs with
  `--allow-probe-host`;
- `seccompProfile: {type: Unconfined}` (pod or container) runs without the default seccomp
  filter: Forbidden unless the control plane runs with `--allow-unconfined-seccomp`.
- a `hostPort` that is one of the cluster's own ports (`reserved_host_ports`: the control
  plane's API, join and etcd ports, the registry's, every node agent's, and
  `--reserved-host-ports`), or below `--min-host-port`: Invalid. A pod on a node's port would
  take traffic meant for the cluster itself (a hostPort on the agent's port cut the control
  plane off from that node while it stayed Ready).

Pods are checked wherever they are written: a Pod's `spec`, and the pod template of every
workload (`spec.template.spec` of a Deployment, ReplicaSet, DaemonSet, StatefulSet, Job or
ReplicationController; a CronJob's `spec.jobTemplate.spec.template.spec`), so a refused pod
can never be created by a controller either. Node agents enforce the same rules with flags of
the same names.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from google.protobuf.message import Message

from pilothouse.manifests.validation import podsecurity
from pilothouse.manifests.validation.findings import Findings
from pilothouse.manifests.validation.security import UNCONFINED
from pilothouse.v1 import objects_pb2


@dataclass(frozen=True, slots=True)
class ClusterPolicy:
    allow_probe_host: bool = False  # --allow-probe-host
    allow_unconfined_seccomp: bool = False  # --allow-unconfined-seccomp
    allow_privileged: bool = False  # --allow-privileged (securityContext.privileged)
    reserved_host_ports: frozenset[int] = frozenset()  # the cluster's own ports
    min_host_port: int = 1  # --min-host-port: lower hostPorts are refused


def check(message: Message, policy: ClusterPolicy) -> list[tuple[str, str]]:
    """Every pod setting of `message` that `policy` does not allow, as (field path, message)."""
    found = Findings()
    for spec, path in pod_specs(message):
        _pod(found, spec, path, policy)
    return found.items


_TEMPLATED = (
    objects_pb2.Deployment,
    objects_pb2.ReplicaSet,
    objects_pb2.DaemonSet,
    objects_pb2.StatefulSet,
    objects_pb2.Job,
    objects_pb2.ReplicationController,
)


def pod_specs(message: Message) -> Iterator[tuple[objects_pb2.PodSpec, str]]:
    if isinstance(message, objects_pb2.Pod):
        yield message.spec, "spec"
    elif isinstance(message, _TEMPLATED):
        yield message.spec.template.spec, "spec.template.spec"
    elif isinstance(message, objects_pb2.CronJob):
        yield message.spec.job_template.spec.template.spec, "spec.jobTemplate.spec.template.spec"


def _pod(found: Findings, spec: objects_pb2.PodSpec, path: str, policy: ClusterPolicy) -> None:
    _host_ports(found, spec, path, policy)
    if not policy.allow_privileged:
        podsecurity.privileged(found, spec, path)
    if not policy.allow_unconfined_seccomp:
        if spec.security_context.seccomp_profile.type == UNCONFINED:
            _unconfined(found, f"{path}.securityContext.seccompProfile.type")
        for i, container in enumerate(spec.containers):
            if container.security_context.seccomp_profile.type == UNCONFINED:
                _unconfined(found, f"{path}.containers[{i}].securityContext.seccompProfile.type")
    if not policy.allow_probe_host:
        for i, container in enumerate(spec.containers):
            for field, host in _hosts(container):
                found.forbidden(
                    f"{path}.containers[{i}].{field}",
                    f'"{host}" is outside the pod: probes and hooks may only reach their own '
                    "pod on this cluster (leave host empty to use the pod's IP; an admin may "
                    "allow it with the control plane's --allow-probe-host)",
                )


def _host_ports(
    found: Findings, spec: objects_pb2.PodSpec, path: str, policy: ClusterPolicy
) -> None:
    for kind, containers in (
        ("containers", spec.containers),
        ("initContainers", spec.init_containers),
    ):
        for i, container in enumerate(containers):
            for j, port in enumerate(container.ports):
                number = port.host_port
                if not number:
                    continue
                field = f"{path}.{kind}[{i}].ports[{j}].hostPort"
                if number in policy.reserved_host_ports:
                    found.invalid(
                        field,
                        number,
                        "the port is reserved on this cluster (a node agent's, the control "
                        "plane's, etcd's or the registry's port): choose another hostPort",
                    )
                elif number < policy.min_host_port:
                    found.invalid(
                        field,
                        number,
                        f"host ports below {policy.min_host_port} are not allowed on this "
                        "cluster (the control plane's --min-host-port)",
                    )


def has_host_ports(message: Message) -> bool:
    """Whether any pod of `message` asks for a hostPort (the API then reads the node ports)."""
    return any(
        port.host_port
        for spec, _ in pod_specs(message)
        for container in (*spec.containers, *spec.init_containers)
        for port in container.ports
    )


def _unconfined(found: Findings, field: str) -> None:
    found.forbidden(
        field,
        "Unconfined seccomp profiles are not allowed on this cluster (an admin may allow them "
        "with the control plane's and the nodes' --allow-unconfined-seccomp); remove it to "
        "run under the default profile (RuntimeDefault)",
    )


def _hosts(container: objects_pb2.Container) -> Iterator[tuple[str, str]]:
    """(field path below the container, host) of every action that names a host."""
    for field, json_name in (
        ("liveness_probe", "livenessProbe"),
        ("readiness_probe", "readinessProbe"),
        ("startup_probe", "startupProbe"),
    ):
        probe = getattr(container, field)
        if probe.http_get.host:
            yield f"{json_name}.httpGet.host", probe.http_get.host
        if probe.tcp_socket.host:
            yield f"{json_name}.tcpSocket.host", probe.tcp_socket.host
    hook = container.lifecycle.pre_stop
    if hook.http_get.host:
        yield "lifecycle.preStop.httpGet.host", hook.http_get.host
    if hook.tcp_socket.host:
        yield "lifecycle.preStop.tcpSocket.host", hook.tcp_socket.host
