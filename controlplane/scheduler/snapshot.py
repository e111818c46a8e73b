"""An immutable picture of the cluster as the scheduler sees it: nodes and the pods bound to each.

Vocabulary:
- demand: what a pod asks of a node (cpu millicores, memory bytes, host ports), from its
  containers' requests (a container with a limit and no request requests its limit).
- node info: one node plus the pods bound to it and what they have requested in total.

Invariants: a `Snapshot` never changes after it is built; `assume` returns a new snapshot with
one more pod bound, so a burst of placements sees its own earlier choices. Pods that have
finished (phase Succeeded or Failed) hold no resources. Nothing here reads the network.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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


def demand_of(pod: Pod) -> Demand:
    cpu = memory = 0
    ports: list[HostPort] = []
    for container in pod.spec.containers:
        try:
            if (value := _quantity(container.resources, "cpu")) is not None:
                cpu += parse_cpu(value)
            if (value := _quantity(container.resources, "memory")) is not None:
                memory += parse_memory(value)
        except QuantityError:
            pass  # validated at apply time; an unparseable leftover asks for nothing
        for port in container.ports:
            if port.host_port > 0:
                ports.append(
                    HostPort(port.host_ip or _ANY_IP, port.protocol or "TCP", port.host_port)
                )
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


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node and the pods bound to it."""

    node: Node
    pods: tuple[Pod, ...] = ()
    requested: Demand = field(default_factory=lambda: Demand(0, 0))

    @property
    def name(self) -> str:
        return self.node.metadata.name

    @property
    def allocatable_cpu(self) -> int:
        return _allocatable(self.node, "cpu")

    @property
    def allocatable_memory(self) -> int:
        return _allocatable(self.node, "memory")

    @property
    def allocatable_pods(self) -> int:
        return _allocatable(self.node, "pods")

    def with_pod(self, pod: Pod) -> NodeInfo:
        extra = demand_of(pod)
        total = Demand(
            cpu=self.requested.cpu + extra.cpu,
            memory=self.requested.memory + extra.memory,
            host_ports=self.requested.host_ports + extra.host_ports,
        )
        return NodeInfo(node=self.node, pods=(*self.pods, pod), requested=total)

    def count_owned_by(self, uid: str) -> int:
        return sum(1 for pod in self.pods if controller_uid(pod) == uid)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Nodes by name, each with its bound pods. Build with `Snapshot.build`."""

    nodes: Mapping[str, NodeInfo]

    @classmethod
    def build(cls, nodes: Iterable[Node], pods: Iterable[Pod]) -> Snapshot:
        infos = {node.metadata.name: NodeInfo(node=node) for node in nodes}
        for pod in pods:
            info = infos.get(pod.spec.node_name)
            if info is None or pod.status.phase in _FINISHED:
                continue
            infos[info.name] = info.with_pod(pod)
        return cls(nodes=MappingProxyType(infos))

    def assume(self, pod: Pod, node_name: str) -> Snapshot:
        """This snapshot with `pod` bound to `node_name` (a placement not yet written)."""
        infos = dict(self.nodes)
        infos[node_name] = infos[node_name].with_pod(pod)
        return Snapshot(nodes=MappingProxyType(infos))

    def __len__(self) -> int:
        return len(self.nodes)
