"""Deployments, ReplicaSets and Pods as kubectl describes them, with their containers.

Invariants: a Deployment lists its old and new ReplicaSets by revision; a container shows its
state and last state, probes as kubectl's one-line summary, and resources as given; a pod's
conditions carry reason and message when one says why it is not True.
"""

from __future__ import annotations

from collections.abc import Sequence

from pilothouse.cli import tables
from pilothouse.cli.describe import podconfig, sections
from pilothouse.cli.sheet import NONE, Sheet, mapping, timestamp
from pilothouse.client import Client, ClientError
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"


async def deployment(sheet: Sheet, client: Client, d: o.Deployment) -> None:
    sections.metadata(sheet, d.metadata)
    sheet.field("Selector", tables.selector_text(d.spec.selector.match_labels))
    desired = d.spec.replicas if d.spec.HasField("replicas") else 1
    s = d.status
    sheet.field(
        "Replicas",
        f"{desired} desired | {s.updated_replicas} updated | {s.replicas} total | "
        f"{s.available_replicas} available | {s.unavailable_replicas} unavailable",
    )
    strategy = d.spec.strategy.type or "RollingUpdate"
    sheet.field("StrategyType", strategy)
    sheet.field("MinReadySeconds", d.spec.min_ready_seconds)
    if strategy == "RollingUpdate":
        rolling = d.spec.strategy.rolling_update
        unavailable = sections.int_or_percent(rolling.max_unavailable, "25%")
        surge = sections.int_or_percent(rolling.max_surge, "25%")
        sheet.field("RollingUpdateStrategy", f"{unavailable} max unavailable, {surge} max surge")
    if d.spec.rollback_on_failure:
        sheet.field("RollbackOnFailure", "true")
    _template(sheet, d.spec.template)
    sections.condition_table(sheet, d.status.conditions, with_reason=True)
    try:
        listed = await client.list(Kind.REPLICASET, namespace=d.metadata.namespace)
    except ClientError:
        return
    owned = [
        rs
        for rs in listed.items
        if isinstance(rs, o.ReplicaSet)
        and any(ref.name == d.metadata.name for ref in rs.metadata.owner_references)
    ]
    owned.sort(key=lambda rs: int(rs.metadata.annotations.get(REVISION_ANNOTATION, "0") or 0))
    new = owned[-1] if owned else None
    old = [rs for rs in owned[:-1] if rs.status.replicas or rs.spec.replicas]
    sheet.field("OldReplicaSets", ", ".join(_rs_line(rs) for rs in old) or NONE)
    sheet.field("NewReplicaSet", _rs_line(new) if new is not None else NONE)


def _rs_line(rs: o.ReplicaSet) -> str:
    desired = rs.spec.replicas if rs.spec.HasField("replicas") else 1
    return f"{rs.metadata.name} ({rs.status.replicas}/{desired} replicas created)"


def replicaset(sheet: Sheet, rs: o.ReplicaSet) -> None:
    sections.metadata(sheet, rs.metadata)
    sheet.field("Selector", tables.selector_text(rs.spec.selector.match_labels))
    owner = next((r for r in rs.metadata.owner_references if r.controller), None)
    sheet.field("Controlled By", f"{owner.kind}/{owner.name}" if owner else NONE)
    desired = rs.spec.replicas if rs.spec.HasField("replicas") else 1
    sheet.field("Replicas", f"{rs.status.replicas} current / {desired} desired")
    sheet.field(
        "Ready", f"{rs.status.ready_replicas} ready / {rs.status.available_replicas} available"
    )
    _template(sheet, rs.spec.template)
    sections.condition_table(sheet, rs.status.conditions, with_reason=True)


def _template(sheet: Sheet, template: o.PodTemplateSpec) -> None:
    sheet.heading("Pod Template:")
    sheet.field("Labels", mapping(template.metadata.labels), level=1)
    if template.spec.init_containers:
        sheet.heading("Init Containers:", level=1)
        for container in template.spec.init_containers:
            _container(sheet, container, None)
    sheet.heading("Containers:", level=1)
    for container in template.spec.containers:
        _container(sheet, container, None)
    podconfig.volumes(sheet, template.spec, level=1)
    sheet.field("Node-Selectors", mapping(template.spec.node_selector), level=1)
    sheet.field("Restart Policy", template.spec.restart_policy or "Always", level=1)


def _container(sheet: Sheet, c: o.Container, status: o.ContainerStatus | None) -> None:
    sheet.heading(f" {c.name}:", level=1)
    if status is not None:
        sheet.field("Container ID", status.container_id, level=2)
    sheet.field("Image", c.image, level=2)
    if status is not None:
        sheet.field("Image ID", status.image_id, level=2)
    ports = [f"{p.container_port}/{p.protocol or 'TCP'}" for p in c.ports]
    host_ports = [f"{p.host_port}/{p.protocol or 'TCP'}" for p in c.ports]
    sheet.field("Port" if len(ports) <= 1 else "Ports", ", ".join(ports), level=2)
    sheet.field("Host Port" if len(ports) <= 1 else "Host Ports", ", ".join(host_ports), level=2)
    if c.command:
        sheet.field("Command", "\n".join(c.command), level=2)
    if c.args:
        sheet.field("Args", "\n".join(c.args), level=2)
    if status is not None:
        _state(sheet, "State", status.state)
        if _any_state(status.last_state):
            _state(sheet, "Last State", status.last_state)
        sheet.field("Ready", str(status.ready), level=2)
        sheet.field("Restart Count", status.restart_count, level=2)
    for title, values in (("Limits", c.resources.limits), ("Requests", c.resources.requests)):
        if values:
            sheet.heading(f"{title}:", level=2)
            for key, value in sorted(values.items()):
                sheet.field(key, value, level=3)
    for title, probe_field in (
        ("Liveness", "liveness_probe"),
        ("Readiness", "readiness_probe"),
        ("Startup", "startup_probe"),
    ):
        if c.HasField(probe_field):
            sheet.field(title, probe_text(getattr(c, probe_field)), level=2)
    if c.env_from:
        sheet.field("Environment Variables from", podconfig.env_from(c), level=2)
    sheet.field("Environment", podconfig.environment(c), level=2)
    sheet.field("Mounts", podconfig.mounts(c), level=2)


def _any_state(state: o.ContainerState) -> bool:
    return any(state.HasField(f) for f in ("waiting", "running", "terminated"))


def _state(sheet: Sheet, title: str, state: o.ContainerState) -> None:
    if state.HasField("running"):
        sheet.field(title, "Running", level=2)
        sheet.field("Started", timestamp(state.running.started_at), level=3)
    elif state.HasField("waiting"):
        sheet.field(title, "Waiting", level=2)
        sheet.field("Reason", state.waiting.reason, level=3)
        if state.waiting.message:
            sheet.field("Message", state.waiting.message, level=3)
    elif state.HasField("terminated"):
        t = state.terminated
        sheet.field(title, "Terminated", level=2)
        sheet.field("Reason", t.reason, level=3)
        if t.message:
            sheet.field("Message", t.message, level=3)
        sheet.field("Exit Code", t.exit_code, level=3)
        if t.signal:
            sheet.field("Signal", t.signal, level=3)
        sheet.field("Started", timestamp(t.started_at), level=3)
        sheet.field("Finished", timestamp(t.finished_at), level=3)
    else:
        sheet.field(title, "Waiting", level=2)


def probe_text(probe: o.Probe) -> str:
    """kubectl's one-line probe summary: `http-get http://:8080/ delay=0s timeout=1s …`."""
    if probe.HasField("http_get"):
        h = probe.http_get
        port = sections.int_or_percent(h.port, "")
        action = f"http-get {(h.scheme or 'HTTP').lower()}://{h.host}:{port}{h.path or '/'}"
    elif probe.HasField("tcp_socket"):
        port = sections.int_or_percent(probe.tcp_socket.port, "")
        action = f"tcp-socket {probe.tcp_socket.host}:{port}"
    elif probe.HasField("exec"):
        action = f"exec [{' '.join(probe.exec.command)}]"
    else:
        action = "unknown"
    return (
        f"{action} delay={probe.initial_delay_seconds}s timeout={probe.timeout_seconds or 1}s "
        f"period={probe.period_seconds or 10}s #success={probe.success_threshold or 1} "
        f"#failure={probe.failure_threshold or 3}"
    )


def pod(sheet: Sheet, pod: o.Pod) -> None:
    sheet.field("Name", pod.metadata.name)
    sheet.field("Namespace", pod.metadata.namespace)
    node = pod.spec.node_name
    podconfig.service_account(sheet, pod.spec)
    sheet.field("Node", f"{node}/{pod.status.host_ip}" if node and pod.status.host_ip else node)
    sheet.field("Start Time", timestamp(pod.status.start_time))
    sheet.field("Labels", mapping(pod.metadata.labels))
    sheet.field("Annotations", mapping(pod.metadata.annotations, separator=": "))
    status = pod.status.phase or "Pending"
    if pod.metadata.HasField("deletion_timestamp"):
        status = "Terminating"
    sheet.field("Status", status)
    if pod.status.reason:
        sheet.field("Reason", pod.status.reason)
    if pod.status.message:
        sheet.field("Message", pod.status.message)
    sheet.field("IP", pod.status.pod_ip)
    owner = next((r for r in pod.metadata.owner_references if r.controller), None)
    sheet.field("Controlled By", f"{owner.kind}/{owner.name}" if owner else NONE)
    if pod.spec.init_containers:
        sheet.heading("Init Containers:")
        inits = {s.name: s for s in pod.status.init_container_statuses}
        for container in pod.spec.init_containers:
            _container(sheet, container, inits.get(container.name, o.ContainerStatus()))
    sheet.heading("Containers:")
    statuses = {s.name: s for s in pod.status.container_statuses}
    for container in pod.spec.containers:
        _container(sheet, container, statuses.get(container.name, o.ContainerStatus()))
    _pod_conditions(sheet, pod.status.conditions)
    podconfig.volumes(sheet, pod.spec)
    sheet.field("QoS Class", pod.status.qos_class)
    sheet.field("Node-Selectors", mapping(pod.spec.node_selector))
    podconfig.scheduling(sheet, pod.spec)


def _pod_conditions(sheet: Sheet, conditions: Sequence[o.Condition]) -> None:
    """kubectl's Type/Status table, with Reason and Message when a condition says why."""
    if not any(c.reason or c.message for c in conditions):
        sections.condition_table(sheet, conditions, with_reason=False)
        return
    sheet.heading("Conditions:")
    sheet.table(
        ("Type", "Status", "Reason", "Message"),
        [(c.type, c.status, c.reason, " ".join(c.message.split("\n"))) for c in conditions],
    )
