"""The node's usage sampler: every `interval` seconds, each running container's CPU and memory
(its cgroup), each pod's network bytes and the node's own CPU and memory.

Role: what `pilothouse top`, the HorizontalPodAutoscaler and the dashboard show comes from the
latest sample here (the agent's NodeUsage.Usage answers it), as metrics-server's comes from
the kubelet's. A CPU rate is the CPU time between two readings of the same container over the
time between them; a container read once has no rate yet and is left out until its second
reading (a pod with none of its containers measured is not reported).

Invariants: sampling never fails the agent: a container that ends between listing and reading
is skipped; the readings are taken off the event loop (file reads in a thread); `latest()`
returns immutable samples and costs nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from nodeagent.pods.status import Running
from nodeagent.pods.worker import PodWorker
from nodeagent.runtime import ContainerNotFound, ocispec
from nodeagent.runtime import usage as readings

log = structlog.get_logger(__name__)

DEFAULT_INTERVAL = 10.0


@dataclass(frozen=True, slots=True)
class ContainerSample:
    name: str
    cpu_nanocores: int
    memory_working_set_bytes: int
    restarts: int


@dataclass(frozen=True, slots=True)
class PodSample:
    namespace: str
    name: str
    uid: str
    timestamp: datetime
    window_seconds: float
    containers: tuple[ContainerSample, ...]
    network_rx_bytes: int = 0
    network_tx_bytes: int = 0

    @property
    def cpu_nanocores(self) -> int:
        return sum(c.cpu_nanocores for c in self.containers)

    @property
    def memory_working_set_bytes(self) -> int:
        return sum(c.memory_working_set_bytes for c in self.containers)


@dataclass(frozen=True, slots=True)
class NodeSample:
    timestamp: datetime
    window_seconds: float
    cpu_nanocores: int
    memory_working_set_bytes: int


@dataclass(frozen=True, slots=True)
class _Target:
    """One running container to read, as the workers know it."""

    namespace: str
    pod: str
    uid: str
    container: str
    container_id: str
    restarts: int
    cgroup_path: str
    pid: int


class UsageSampler:
    """A runnable ("usage"); `latest()` gives the last sample of the node and its pods."""

    name = "usage"

    def __init__(
        self,
        runtime: Any,
        *,
        workers: Callable[[], Sequence[PodWorker]],
        interval: float = DEFAULT_INTERVAL,
        observe: Callable[[NodeSample | None, Sequence[PodSample]], None] | None = None,
    ) -> None:
        self._runtime = runtime
        self._workers = workers
        self.interval = interval
        self._observe = observe  # metrics, after each pass
        self._previous: dict[str, tuple[int, float]] = {}  # container id -> (cpu ns, time)
        self._node_previous: tuple[int, float] | None = None
        self._node: NodeSample | None = None
        self._pods: tuple[PodSample, ...] = ()
        cgroups = getattr(runtime, "cgroups", None)
        settings = getattr(runtime, "settings", None)
        # The fake runtime (hollow nodes) has no cgroups: its pods read as unmeasured.
        self._cgroups = cgroups if settings is not None else None
        self._settings = settings

    def latest(self) -> tuple[NodeSample | None, tuple[PodSample, ...]]:
        return self._node, self._pods

    async def run(self) -> None:
        while True:
            try:
                await self.sample()
            except Exception as error:  # a pass that fails is logged; the next one tries again
                log.warning("usage.sample_failed", error=repr(error))
            await asyncio.sleep(self.interval)

    async def sample(self) -> None:
        targets = await self._targets()
        now = time.monotonic()
        stamp = datetime.now(UTC)
        node_reading, container_readings, networks = await asyncio.to_thread(self._read, targets)
        self._node = self._node_sample(node_reading, now=now, stamp=stamp) or self._node
        seen: set[str] = set()
        by_pod: dict[tuple[str, str, str], list[ContainerSample]] = {}
        windows: dict[tuple[str, str, str], float] = {}
        for target, reading in zip(targets, container_readings, strict=True):
            if reading is None:
                continue
            seen.add(target.container_id)
            before = self._previous.get(target.container_id)
            self._previous[target.container_id] = (reading.cpu_ns, now)
            key = (target.namespace, target.pod, target.uid)
            if before is None or now <= before[1]:
                continue
            window = now - before[1]
            rate = max(0, reading.cpu_ns - before[0]) / window
            by_pod.setdefault(key, []).append(
                ContainerSample(
                    name=target.container,
                    cpu_nanocores=int(rate),
                    memory_working_set_bytes=reading.memory_working_set_bytes,
                    restarts=target.restarts,
                )
            )
            windows[key] = window
        for gone in set(self._previous) - seen:
            del self._previous[gone]
        pods = []
        for key, containers in by_pod.items():
            network = networks.get(key)
            pods.append(
                PodSample(
                    namespace=key[0],
                    name=key[1],
                    uid=key[2],
                    timestamp=stamp,
                    window_seconds=windows[key],
                    containers=tuple(containers),
                    network_rx_bytes=network.rx_bytes if network else 0,
                    network_tx_bytes=network.tx_bytes if network else 0,
                )
            )
        self._pods = tuple(pods)
        if self._observe is not None:
            self._observe(self._node, self._pods)

    def _node_sample(
        self, reading: readings.NodeReading | None, *, now: float, stamp: datetime
    ) -> NodeSample | None:
        if reading is None:
            return None
        before, self._node_previous = self._node_previous, (reading.cpu_ns, now)
        if before is None or now <= before[1]:
            return None
        window = now - before[1]
        return NodeSample(
            timestamp=stamp,
            window_seconds=window,
            cpu_nanocores=int(max(0, reading.cpu_ns - before[0]) / window),
            memory_working_set_bytes=reading.memory_working_set_bytes,
        )

    async def _targets(self) -> list[_Target]:
        if self._cgroups is None:
            return []
        out = []
        for worker in self._workers():
            pod = worker.pod
            for container in pod.spec.containers:
                rec = worker.records.get(container.name)
                if rec is None or not rec.container_id or not isinstance(rec.state, Running):
                    continue
                try:
                    state = await self._runtime.state(rec.container_id)
                except ContainerNotFound:
                    continue
                out.append(
                    _Target(
                        namespace=pod.metadata.namespace or "default",
                        pod=pod.metadata.name,
                        uid=pod.metadata.uid,
                        container=container.name,
                        container_id=rec.container_id,
                        restarts=rec.restart_count,
                        cgroup_path=ocispec.cgroups_path(rec.container_id, self._settings),
                        pid=state.pid,
                    )
                )
        return out

    def _read(
        self, targets: list[_Target]
    ) -> tuple[
        readings.NodeReading | None,
        list[readings.CgroupReading | None],
        dict[tuple[str, str, str], readings.NetworkReading],
    ]:
        node = readings.read_node()
        containers = [readings.read_cgroup(self._cgroups, t.cgroup_path) for t in targets]
        networks: dict[tuple[str, str, str], readings.NetworkReading] = {}
        for t in targets:
            key = (t.namespace, t.pod, t.uid)
            if key not in networks and t.pid > 0:
                reading = readings.read_network(t.pid)
                if reading is not None:
                    networks[key] = reading
        return node, containers, networks
