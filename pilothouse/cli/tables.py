"""kubectl-style tables: the columns `get` prints for each kind, and how they are laid out.

Invariants: column names, cell contents and spacing follow kubectl (its tabwriter: cells padded
to the widest cell plus three spaces, at least six wide, the last column unpadded). Cells are
computed from the object alone (plus the pods on a node for its allocation), with the current
time passed in, so every function here is pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from google.protobuf.message import Message

from pilothouse import quantity
from pilothouse.cli import autoscalingtable, workloadtables
from pilothouse.cli.cells import NONE, age, selector_text, template_cells
from pilothouse.cli.cells import human_duration as human_duration  # tables.human_duration
from pilothouse.cli.podstatus import pod_status
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o

_ROLE_PREFIX = "node-role.kubernetes.io/"
_MIN_WIDTH = 6
_PADDING = 3


@dataclass(frozen=True, slots=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(slots=True)
class Layout:
    """Column widths that only grow, so rows printed one by one (`get -w`) stay aligned."""

    widths: list[int] = field(default_factory=list)

    def fit(self, rows: Iterable[Sequence[str]]) -> None:
        for row in rows:
            for i, cell in enumerate(row):
                if i >= len(self.widths):
                    self.widths.append(_MIN_WIDTH)
                self.widths[i] = max(self.widths[i], len(cell) + _PADDING)

    def line(self, row: Sequence[str]) -> str:
        self.fit([row])
        cells = [cell.ljust(self.widths[i]) for i, cell in enumerate(row[:-1])]
        return "".join(cells) + (row[-1] if row else "")


def render(table: Table) -> str:
    """The table as kubectl prints it: header line, then one line per row."""
    layout = Layout()
    layout.fit([table.headers, *table.rows])
    return "\n".join(layout.line(row) for row in (table.headers, *table.rows))


def table(
    kind: Kind,
    items: Sequence[Message],
    *,
    now: datetime,
    wide: bool = False,
    with_namespace: bool = False,
    pods: Sequence[o.Pod] | None = None,
) -> Table:
    """The `get` table for `items` of one kind; `pods` adds allocation columns to nodes."""
    headers, row = _COLUMNS[kind](wide=wide, pods=pods)
    if kind == Kind.EVENT:
        items = sorted(items, key=event_time)  # type: ignore[arg-type]
    rows = [row(item, now) for item in items]
    if with_namespace and kind.info.namespaced:
        headers = ("NAMESPACE", *headers)
        rows = [(item.metadata.namespace, *r) for item, r in zip(items, rows, strict=True)]  # type: ignore[attr-defined]
    return Table(headers=tuple(headers), rows=tuple(tuple(r) for r in rows))


def node_status(node: o.Node) -> str:
    ready = next((c for c in node.status.conditions if c.type == "Ready"), None)
    if ready is None:
        status = "Unknown"
    elif ready.status == "True":
        status = "Ready"
    elif ready.status == "False":
        status = "NotReady"
    else:
        status = "Unknown"
    if node.spec.unschedulable:
        status += ",SchedulingDisabled"
    return status


def node_roles(node: o.Node) -> str:
    labels = node.metadata.labels
    roles = {key.partition("/")[2] for key in labels if key.startswith(_ROLE_PREFIX)}
    if labels.get("kubernetes.io/role"):
        roles.add(labels["kubernetes.io/role"])
    roles.discard("")
    return ",".join(sorted(roles)) if roles else NONE


@dataclass(frozen=True, slots=True)
class Allocation:
    cpu_requested: int  # millicores
    cpu_allocatable: int
    memory_requested: int  # bytes
    memory_allocatable: int


def allocation(node: o.Node, pods: Iterable[o.Pod]) -> Allocation:
    """Requests of the non-terminated pods bound to `node`, against its allocatable."""
    cpu = memory = 0
    for pod in pods:
        if pod.spec.node_name != node.metadata.name or pod.status.phase in ("Succeeded", "Failed"):
            continue
        for container in pod.spec.containers:
            requests = container.resources.requests
            cpu += _safe(quantity.parse_cpu, requests.get("cpu", "0"))
            memory += _safe(quantity.parse_memory, requests.get("memory", "0"))
    allocatable = node.status.allocatable or node.status.capacity
    return Allocation(
        cpu_requested=cpu,
        cpu_allocatable=_safe(quantity.parse_cpu, allocatable.get("cpu", "0")),
        memory_requested=memory,
        memory_allocatable=_safe(quantity.parse_memory, allocatable.get("memory", "0")),
    )


def _safe(parse: Callable[[str], int], value: str) -> int:
    try:
        return int(parse(value))
    except ValueError:
        return 0


def _share(used: int, total: int, fmt: Callable[[int], str]) -> str:
    percent = f" ({used * 100 // total}%)" if total else ""
    return f"{fmt(used)}/{fmt(total) if total else '?'}{percent}"


# --- columns per kind ---------------------------------------------------------------------------

_RowFn = Callable[[Any, datetime], tuple[str, ...]]


def _deployment_columns(*, wide: bool, pods: object) -> tuple[tuple[str, ...], _RowFn]:
    headers = ("NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE")
    if wide:
        headers += ("CONTAINERS", "IMAGES", "SELECTOR")

    def row(d: o.Deployment, now: datetime) -> tuple[str, ...]:
        desired = d.spec.replicas if d.spec.HasField("replicas") else 1
        cells = (
            d.metadata.name,
            f"{d.status.ready_replicas}/{desired}",
            str(d.status.updated_replicas),
            str(d.status.available_replicas),
            age(d.metadata.creation_timestamp, now),
        )
        if wide:
            cells += template_cells(d.spec.template, d.spec.selector)
        return cells

    return headers, row


def _pod_columns(*, wide: bool, pods: object) -> tuple[tuple[str, ...], _RowFn]:
    headers = ("NAME", "READY", "STATUS", "RESTARTS", "AGE")
    if wide:
        headers += ("IP", "NODE")

    def row(pod: o.Pod, now: datetime) -> tuple[str, ...]:
        status, ready, restarts, last_restart = pod_status(pod)
        restart_cell = str(restarts)
        if restarts and last_restart is not None:
            restart_cell += f" ({age(last_restart, now)} ago)"
        sidecars = sum(1 for c in pod.spec.init_containers if c.restart_policy == "Always")
        cells = (
            pod.metadata.name,
            f"{ready}/{len(pod.spec.containers) + sidecars}",
            status,
            restart_cell,
            age(pod.metadata.creation_timestamp, now),
        )
        if wide:
            cells += (pod.status.pod_ip or NONE, pod.spec.node_name or NONE)
        return cells

    return headers, row


def _node_columns(*, wide: bool, pods: Sequence[o.Pod] | None) -> tuple[tuple[str, ...], _RowFn]:
    headers: tuple[str, ...] = ("NAME", "STATUS", "ROLES", "AGE", "VERSION")
    if pods is not None:
        headers += ("CPU-ALLOCATED", "MEMORY-ALLOCATED")
    if wide:
        headers += ("INTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME")

    def row(node: o.Node, now: datetime) -> tuple[str, ...]:
        info = node.status.node_info
        cells: tuple[str, ...] = (
            node.metadata.name,
            node_status(node),
            node_roles(node),
            age(node.metadata.creation_timestamp, now),
            info.kubelet_version or NONE,
        )
        if pods is not None:
            used = allocation(node, pods)
            cells += (
                _share(used.cpu_requested, used.cpu_allocatable, quantity.format_cpu),
                _share(used.memory_requested, used.memory_allocatable, quantity.human_memory),
            )
        if wide:
            internal = next(
                (a.address for a in node.status.addresses if a.type == "InternalIP"), NONE
            )
            cells += (
                internal,
                info.os_image or NONE,
                info.kernel_version or NONE,
                info.container_runtime_version or NONE,
            )
        return cells

    return headers, row


def event_time(event: o.Event) -> int:
    stamp = event.last_timestamp if event.HasField("last_timestamp") else event.first_timestamp
    if not event.HasField("last_timestamp") and not event.HasField("first_timestamp"):
        stamp = event.metadata.creation_timestamp
    return stamp.ToNanoseconds()


def _configmap_columns(*, wide: bool, pods: object) -> tuple[tuple[str, ...], _RowFn]:
    def row(cm: o.ConfigMap, now: datetime) -> tuple[str, ...]:
        data = len(cm.data) + len(cm.binary_data)
        return cm.metadata.name, str(data), age(cm.metadata.creation_timestamp, now)

    return ("NAME", "DATA", "AGE"), row


def _secret_columns(*, wide: bool, pods: object) -> tuple[tuple[str, ...], _RowFn]:
    def row(secret: o.Secret, now: datetime) -> tuple[str, ...]:
        created = age(secret.metadata.creation_timestamp, now)
        return secret.metadata.name, secret.type, str(len(secret.data)), created

    return ("NAME", "TYPE", "DATA", "AGE"), row


def _event_columns(*, wide: bool, pods: object) -> tuple[tuple[str, ...], _RowFn]:
    headers = ("LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE")

    def row(event: o.Event, now: datetime) -> tuple[str, ...]:
        last = event.last_timestamp if event.HasField("last_timestamp") else None
        if last is None:
            last = event.metadata.creation_timestamp
        seen = age(last, now)
        if event.count > 1 and event.HasField("first_timestamp"):
            seen = f"{seen} (x{event.count} over {age(event.first_timestamp, now)})"
        ref = event.involved_object
        return (
            seen,
            event.type or "Normal",
            event.reason,
            f"{ref.kind.lower()}/{ref.name}",
            event.message.strip().replace("\n", " "),
        )

    return headers, row


def _service_columns(*, wide: bool, pods: object) -> tuple[tuple[str, ...], _RowFn]:
    headers = ("NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE")
    if wide:
        headers += ("SELECTOR",)

    def row(svc: o.Service, now: datetime) -> tuple[str, ...]:
        spec = svc.spec
        external = "<pending>" if spec.type == "LoadBalancer" else NONE
        if svc.status.load_balancer.ingress:
            external = ",".join(i.ip or i.hostname for i in svc.status.load_balancer.ingress)
        cells = (
            svc.metadata.name,
            spec.type or "ClusterIP",
            spec.cluster_ip or NONE,
            external,
            service_ports(svc) or NONE,
            age(svc.metadata.creation_timestamp, now),
        )
        if wide:
            cells += (selector_text(spec.selector),)
        return cells

    return headers, row


def service_ports(svc: o.Service) -> str:
    """kubectl's PORT(S): "80/TCP", "80:30080/TCP" with a node port, comma-separated."""
    return ",".join(
        f"{p.port}{f':{p.node_port}' if p.node_port else ''}/{p.protocol or 'TCP'}"
        for p in svc.spec.ports
    )


def _endpointslice_columns(*, wide: bool, pods: object) -> tuple[tuple[str, ...], _RowFn]:
    headers = ("NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE")

    def row(eps: o.EndpointSlice, now: datetime) -> tuple[str, ...]:
        ports = ",".join(str(p.port) if p.HasField("port") else "<unset>" for p in eps.ports)
        addresses = [a for ep in eps.endpoints for a in ep.addresses]
        shown = ",".join(addresses[:3]) or "<unset>"
        if len(addresses) > 3:
            shown += f" + {len(addresses) - 3} more..."
        return (
            eps.metadata.name,
            eps.address_type,
            ports or "<unset>",
            shown,
            age(eps.metadata.creation_timestamp, now),
        )

    return headers, row


_COLUMNS = {
    Kind.DEPLOYMENT: _deployment_columns,
    Kind.REPLICASET: workloadtables.replicas(lambda rs: rs.spec.selector),
    Kind.POD: _pod_columns,
    Kind.NODE: _node_columns,
    Kind.EVENT: _event_columns,
    Kind.CONFIGMAP: _configmap_columns,
    Kind.SECRET: _secret_columns,
    Kind.SERVICE: _service_columns,
    Kind.ENDPOINTSLICE: _endpointslice_columns,
    **workloadtables.COLUMNS,
    **autoscalingtable.COLUMNS,
}
