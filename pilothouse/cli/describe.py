"""`pilothouse describe KIND NAME`: one object as a readable multi-section page, with its events.

Invariants: the sections and their order follow kubectl describe for the kind; the Events
section lists the events whose involvedObject is this object (by kind and name, and uid when
both carry one), oldest first by last timestamp; a pod's conditions show why they are not
True (reason and message, e.g. "containers with unready status: [app]"). What cannot be
read (events, replica sets, pods of a node) is left out rather than failing the page.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from datetime import datetime

from google.protobuf import struct_pb2
from google.protobuf.message import Message

from pilothouse import kinds, quantity
from pilothouse.cli import resources, tables
from pilothouse.cli.context import Context
from pilothouse.cli.sheet import NONE, Sheet, mapping, timestamp
from pilothouse.client import Client, ClientError
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "describe",
        help="show the details of an object, with its events",
        description="Show an object's details and events: `describe KIND NAME`.",
    )
    parser.add_argument(
        "resources", nargs="+", metavar="RESOURCE", help="KIND [NAME...] or KIND/NAME..."
    )
    parser.add_argument("-n", "--namespace", default=None)
    parser.add_argument("-l", "--selector", default="")


async def run(args: argparse.Namespace, ctx: Context) -> int:
    targets = resources.parse_targets(args.resources, verb="describe")
    wanted = resources.selector(args.selector)
    namespace = ctx.namespace(args.namespace)
    pages: list[str] = []
    async with ctx.connect() as client:
        for target in targets:
            if target.names:
                objects = [
                    await client.get(target.kind, name, namespace=namespace)
                    for name in target.names
                ]
            else:
                listed = await client.list(target.kind, namespace=namespace)
                objects = [m for m in listed.items if resources.matches(m, wanted)]
            for obj in objects:
                pages.append(await page(client, obj, now=ctx.now()))
    if not pages:
        ctx.warn(f"No resources found in {namespace} namespace.")
    ctx.print("\n\n".join(pages))
    return 0


async def page(client: Client, obj: Message, *, now: datetime) -> str:
    """The describe text of one object."""
    sheet = Sheet()
    if isinstance(obj, o.Deployment):
        await _deployment(sheet, client, obj)
    elif isinstance(obj, o.ReplicaSet):
        _replicaset(sheet, obj)
    elif isinstance(obj, o.Pod):
        _pod(sheet, obj)
    elif isinstance(obj, o.Node):
        await _node(sheet, client, obj, now=now)
    elif isinstance(obj, o.Event):
        _event(sheet, obj)
    if not isinstance(obj, o.Event):
        _events(sheet, await _events_of(client, obj), now=now)
    return sheet.render()


def _meta(sheet: Sheet, meta: o.ObjectMeta, *, namespaced: bool = True) -> None:
    sheet.field("Name", meta.name)
    if namespaced:
        sheet.field("Namespace", meta.namespace)
    sheet.field("CreationTimestamp", timestamp(meta.creation_timestamp))
    sheet.field("Labels", mapping(meta.labels))
    sheet.field("Annotations", mapping(meta.annotations, separator=": "))


def _int_or_percent(value: struct_pb2.Value, default: str) -> str:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return str(int(value.number_value))
    if kind == "string_value":
        return value.string_value
    return default


async def _deployment(sheet: Sheet, client: Client, d: o.Deployment) -> None:
    _meta(sheet, d.metadata)
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
        unavailable = _int_or_percent(rolling.max_unavailable, "25%")
        surge = _int_or_percent(rolling.max_surge, "25%")
        sheet.field("RollingUpdateStrategy", f"{unavailable} max unavailable, {surge} max surge")
    if d.spec.rollback_on_failure:
        sheet.field("RollbackOnFailure", "true")
    _template(sheet, d.spec.template)
    _conditions(sheet, d.status.conditions, with_reason=True)
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


def _replicaset(sheet: Sheet, rs: o.ReplicaSet) -> None:
    _meta(sheet, rs.metadata)
    sheet.field("Selector", tables.selector_text(rs.spec.selector.match_labels))
    owner = next((r for r in rs.metadata.owner_references if r.controller), None)
    sheet.field("Controlled By", f"{owner.kind}/{owner.name}" if owner else NONE)
    desired = rs.spec.replicas if rs.spec.HasField("replicas") else 1
    sheet.field("Replicas", f"{rs.status.replicas} current / {desired} desired")
    sheet.field(
        "Ready", f"{rs.status.ready_replicas} ready / {rs.status.available_replicas} available"
    )
    _template(sheet, rs.spec.template)
    _conditions(sheet, rs.status.conditions, with_reason=True)


def _template(sheet: Sheet, template: o.PodTemplateSpec) -> None:
    sheet.heading("Pod Template:")
    sheet.field("Labels", mapping(template.metadata.labels), level=1)
    sheet.heading("Containers:", level=1)
    for container in template.spec.containers:
        _container(sheet, container, None)
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
    sheet.field("Environment", "\n".join(f"{e.name}: {e.value}" for e in c.env) or NONE, level=2)


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
        port = _int_or_percent(h.port, "")
        action = f"http-get {(h.scheme or 'HTTP').lower()}://{h.host}:{port}{h.path or '/'}"
    elif probe.HasField("tcp_socket"):
        action = f"tcp-socket {probe.tcp_socket.host}:{_int_or_percent(probe.tcp_socket.port, '')}"
    elif probe.HasField("exec"):
        action = f"exec [{' '.join(probe.exec.command)}]"
    else:
        action = "unknown"
    return (
        f"{action} delay={probe.initial_delay_seconds}s timeout={probe.timeout_seconds or 1}s "
        f"period={probe.period_seconds or 10}s #success={probe.success_threshold or 1} "
        f"#failure={probe.failure_threshold or 3}"
    )


def _pod(sheet: Sheet, pod: o.Pod) -> None:
    sheet.field("Name", pod.metadata.name)
    sheet.field("Namespace", pod.metadata.namespace)
    node = pod.spec.node_name
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
    sheet.heading("Containers:")
    statuses = {s.name: s for s in pod.status.container_statuses}
    for container in pod.spec.containers:
        _container(sheet, container, statuses.get(container.name, o.ContainerStatus()))
    _pod_conditions(sheet, pod.status.conditions)
    sheet.field("QoS Class", pod.status.qos_class)
    sheet.field("Node-Selectors", mapping(pod.spec.node_selector))


def _conditions(sheet: Sheet, conditions: Sequence[o.Condition], *, with_reason: bool) -> None:
    if not conditions:
        sheet.field("Conditions", NONE)
        return
    sheet.heading("Conditions:")
    headers = ("Type", "Status", "Reason") if with_reason else ("Type", "Status")
    rows = [
        (c.type, c.status, c.reason or NONE) if with_reason else (c.type, c.status)
        for c in conditions
    ]
    sheet.table(headers, rows)


def _pod_conditions(sheet: Sheet, conditions: Sequence[o.Condition]) -> None:
    """kubectl's Type/Status table, with Reason and Message when a condition says why."""
    if not any(c.reason or c.message for c in conditions):
        _conditions(sheet, conditions, with_reason=False)
        return
    sheet.heading("Conditions:")
    sheet.table(
        ("Type", "Status", "Reason", "Message"),
        [(c.type, c.status, c.reason, " ".join(c.message.split("\n"))) for c in conditions],
    )


async def _node(sheet: Sheet, client: Client, node: o.Node, *, now: datetime) -> None:
    sheet.field("Name", node.metadata.name)
    sheet.field("Roles", tables.node_roles(node))
    sheet.field("Labels", mapping(node.metadata.labels))
    sheet.field("Annotations", mapping(node.metadata.annotations, separator=": "))
    sheet.field("CreationTimestamp", timestamp(node.metadata.creation_timestamp))
    taints = [
        f"{t.key}={t.value}:{t.effect}" if t.value else f"{t.key}:{t.effect}"
        for t in node.spec.taints
    ]
    sheet.field("Taints", "\n".join(taints) or NONE)
    sheet.field("Unschedulable", str(node.spec.unschedulable).lower())
    if node.status.conditions:
        sheet.heading("Conditions:")
        sheet.table(
            ("Type", "Status", "LastHeartbeatTime", "LastTransitionTime", "Reason", "Message"),
            [
                (
                    c.type,
                    c.status,
                    timestamp(c.last_heartbeat_time),
                    timestamp(c.last_transition_time),
                    c.reason,
                    c.message,
                )
                for c in node.status.conditions
            ],
        )
    else:
        sheet.field("Conditions", NONE)
    sheet.heading("Addresses:")
    for address in node.status.addresses:
        sheet.field(address.type, address.address, level=1)
    for title, values in (
        ("Capacity", node.status.capacity),
        ("Allocatable", node.status.allocatable),
    ):
        sheet.heading(f"{title}:")
        for key, value in sorted(values.items()):
            sheet.field(key, value, level=1)
    info = node.status.node_info
    sheet.heading("System Info:")
    for key, value in (
        ("Machine ID", info.machine_id),
        ("Kernel Version", info.kernel_version),
        ("OS Image", info.os_image),
        ("Operating System", info.operating_system),
        ("Architecture", info.architecture),
        ("Container Runtime Version", info.container_runtime_version),
        ("Kubelet Version", info.kubelet_version),
    ):
        sheet.field(key, value, level=1)
    sheet.field("PodCIDR", node.spec.pod_cidr)
    try:
        listed = await client.list(Kind.POD)
    except ClientError:
        return
    pods = [
        p
        for p in listed.items
        if isinstance(p, o.Pod)
        and p.spec.node_name == node.metadata.name
        and p.status.phase not in ("Succeeded", "Failed")
    ]
    _node_pods(sheet, node, pods, now=now)


def _node_pods(sheet: Sheet, node: o.Node, pods: list[o.Pod], *, now: datetime) -> None:
    sheet.field("Non-terminated Pods", f"({len(pods)} in total)")
    allocatable = node.status.allocatable or node.status.capacity
    cpu_total = _parsed(quantity.parse_cpu, allocatable.get("cpu", "0"))
    mem_total = _parsed(quantity.parse_memory, allocatable.get("memory", "0"))

    def sums(pod: o.Pod, bucket: str, resource: str, parse: Callable[[str], int]) -> int:
        return sum(
            _parsed(parse, getattr(c.resources, bucket).get(resource, "0"))
            for c in pod.spec.containers
        )

    def share(value: int, total: int, fmt: Callable[[int], str]) -> str:
        return f"{fmt(value)} ({value * 100 // total}%)" if total else fmt(value)

    rows = []
    totals = {"cr": 0, "cl": 0, "mr": 0, "ml": 0}
    for pod in sorted(pods, key=lambda p: (p.metadata.namespace, p.metadata.name)):
        cr = sums(pod, "requests", "cpu", quantity.parse_cpu)
        cl = sums(pod, "limits", "cpu", quantity.parse_cpu)
        mr = sums(pod, "requests", "memory", quantity.parse_memory)
        ml = sums(pod, "limits", "memory", quantity.parse_memory)
        for key, value in (("cr", cr), ("cl", cl), ("mr", mr), ("ml", ml)):
            totals[key] += value
        rows.append(
            (
                pod.metadata.namespace,
                pod.metadata.name,
                share(cr, cpu_total, quantity.format_cpu),
                share(cl, cpu_total, quantity.format_cpu),
                share(mr, mem_total, quantity.human_memory),
                share(ml, mem_total, quantity.human_memory),
                tables.age(pod.metadata.creation_timestamp, now),
            )
        )
    if rows:
        sheet.table(
            (
                "Namespace",
                "Name",
                "CPU Requests",
                "CPU Limits",
                "Memory Requests",
                "Memory Limits",
                "Age",
            ),
            rows,
        )
    sheet.heading("Allocated resources:")
    sheet.heading("(Total limits may be over 100 percent, i.e., overcommitted.)", level=1)
    sheet.table(
        ("Resource", "Requests", "Limits"),
        [
            (
                "cpu",
                share(totals["cr"], cpu_total, quantity.format_cpu),
                share(totals["cl"], cpu_total, quantity.format_cpu),
            ),
            (
                "memory",
                share(totals["mr"], mem_total, quantity.human_memory),
                share(totals["ml"], mem_total, quantity.human_memory),
            ),
        ],
    )


def _parsed(parse: Callable[[str], int], value: str) -> int:
    try:
        return int(parse(value))
    except ValueError:
        return 0


def _event(sheet: Sheet, e: o.Event) -> None:
    sheet.field("Name", e.metadata.name)
    sheet.field("Namespace", e.metadata.namespace)
    ref = e.involved_object
    sheet.field("Involved Object", f"{ref.kind}/{ref.name}")
    sheet.field("Type", e.type or "Normal")
    sheet.field("Reason", e.reason)
    sheet.field("Message", e.message)
    sheet.field("Source", e.source.component)
    sheet.field("Count", e.count)
    sheet.field("First Timestamp", timestamp(e.first_timestamp))
    sheet.field("Last Timestamp", timestamp(e.last_timestamp))


async def _events_of(client: Client, obj: Message) -> list[o.Event]:
    """The events about `obj`, oldest first; none when they cannot be read."""
    kind = kinds.of_message(obj)
    meta = obj.metadata  # type: ignore[attr-defined]
    try:
        listed = await client.list(
            Kind.EVENT, namespace=meta.namespace if kind.info.namespaced else ""
        )
    except ClientError:
        return []
    found = []
    for event in listed.items:
        if not isinstance(event, o.Event):
            continue
        ref = event.involved_object
        same_uid = not (ref.uid and meta.uid) or ref.uid == meta.uid
        if ref.kind == kind.info.kind and ref.name == meta.name and same_uid:
            found.append(event)
    found.sort(key=tables.event_time)
    return found


def _events(sheet: Sheet, events: list[o.Event], *, now: datetime) -> None:
    if not events:
        sheet.field("Events", NONE)
        return
    sheet.heading("Events:")
    rows = []
    for e in events:
        last = e.last_timestamp if e.HasField("last_timestamp") else e.metadata.creation_timestamp
        when = tables.age(last, now)
        if e.count > 1 and e.HasField("first_timestamp"):
            when = f"{when} (x{e.count} over {tables.age(e.first_timestamp, now)})"
        message = " ".join(e.message.split("\n")).strip()  # exec probe output may be lines
        rows.append((e.type or "Normal", e.reason, when, e.source.component or NONE, message))
    sheet.table(("Type", "Reason", "Age", "From", "Message"), rows)
