"""An immutable picture of the cluster as the scheduler sees it: nodes and the pods bound to each.

Vocabulary:
- demand: what a pod asks of a node (cpu millicores, memory bytes, host ports), from its
  containers' requests (a container with a limit and no request requests its limit).
- node info: one node plus the pods bound to it and what they have requested in total.

Invariants: a `Snapshot` and a `NodeInfo` never change after they are built (`with_pod`,
`without_pod`, `with_node` and `assume` return new ones), so a burst of placements sees its own
earlier choices and an incremental keeper (`cluster.ClusterView`) can hand out snapshots that
later events do not alter. A node info's sums are always those of its `pods`. Pods that have
finished (phase Succeeded or Failed) hold no resources. Nothing here reads the network.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from pilothouse.quantity import QuantityError, parse_cpu, parse_memory
from pilothouse.v1 import objects_pb2

Pod = objects_pb2.Pod
Node = objects_pb2.Node

_FINISHED = frozenset({"Succeeded", "Failed"})
_ANY_IP = "0.0.0.0"


@dataclass(frozen=True, slots=True)
class HostPort:
    ip: str
    protocol: str
    port: int

    def conflicts(self, other: HostPort) -> bool:
        if self.protocol != other.protocol or self.port != other.port:
            return False
        return self.ip == other.ip or _ANY_IP in (self.ip, other.ip)


@dataclass(frozen=True, slots=True)
class Demand:
    """What one pod asks of a node."""

    cpu: int  # millicores
    memory: int  # bytes
    host_ports: tuple[HostPort, ...] = ()


def _quantity(resources: objects_pb2.ResourceRequirements, name: str) -> str | None:
    if name in resources.requests:
        return resources.requests[name]
    return resources.limits.get(name)


def _requests(container: objects_pb2.Container) -> tuple[int, int]:
    cpu = memory = 0
    try:
        if (value := _quantity(container.resources, "cpu")) is not None:
            cpu = parse_cpu(value)
        if (value := _quantity(container.resources, "memory")) is not None:
            memory = parse_memory(value)
    except QuantityError:
        pass  # validated at apply time; an unparseable leftover asks for nothing
    return cpu, memory


def demand_of(pod: Pod) -> Demand:
    """The pod's effective requests, as Kubernetes computes them with init containers: the
    main containers and the sidecars together, or an init container (with the sidecars
    started before it) if that is more."""
    cpu = memory = 0
    ports: list[HostPort] = []
    side_cpu = side_memory = init_cpu = init_memory = 0
    for init in pod.spec.init_containers:
        c, m = _requests(init)
        if init.restart_policy == "Always":
            side_cpu, side_memory = side_cpu + c, side_memory + m
        else:
            init_cpu, init_memory = max(init_cpu, side_cpu + c), max(init_memory, side_memory + m)
    for container in pod.spec.containers:
        c, m = _requests(container)
        cpu, memory = cpu + c, memory + m
    for container in (*pod.spec.init_containers, *pod.spec.containers):
        for port in container.ports:
            if port.host_port > 0:
                ports.append(
                    HostPort(port.host_ip or _ANY_IP, port.protocol or "TCP", port.host_port)
                )
    cpu, memory = max(cpu + side_cpu, init_cpu), max(memory + side_memory, init_memory)
    return Demand(cpu=cpu, memory=memory, host_ports=tuple(ports))


def controller_uid(pod: Pod) -> str:
    """The uid of the pod's controlling owner (its ReplicaSet), or "" for a bare pod."""
    for ref in pod.metadata.owner_references:
        if ref.controller:
            return ref.uid
    return ""


def _allocatable(node: Node, name: str) -> int:
    value = node.status.allocatable.get(name) or node.status.capacity.get(name)
    if value is None:
        return 0
    try:
        return parse_cpu(value) if name == "cpu" else parse_memory(value)
    except QuantityError:
        return 0


# Kubernetes counts a pod that requests nothing as 100m cpu and 200 MiB when scoring
# (DefaultMilliCPURequest, DefaultMemoryRequest), so empty pods still spread by load.
DEFAULT_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024


def non_zero(demand: Demand) -> tuple[int, int]:
    return (demand.cpu or DEFAULT_CPU, demand.memory or DEFAULT_MEMORY)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node, the pods bound to it, and their sums (computed once, when built)."""

    node: Node
    name: str = ""  # the node's
    pods: tuple[Pod, ...] = ()
    requested: Demand = field(default_factory=lambda: Demand(0, 0))
    scoring_requested: tuple[int, int] = (0, 0)  # cpu, memory with non-zero defaults
    # controller uid -> pod count; a plain dict for speed, never changed once built
    owners: dict[str, int] = field(default_factory=dict)
    allocatable_cpu: int = 0
    allocatable_memory: int = 0
    allocatable_pods: int = 0
    # What the filters found of the node alone (readiness, cordon, pressure), kept while the
    # node is unchanged (`filters.node_rejections`); a cache, not part of the value.
    node_checks: object = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, node: Node, pods: Iterable[Pod] = ()) -> NodeInfo:
        info = cls(
            node=node,
            name=node.metadata.name,
            allocatable_cpu=_allocatable(node, "cpu"),
            allocatable_memory=_allocatable(node, "memory"),
            allocatable_pods=_allocatable(node, "pods"),
        )
        return info.with_pods(pods)

    def with_pods(self, pods: Iterable[Pod]) -> NodeInfo:
        added = tuple(pods)
        if not added:
            return self
        cpu, memory, ports = (
            self.requested.cpu,
            self.requested.memory,
            list(self.requested.host_ports),
        )
        score_cpu, score_memory = self.scoring_requested
        owners = dict(self.owners)
        for pod in added:
            demand = demand_of(pod)
            cpu += demand.cpu
            memory += demand.memory
            ports.extend(demand.host_ports)
            extra_cpu, extra_memory = non_zero(demand)
            score_cpu += extra_cpu
            score_memory += extra_memory
            owner = controller_uid(pod)
            if owner:
                owners[owner] = owners.get(owner, 0) + 1
        return NodeInfo(
            node=self.node,
            name=self.name,
            pods=self.pods + added,
            requested=Demand(cpu=cpu, memory=memory, host_ports=tuple(ports)),
            scoring_requested=(score_cpu, score_memory),
            owners=owners,
            allocatable_cpu=self.allocatable_cpu,
            allocatable_memory=self.allocatable_memory,
            allocatable_pods=self.allocatable_pods,
            node_checks=self.node_checks,
        )

    def with_pod(self, pod: Pod) -> NodeInfo:
        return self.with_pods((pod,))

    def without_pod(self, pod: Pod) -> NodeInfo:
        """This node info less `pod` (the very object `with_pod` was given): its sums
        subtracted, nothing recounted."""
        pods = tuple(p for p in self.pods if p is not pod)
        if len(pods) == len(self.pods):
            return self
        demand = demand_of(pod)
        ports = list(self.requested.host_ports)
        for port in demand.host_ports:
            ports.remove(port)
        extra_cpu, extra_memory = non_zero(demand)
        owners = dict(self.owners)
        owner = controller_uid(pod)
        if owner:
            owners[owner] -= 1
            if not owners[owner]:
                del owners[owner]
        return replace(
            self,
            pods=pods,
            requested=Demand(
                cpu=self.requested.cpu - demand.cpu,
                memory=self.requested.memory - demand.memory,
                host_ports=tuple(ports),
            ),
            scoring_requested=(
                self.scoring_requested[0] - extra_cpu,
                self.scoring_requested[1] - extra_memory,
            ),
            owners=owners,
        )

    def replacing(self, old: Pod, new: Pod) -> NodeInfo:
        """`old` (counted here) swapped for `new`, a version of it that asks the same: the
        sums stay, only the object held changes."""
        return replace(self, pods=tuple(new if p is old else p for p in self.pods))

    def with_node(self, node: Node) -> NodeInfo:
        """The same pods on a newer version of the node (allocatable read again)."""
        return replace(
            self,
            node=node,
            name=node.metadata.name,
            allocatable_cpu=_allocatable(node, "cpu"),
            allocatable_memory=_allocatable(node, "memory"),
            allocatable_pods=_allocatable(node, "pods"),
            node_checks=None,
        )

    def count_owned_by(self, uid: str) -> int:
        return self.owners.get(uid, 0)


def required_anti(pod: Pod) -> bool:
    return bool(
        pod.spec.affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution
    )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Nodes by name, each with its bound pods. Build with `Snapshot.build`."""

    nodes: Mapping[str, NodeInfo]
    # The bound pods with required pod anti-affinity, found once per snapshot (`anti_affine`).
    _anti: tuple[tuple[NodeInfo, Pod], ...] | None = field(default=None, compare=False, repr=False)

    def anti_affine(self) -> tuple[tuple[NodeInfo, Pod], ...]:
        """(node, pod) for every bound pod with a required pod anti-affinity term: what every
        node's check would otherwise find by walking every pod (nodes x pods per decision)."""
        if self._anti is None:
            found = tuple(
                (info, pod)
                for info in self.nodes.values()
                for pod in info.pods
                if required_anti(pod)
            )
            object.__setattr__(self, "_anti", found)  # a cache: the snapshot is unchanged
        return self._anti  # type: ignore[return-value]

    @classmethod
    def build(cls, nodes: Iterable[Node], pods: Iterable[Pod]) -> Snapshot:
        bound: dict[str, list[Pod]] = {}
        for pod in pods:
            if pod.spec.node_name and pod.status.phase not in _FINISHED:
                bound.setdefault(pod.spec.node_name, []).append(pod)
        infos = {
            node.metadata.name: NodeInfo.of(node, bound.get(node.metadata.name, ()))
            for node in nodes
        }
        return cls(nodes=MappingProxyType(infos))

    def assume(self, pod: Pod, node_name: str) -> Snapshot:
        """This snapshot with `pod` bound to `node_name` (a placement not yet written)."""
        infos = dict(self.nodes)
        infos[node_name] = infos[node_name].with_pod(pod)
        return Snapshot(nodes=MappingProxyType(infos))

    def __len__(self) -> int:
        return len(self.nodes)
