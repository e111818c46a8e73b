"""Nodes as kubectl describes them: conditions, addresses, capacity, system info, and the
pods running there with the share of the node's allocatable CPU and memory they ask for.

Invariant: only non-terminated pods count; a quantity that cannot be parsed counts as 0.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from pilothouse import quantity
from pilothouse.cli import tables
from pilothouse.cli.sheet import NONE, Sheet, mapping, timestamp
from pilothouse.client import Client, ClientError
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o


async def node(sheet: Sheet, client: Client, node: o.Node, *, now: datetime) -> None:
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
    usage = await _usage(client, node.metadata.name)
    _node_pods(sheet, node, pods, now=now, usage=usage)


async def _usage(client: Client, node: str) -> dict[tuple[str, str], tuple[int, int]]:
    """(namespace, pod) -> (CPU millicores, memory bytes) the agents measured last; empty when
    nothing could be read (the page shows <unknown>)."""
    from pilothouse.v1 import controlplane_pb2 as api
    from pilothouse.v1 import controlplane_pb2_grpc as api_grpc

    try:
        with client.errors(Kind.NODE, node):
            answer = await client.service(api_grpc.ResourceUsageStub).TopPods(
                api.TopPodsRequest(), timeout=client.timeout
            )
    except ClientError:
        return {}
    return {
        (p.namespace, p.name): (
            round(sum(c.cpu_nanocores for c in p.containers) / 1e6),
            sum(c.memory_working_set_bytes for c in p.containers),
        )
        for p in answer.pods
    }


def _node_pods(
    sheet: Sheet,
    node: o.Node,
    pods: list[o.Pod],
    *,
    now: datetime,
    usage: dict[tuple[str, str], tuple[int, int]] | None = None,
) -> None:
    usage = usage or {}
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
        used = usage.get((pod.metadata.namespace, pod.metadata.name))
        rows.append(
            (
                pod.metadata.namespace,
                pod.metadata.name,
                share(cr, cpu_total, quantity.format_cpu),
                share(cl, cpu_total, quantity.format_cpu),
                share(mr, mem_total, quantity.human_memory),
                share(ml, mem_total, quantity.human_memory),
                share(used[0], cpu_total, quantity.format_cpu) if used else "<unknown>",
                share(used[1], mem_total, quantity.human_memory) if used else "<unknown>",
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
                "CPU Usage",
                "Memory Usage",
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
