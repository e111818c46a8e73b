"""A hollow node's pods: the PodManager's API surface (`sync`, `pods`, `watch`, `logs`) with no
containers behind it, so the real `NodeAgentServicer` serves it unchanged.

A pushed pod is Pending at once and goes Running with every container started and Ready after
`start_delay` seconds, or Failed (exit code 1, reason Error) with probability `failure_rate`
(decided once per pod uid, so a re-push does not re-roll it). A pod left out of a push is
REMOVED at once. Statuses carry the pod's generation, the node's IP as hostIP and an address
from the node's pod CIDR (or 10.0.0.0/8 without one), as a real agent reports them.

Invariants: `watch()` first yields every pod's current status, then each change; the max-pods
limit and duplicate keys are refused as the real manager refuses them; the pods' volumes,
probes and images are not simulated (a hollow node is the control plane's view of a node).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from nodeagent.pods.manager import EventType, PodEvent
from pilothouse.v1 import objects_pb2


def _key(pod: objects_pb2.Pod) -> str:
    return f"{pod.metadata.namespace or 'default'}/{pod.metadata.name}"


class HollowPods:
    """Pods that only exist as statuses; see the module docstring."""

    def __init__(
        self,
        *,
        host_ip: str,
        pod_cidr: Callable[[], str],
        max_pods: int = 110,
        start_delay: float = 0.0,
        failure_rate: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        self._host_ip = host_ip
        self._pod_cidr = pod_cidr
        self._max_pods = max_pods
        self._start_delay = start_delay
        self._failure_rate = failure_rate
        self._rng = rng or random.Random()
        self._pods: dict[str, objects_pb2.Pod] = {}  # key -> the status as last published
        self._uids: dict[str, str] = {}  # key -> uid of the pod under that key
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._containers: dict[str, tuple[tuple[str, str], ...]] = {}  # key -> (name, image)
        self._watchers: set[asyncio.Queue[PodEvent]] = set()
        self._next_ip = 2

    async def sync(
        self, desired: list[objects_pb2.Pod], *, fence: bool = False, configs: Any = None
    ) -> dict[str, str]:
        rejected: dict[str, str] = {}
        accepted: dict[str, objects_pb2.Pod] = {}
        for pod in desired:
            key = _key(pod)
            if key in accepted:
                rejected[key] = "the same pod appears twice in the set"
            elif len(accepted) >= self._max_pods:
                rejected[key] = f"the node runs at most {self._max_pods} pods (--max-pods)"
            else:
                accepted[key] = pod
        for key in [k for k in self._pods if k not in accepted]:
            self._remove(key)
        for key, pod in accepted.items():
            if self._uids.get(key) == pod.metadata.uid:
                current = self._pods[key]
                if current.metadata.generation != pod.metadata.generation:
                    current.metadata.generation = pod.metadata.generation
                    current.status.observed_generation = pod.metadata.generation
                    self._emit(EventType.UPDATED, current)
                continue
            if key in self._pods:
                self._remove(key)  # replaced by a pod of another uid
            self._start(key, pod)
        return rejected

    def pods(self) -> list[objects_pb2.Pod]:
        return list(self._pods.values())

    async def watch(self) -> AsyncIterator[PodEvent]:
        queue: asyncio.Queue[PodEvent] = asyncio.Queue()
        self._watchers.add(queue)
        try:
            for pod in list(self._pods.values()):
                yield PodEvent(EventType.UPDATED, pod)
            while True:
                yield await queue.get()
        finally:
            self._watchers.discard(queue)

    async def logs(self, **_: Any) -> AsyncIterator[bytes]:
        yield b""  # hollow containers write nothing

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    # -- internals -------------------------------------------------------------------------

    def _start(self, key: str, pod: objects_pb2.Pod) -> None:
        observed = objects_pb2.Pod()
        meta = pod.metadata  # only what identifies the pod: statuses are what goes back
        observed.metadata.namespace = meta.namespace
        observed.metadata.name = meta.name
        observed.metadata.uid = meta.uid
        observed.metadata.generation = meta.generation
        self._containers[key] = tuple((c.name, c.image) for c in pod.spec.containers)
        status = observed.status
        status.phase = "Pending"
        status.host_ip = self._host_ip
        status.observed_generation = pod.metadata.generation
        status.start_time.FromDatetime(datetime.now(UTC))
        status.conditions.add(type="PodScheduled", status="True")
        self._pods[key] = observed
        self._uids[key] = pod.metadata.uid
        self._emit(EventType.UPDATED, observed)
        fails = self._failure_rate > 0 and self._rng.random() < self._failure_rate
        loop = asyncio.get_running_loop()
        if self._start_delay <= 0:
            self._started(key, pod.metadata.uid, failed=fails)
        else:
            self._timers[key] = loop.call_later(
                self._start_delay, self._started, key, pod.metadata.uid, fails
            )

    def _started(self, key: str, uid: str, failed: bool = False) -> None:
        self._timers.pop(key, None)
        pod = self._pods.get(key)
        if pod is None or self._uids.get(key) != uid:
            return
        now = datetime.now(UTC)
        status = pod.status
        status.pod_ip = self._address()
        ok = "False" if failed else "True"
        del status.conditions[:]
        for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready"):
            condition = status.conditions.add(type=kind, status="True")
            if kind in ("ContainersReady", "Ready"):
                condition.status = ok
                condition.reason = "PodCompleted" if failed else ""
            condition.last_transition_time.FromDatetime(now)
        status.phase = "Failed" if failed else "Running"
        for name, image in self._containers.get(key, ()):
            state = status.container_statuses.add(
                name=name,
                image=image,
                image_id=image,
                ready=not failed,
                started=not failed,
                container_id=f"hollow://{uid[:12]}-{name}",
            )
            if failed:
                state.state.terminated.exit_code = 1
                state.state.terminated.reason = "Error"
                state.state.terminated.finished_at.FromDatetime(now)
            else:
                state.state.running.started_at.FromDatetime(now)
        self._emit(EventType.UPDATED, pod)

    def _address(self) -> str:
        cidr = self._pod_cidr() or "10.0.0.0/8"
        network = ipaddress.ip_network(cidr, strict=False)
        index = self._next_ip % max(network.num_addresses - 2, 1) + 1
        self._next_ip += 1
        return str(network.network_address + index)

    def _remove(self, key: str) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        pod = self._pods.pop(key)
        self._uids.pop(key, None)
        self._containers.pop(key, None)
        self._emit(EventType.REMOVED, pod)

    def _emit(self, kind: EventType, pod: objects_pb2.Pod) -> None:
        if not self._watchers:
            return
        copy = objects_pb2.Pod()
        copy.CopyFrom(pod)
        for queue in self._watchers:
            queue.put_nowait(PodEvent(kind, copy))
