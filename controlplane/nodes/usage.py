"""Usage gathered from the agents: each node's latest sample of itself and its pods.

Role: `pilothouse top`, the HorizontalPodAutoscaler and the dashboard read usage through one
`UsageGatherer`, as Kubernetes' read metrics-server: it asks every node that has an agent
address for its latest sample (NodeUsage.Usage) at once, and keeps each answer for `max_age`
seconds, so many readers at once cost one call per node.

Invariants:
- A node whose agent does not answer is reported in `errors` (one line naming it) and its
  pods are missing from the answer; it never fails the whole gathering.
- Only samples of pods the store binds to that node count (a stale report of a pod that
  moved is dropped): usage is matched by namespace, name and uid.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from controlplane.nodes import conditions
from controlplane.nodes.agent import AgentCallFailed, Connect
from controlplane.objects import ObjectStore
from pilothouse.kinds import Kind
from pilothouse.v1 import agent_pb2, objects_pb2

DEFAULT_MAX_AGE = 2.0
CALL_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class Gathered:
    """Every answering node's sample, and a line for each that did not answer."""

    nodes: dict[str, agent_pb2.UsageResponse] = field(default_factory=dict)
    errors: tuple[str, ...] = ()

    def pods(self) -> list[agent_pb2.PodUsage]:
        return [pod for sample in self.nodes.values() for pod in sample.pods]


@dataclass(frozen=True, slots=True)
class PodCpuMemory:
    """One pod's usage as autoscaling reads it (plain data, no messages)."""

    cpu_millis: float
    memory_bytes: int
    timestamp: datetime
    window_seconds: float
    containers: dict[str, tuple[float, int]]  # name -> (cpu millicores, memory bytes)


class UsageGatherer:
    def __init__(
        self,
        objects: ObjectStore,
        *,
        connect: Connect,
        max_age: float = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._objects = objects
        self._connect = connect
        self._max_age = max_age
        self._clock = clock
        self._cache: dict[str, tuple[float, agent_pb2.UsageResponse]] = {}
        self._lock = asyncio.Lock()

    async def gather(self, *, node: str = "") -> Gathered:
        """The latest sample of every node (or the one named)."""
        listed = await self._objects.list(Kind.NODE, None)
        nodes: Sequence[objects_pb2.Node] = [
            n for n in listed.items if not node or n.metadata.name == node
        ]
        async with self._lock:  # concurrent readers share one round of calls
            now = self._clock()
            due = [
                n
                for n in nodes
                if n.metadata.name not in self._cache
                or now - self._cache[n.metadata.name][0] > self._max_age
            ]
            answers = await asyncio.gather(*(self._ask(n) for n in due))
            errors = []
            for n, answer in zip(due, answers, strict=True):
                if isinstance(answer, str):
                    errors.append(answer)
                    self._cache.pop(n.metadata.name, None)
                else:
                    self._cache[n.metadata.name] = (now, answer)
            samples = {
                n.metadata.name: self._cache[n.metadata.name][1]
                for n in nodes
                if n.metadata.name in self._cache
            }
        return Gathered(nodes=samples, errors=tuple(errors))

    async def pods(self, namespace: str | None) -> tuple[list[agent_pb2.PodUsage], list[str]]:
        """The samples of pods the store has on the node that sent them (`namespace` None:
        every namespace)."""
        gathered = await self.gather()
        listed = await self._objects.list(Kind.POD, namespace)
        bound = {
            (p.metadata.namespace, p.metadata.name, p.metadata.uid): p.spec.node_name
            for p in listed.items
        }
        out = []
        for node, sample in gathered.nodes.items():
            for pod in sample.pods:
                if bound.get((pod.namespace, pod.name, pod.uid)) == node:
                    out.append(pod)
        return out, list(gathered.errors)

    async def cpu_memory(self, namespace: str) -> dict[str, PodCpuMemory]:
        """Pod name -> its usage, in one namespace (what the autoscaler asks)."""
        pods, _ = await self.pods(namespace)
        out = {}
        for pod in pods:
            containers = {
                c.name: (c.cpu_nanocores / 1e6, int(c.memory_working_set_bytes))
                for c in pod.containers
            }
            out[pod.name] = PodCpuMemory(
                cpu_millis=sum(cpu for cpu, _ in containers.values()),
                memory_bytes=sum(memory for _, memory in containers.values()),
                timestamp=pod.timestamp.ToDatetime(),
                window_seconds=pod.window_seconds,
                containers=containers,
            )
        return out

    async def _ask(self, node: objects_pb2.Node) -> agent_pb2.UsageResponse | str:
        name = node.metadata.name
        address = conditions.endpoint(node)
        if address is None:
            return f'node "{name}": no agent address registered'
        try:
            async with self._connect(address, name) as agent:
                async with asyncio.timeout(CALL_TIMEOUT):
                    return await agent.usage()
        except AgentCallFailed as error:
            return f'node "{name}": {error.message}'
        except TimeoutError:
            return f'node "{name}": its agent did not answer within {CALL_TIMEOUT:g} s'
