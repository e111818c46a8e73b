"""Filters: may this pod run on this node? Each says no with a `Rejection`, or yes with None.

Invariants: a filter looks only at the node info and the pod (pure, no I/O); a rejection names
its `Reason`s, whose values are Kubernetes' own words for the histogram in the pod's
"0/3 nodes are available: …" message, and carries a sentence about this node for a person.
`checker(pod)` runs them in Kubernetes' order (cheap, node-level checks before resource
arithmetic) and the first that rejects a node decides its reasons, as in Kubernetes. It is
built once per pod and skips what cannot reject that pod (a node selector it lacks, host ports
it does not ask for); what a node's own state decides (readiness, cordon, pressure, taints) is
found once per node version and kept in its info (`node_checks`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from controlplane.objects.taints import untolerated
from controlplane.scheduler.snapshot import Demand, NodeInfo, Pod, demand_of
from pilothouse.quantity import format_cpu, format_memory


class Reason(enum.Enum):
    NODE_NOT_READY = "node(s) were not ready"
    UNSCHEDULABLE = "node(s) were unschedulable"
    UNTOLERATED_TAINT = "node(s) had untolerated taint"
    NODE_SELECTOR_MISMATCH = "node(s) didn't match Pod's node affinity/selector"
    HOST_PORT_CONFLICT = "node(s) didn't have free ports for the requested pod ports"
    TOO_MANY_PODS = "Too many pods"
    INSUFFICIENT_CPU = "Insufficient cpu"
    INSUFFICIENT_MEMORY = "Insufficient memory"
    VOLUME_NODE_AFFINITY = "node(s) had volume node affinity conflict"
    POD_AFFINITY = "node(s) didn't match pod affinity rules"
    POD_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
    TOPOLOGY_SPREAD = "node(s) didn't match pod topology spread constraints"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one node cannot take the pod."""

    reasons: tuple[Reason, ...]
    message: str
    taint: str = ""  # "{key: value}" for UNTOLERATED_TAINT, as Kubernetes prints it

    def summaries(self) -> tuple[str, ...]:
        """The histogram entries this node contributes ("Insufficient memory", …)."""
        return tuple(
            f"{reason.value} {self.taint}" if reason is Reason.UNTOLERATED_TAINT else reason.value
            for reason in self.reasons
        )


Filter = Callable[[NodeInfo, Pod, Demand], Rejection | None]


def node_ready(info: NodeInfo, pod: Pod, demand: Demand) -> Rejection | None:
    for condition in info.node.status.conditions:
        if condition.type == "Ready":
            if condition.status == "True":
                return None
            why = condition.message or condition.reason or f"Ready is {condition.status}"
            return Rejection((Reason.NODE_NOT_READY,), f'node "{info.name}" is not ready: {why}')
    return Rejection((Reason.NODE_NOT_READY,), f'node "{info.name}" has not reported Ready yet')


def schedulable(info: NodeInfo, pod: Pod, demand: Demand) -> Rejection | None:
    if info.node.spec.unschedulable:
        return Rejection(
            (Reason.UNSCHEDULABLE,), f'node "{info.name}" is cordoned (spec.unschedulable)'
        )
    return None


def taint_toleration(info: NodeInfo, pod: Pod, demand: Demand) -> Rejection | None:
    """Every NoSchedule or NoExecute taint of the node must be tolerated by the pod."""
    taint = untolerated(info.node.spec.taints, pod.spec.tolerations)
    if taint is not None:
        return Rejection(
            (Reason.UNTOLERATED_TAINT,),
            f'node "{info.name}" has taint {taint.key}={taint.value}:{taint.effect}',
            taint=f"{{{taint.key}: {taint.value}}}",
        )
    return None


def node_pressure(info: NodeInfo, pod: Pod, demand: Demand) -> Rejection | None:
    """A node with DiskPressure carries Kubernetes' node.kubernetes.io/disk-pressure:NoSchedule
    taint (TaintNodesByCondition): new pods go elsewhere while it evicts."""
    for condition in info.node.status.conditions:
        if condition.type == "DiskPressure" and condition.status == "True":
            return Rejection(
                (Reason.UNTOLERATED_TAINT,),
                f'node "{info.name}" is low on disk (DiskPressure): '
                "taint node.kubernetes.io/disk-pressure:NoSchedule",
                taint="{node.kubernetes.io/disk-pressure: }",
            )
    return None


def node_selector(info: NodeInfo, pod: Pod, demand: Demand) -> Rejection | None:
    labels = info.node.metadata.labels
    missing = [
        f"{key}={value}"
        for key, value in sorted(pod.spec.node_selector.items())
        if labels.get(key) != value
    ]
    if missing:
        return Rejection(
            (Reason.NODE_SELECTOR_MISMATCH,),
            f'node "{info.name}" lacks the labels {", ".join(missing)}',
        )
    return None


def host_ports(info: NodeInfo, pod: Pod, demand: Demand) -> Rejection | None:
    # The node agent's own port (as its Node reports it) is taken on every address: a pod
    # there would cut the control plane off from the node. The API refuses such a hostPort
    # already; this covers a node that registered after the pod was applied.
    agent_port = info.node.status.daemon_endpoints.kubelet_endpoint.port
    for wanted in demand.host_ports:
        if agent_port and wanted.port == agent_port and wanted.protocol == "TCP":
            return Rejection(
                (Reason.HOST_PORT_CONFLICT,),
                f'node "{info.name}" serves its agent on host port {agent_port}/TCP',
            )
    for wanted in demand.host_ports:
        for used in info.requested.host_ports:
            if wanted.conflicts(used):
                return Rejection(
                    (Reason.HOST_PORT_CONFLICT,),
                    f'node "{info.name}" already has host port {wanted.port}/{wanted.protocol} '
                    "in use",
                )
    return None


def resource_fit(info: NodeInfo, pod: Pod, demand: Demand) -> Rejection | None:
    reasons: list[Reason] = []
    details: list[str] = []
    if len(info.pods) + 1 > info.allocatable_pods:
        reasons.append(Reason.TOO_MANY_PODS)
        details.append(f"{len(info.pods)} of {info.allocatable_pods} pods")
    free_cpu = info.allocatable_cpu - info.requested.cpu
    if demand.cpu > 0 and demand.cpu > free_cpu:
        reasons.append(Reason.INSUFFICIENT_CPU)
        details.append(f"cpu {format_cpu(max(free_cpu, 0))} free, {format_cpu(demand.cpu)} asked")
    free_memory = info.allocatable_memory - info.requested.memory
    if demand.memory > 0 and demand.memory > free_memory:
        reasons.append(Reason.INSUFFICIENT_MEMORY)
        details.append(
            f"memory {format_memory(max(free_memory, 0))} free, "
            f"{format_memory(demand.memory)} asked"
        )
    if reasons:
        return Rejection(tuple(reasons), f'node "{info.name}": {"; ".join(details)}')
    return None


@dataclass(frozen=True, slots=True)
class NodeChecks:
    """The filters' verdicts on a node alone (the same for every pod)."""

    unready: Rejection | None  # not Ready, or cordoned
    pressure: Rejection | None
    tainted: bool


def node_checks(info: NodeInfo) -> NodeChecks:
    """The node's `NodeChecks`, found once per node info (kept in it)."""
    checks = info.node_checks
    if not isinstance(checks, NodeChecks):
        none = Demand(0, 0)
        checks = NodeChecks(
            unready=node_ready(info, Pod(), none) or schedulable(info, Pod(), none),
            pressure=node_pressure(info, Pod(), none),
            tainted=bool(info.node.spec.taints),
        )
        object.__setattr__(info, "node_checks", checks)  # a cache: the node is unchanged
    return checks


Check = Callable[[NodeInfo], Rejection | None]


def checker(pod: Pod, demand: Demand | None = None) -> Check:
    """The filters for `pod`, in Kubernetes' order: NodeUnschedulable (and readiness),
    TaintToleration, disk pressure, NodeAffinity's node selector, NodePorts, NodeResourcesFit.
    Order matters only for which reason a node reports when several apply."""
    demand = demand if demand is not None else demand_of(pod)
    selector = bool(pod.spec.node_selector)
    ports = bool(demand.host_ports)
    cpu, memory = demand.cpu, demand.memory

    def check(info: NodeInfo) -> Rejection | None:
        node = info.node_checks or node_checks(info)
        if node.unready is not None:
            return node.unready
        if node.tainted and (rejection := taint_toleration(info, pod, demand)) is not None:
            return rejection
        if node.pressure is not None:
            return node.pressure
        if selector and (rejection := node_selector(info, pod, demand)) is not None:
            return rejection
        if ports and (rejection := host_ports(info, pod, demand)) is not None:
            return rejection
        if (
            len(info.pods) < info.allocatable_pods
            and (cpu <= 0 or cpu <= info.allocatable_cpu - info.requested.cpu)
            and (memory <= 0 or memory <= info.allocatable_memory - info.requested.memory)
        ):
            return None
        return resource_fit(info, pod, demand)

    return check


def first_rejection(info: NodeInfo, pod: Pod, demand: Demand | None = None) -> Rejection | None:
    return checker(pod, demand)(info)
