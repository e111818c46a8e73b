"""The downward API: a pod's own fields and its containers' resources, as text (pure).

What `fieldRef` and `resourceFieldRef` read, for env values and downwardAPI volume files:
- fields: metadata.name, .namespace, .uid, .labels['k'], .annotations['k'], the whole
  .labels and .annotations (volumes only: `k="v"` lines, sorted, as the kubelet writes them),
  spec.nodeName, spec.serviceAccountName, status.podIP(s), status.hostIP(s);
- resources: limits.cpu/.memory/.ephemeral-storage and the same requests, in units of the
  divisor (default 1), rounded up; a limit the container does not set reads as the node's
  allocatable amount, as in Kubernetes.

Invariant: a field or resource it does not know raises `ValueError` naming it (validation
refuses those before a pod is stored; an old object may still hold one).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from decimal import Decimal
from functools import cache

from pilothouse import quantity
from pilothouse.v1 import objects_pb2


@dataclass(frozen=True, slots=True)
class PodPlace:
    """What the pod's fields say about where it runs (known once its sandbox exists)."""

    node_name: str = ""
    pod_ip: str = ""
    host_ip: str = ""


def field_value(pod: objects_pb2.Pod, path: str, place: PodPlace) -> str:
    meta = pod.metadata
    for prefix, values in (
        ("metadata.labels", meta.labels),
        ("metadata.annotations", meta.annotations),
    ):
        if path == prefix:
            return "".join(f"{k}={json.dumps(values[k])}\n" for k in sorted(values))
        if path.startswith(f"{prefix}['") and path.endswith("']"):
            return values.get(path[len(prefix) + 2 : -2], "")
    simple = {
        "metadata.name": meta.name,
        "metadata.namespace": meta.namespace or "default",
        "metadata.uid": meta.uid,
        "spec.nodeName": pod.spec.node_name or place.node_name,
        "spec.serviceAccountName": pod.spec.service_account_name,
        "status.podIP": place.pod_ip,
        "status.podIPs": place.pod_ip,
        "status.hostIP": place.host_ip,
        "status.hostIPs": place.host_ip,
    }
    if path not in simple:
        raise ValueError(f'unsupported fieldPath "{path}"')
    return simple[path]


def resource_value(
    pod: objects_pb2.Pod, selector: objects_pb2.ResourceFieldSelector, *, default_container: str
) -> str:
    """The resource `selector` names, of its container (else `default_container`)."""
    name = selector.container_name or default_container
    container = next(
        (c for c in (*pod.spec.init_containers, *pod.spec.containers) if c.name == name), None
    )
    if container is None:
        raise ValueError(f'resourceFieldRef names container "{name}", which the pod has not')
    kind, _, resource = selector.resource.partition(".")
    if kind not in ("limits", "requests") or resource not in ("cpu", "memory", "ephemeral-storage"):
        raise ValueError(f'unsupported resource "{selector.resource}"')
    amounts = container.resources.limits if kind == "limits" else container.resources.requests
    if resource in amounts:
        amount = quantity.parse(amounts[resource])
    elif kind == "limits":
        amount = node_allocatable()[resource]
    else:
        amount = Decimal(0)
    divisor = quantity.parse(selector.divisor) if selector.divisor else Decimal(1)
    if divisor <= 0:
        raise ValueError(f'resourceFieldRef divisor "{selector.divisor}" must be positive')
    return str(math.ceil(amount / divisor))


@cache
def node_allocatable() -> dict[str, Decimal]:
    """The node's cpus, memory and root disk, what an unset limit reads as."""
    memory = 0
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    try:
        disk = os.statvfs("/")
        storage = disk.f_blocks * disk.f_frsize
    except OSError:
        storage = 0
    return {
        "cpu": Decimal(os.cpu_count() or 1),
        "memory": Decimal(memory),
        "ephemeral-storage": Decimal(storage),
    }
