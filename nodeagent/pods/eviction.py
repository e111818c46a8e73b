"""Local storage eviction, as the kubelet's eviction manager does it for ephemeral storage.

Every `interval` seconds (the agent's `--eviction-interval`; the kubelet's housekeeping is
10 s) the manager measures and acts, in this order:
1. each pod's local storage: its containers' writable layers (their overlay upper dirs), its
   directory (logs) and its emptyDir volumes on disk, counted in allocated blocks as `du`
   counts them;
2. limits: an emptyDir past its sizeLimit evicts the pod ("Usage of EmptyDir volume "cache"
   exceeds the limit "1Gi"."), checked first as the kubelet does; a pod whose usage exceeds
   the sum of its containers' `ephemeral-storage` limits is evicted ("Pod ephemeral local
   storage usage exceeds the total limit of containers 10Mi."),
   and so is one whose container alone exceeds its own limit ("Container app exceeded its
   local ephemeral storage limit "10Mi"."), the kubelet's words and order;
3. node pressure: when the file system of the agent's state dir has less available than the
   hard threshold (`--eviction-hard nodefs.available<10%`, the kubelet's default) the node
   reports DiskPressure, and one pod per pass is evicted, ranked as the kubelet ranks them
   for disk: pods using more than they requested first, then by usage above the request.
   DiskPressure stays True for `transition` seconds after the last pass below the threshold
   (the kubelet's evictionPressureTransitionPeriod), so it does not flap.

Evicting is the pod worker's (`PodWorker.evict`): its containers are killed at once (no grace
period, as for the kubelet's hard thresholds) and removed with their writable layers and logs,
and the pod reports phase Failed, reason Evicted, with the message above; a controller's pod
is then replaced. Nothing critical shares this file system with pods: etcd's data dir has a
file system of its own (`pilothouse up`, and the systemd layout in the README).

Invariants: measuring never blocks the event loop (it runs in a thread) and never fails a pass
(a file that vanishes while counted counts nothing); a pod is evicted at most once; every
decision is logged with the domain's nouns (`pod=`, `usage=`, `limit=`, `available=`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog

from nodeagent.pods import specs
from nodeagent.pods.containers import PodContainers
from nodeagent.pods.status import ContainerRecord, Running, Terminated, TerminatedReason
from nodeagent.pods.stop import stop_container
from nodeagent.runtime import ContainerRuntime
from pilothouse import quantity
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

RESOURCE = "ephemeral-storage"
DEFAULT_INTERVAL_S = 10.0
DEFAULT_TRANSITION_S = 30.0


class Evictable(Protocol):
    """What the manager needs of a pod worker."""

    pod: objects_pb2.Pod
    evicted: str | None
    stopping: bool

    async def evict(self, message: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Threshold:
    """A hard threshold on the node file system's available space: a fraction or bytes."""

    fraction: float = 0.10
    bytes: int | None = None

    @classmethod
    def parse(cls, text: str) -> Threshold:
        """The kubelet's form: `nodefs.available<10%` or `nodefs.available<1Gi`."""
        signal, _, value = text.partition("<")
        if signal.strip() != "nodefs.available" or not value.strip():
            raise ValueError(f"expected nodefs.available<PERCENT or <QUANTITY, got {text!r}")
        value = value.strip()
        if value.endswith("%"):
            percent = float(value[:-1])
            if not 0 <= percent <= 100:
                raise ValueError(f"a percentage between 0 and 100, got {value}")
            return cls(fraction=percent / 100)
        return cls(fraction=0.0, bytes=quantity.parse_memory(value))

    def quantity(self, capacity: int) -> int:
        return self.bytes if self.bytes is not None else int(capacity * self.fraction)


@dataclass(frozen=True, slots=True)
class Usage:
    """One pod's local storage: per container (writable layers and logs), and the total."""

    containers: dict[str, int]
    total: int
    # emptyDir volumes on the node's disk (medium Memory is memory, not counted), by name.
    volumes: dict[str, int] = field(default_factory=dict)


def allocated_bytes(path: Path) -> int:
    """Space allocated below `path` (blocks, as du counts), on its own file system; 0 if gone."""
    try:
        top = os.lstat(path)
    except OSError:
        return 0
    total, stack = 0, [str(path)]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                total += st.st_blocks * 512
                if entry.is_dir(follow_symlinks=False) and st.st_dev == top.st_dev:
                    stack.append(entry.path)
    return total


def measure(pod: objects_pb2.Pod, *, state_dir: Path, writable_root: Path | None) -> Usage:
    """The pod's usage (blocking: run it in a thread)."""
    meta = pod.metadata
    prefix = f"{meta.namespace or 'default'}_{meta.name}_"
    names = [c.name for c in pod.spec.containers]
    per = dict.fromkeys(names, 0)
    if writable_root is not None:
        for cdir in writable_root.glob(prefix + "*"):
            name = cdir.name[len(prefix) :].rpartition("_")[0]
            if name in per:
                per[name] += allocated_bytes(cdir / "upper")
    pod_dir = specs.pod_dir(state_dir, pod)
    for name in names:
        per[name] += allocated_bytes(pod_dir / name)
    volumes = {
        v.name: allocated_bytes(pod_dir / "volumes" / "kubernetes.io~empty-dir" / v.name)
        for v in pod.spec.volumes
        if v.HasField("empty_dir") and v.empty_dir.medium != "Memory"
    }
    total = sum(per.values()) + sum(volumes.values()) + _files_of(pod_dir)
    return Usage(containers=per, total=total, volumes=volumes)


def _files_of(directory: Path) -> int:
    """The plain files directly in `directory` (the pod's own records)."""
    try:
        return sum(
            e.stat(follow_symlinks=False).st_blocks * 512
            for e in os.scandir(directory)
            if e.is_file(follow_symlinks=False)
        )
    except OSError:
        return 0


def _amounts(pod: objects_pb2.Pod, kind: str) -> dict[str, int]:
    found = {}
    for c in pod.spec.containers:
        text = getattr(c.resources, kind).get(RESOURCE)
        if text:
            try:
                found[c.name] = quantity.parse_memory(text)
            except quantity.QuantityError:
                continue
    return found


def limit_violation(pod: objects_pb2.Pod, usage: Usage) -> str | None:
    """Why the pod must be evicted for its own limits (the kubelet's words), or None."""
    for volume in pod.spec.volumes:  # the kubelet checks emptyDir sizeLimits first
        size = volume.empty_dir.size_limit if volume.HasField("empty_dir") else ""
        if size and volume.name in usage.volumes:
            try:
                over = usage.volumes[volume.name] > quantity.parse_memory(size)
            except quantity.QuantityError:
                continue
            if over:
                return f'Usage of EmptyDir volume "{volume.name}" exceeds the limit "{size}".'
    limits = _amounts(pod, "limits")
    if limits and usage.total > sum(limits.values()):
        total = quantity.format_memory(sum(limits.values()))
        return f"Pod ephemeral local storage usage exceeds the total limit of containers {total}."
    for c in pod.spec.containers:
        if c.name in limits and usage.containers.get(c.name, 0) > limits[c.name]:
            text = c.resources.limits[RESOURCE]
            return f'Container {c.name} exceeded its local ephemeral storage limit "{text}".'
    return None


@dataclass(frozen=True, slots=True)
class NodeFs:
    capacity: int
    available: int


def node_fs(path: Path) -> NodeFs:
    st = os.statvfs(path)
    return NodeFs(capacity=st.f_blocks * st.f_frsize, available=st.f_bavail * st.f_frsize)


def rank(candidates: Sequence[tuple[Evictable, Usage]]) -> list[tuple[Evictable, Usage]]:
    """The kubelet's disk-pressure order: over their requests first, then most above them."""

    def key(item: tuple[Evictable, Usage]) -> tuple[bool, int]:
        worker, usage = item
        above = usage.total - sum(_amounts(worker.pod, "requests").values())
        return (above <= 0, -above)

    return sorted(candidates, key=key)


def pressure_message(pod: objects_pb2.Pod, usage: Usage, *, threshold: int, fs: NodeFs) -> str:
    requests = _amounts(pod, "requests")
    parts = [
        f"The node was low on resource: {RESOURCE}. Threshold quantity: "
        f"{quantity.format_memory(threshold)}, available: {quantity.format_memory(fs.available)}."
    ]
    for name, used in usage.containers.items():
        if used > requests.get(name, 0):
            parts.append(
                f"Container {name} was using {quantity.format_memory(used)}, request is "
                f"{quantity.format_memory(requests.get(name, 0))}, has larger consumption of "
                f"{RESOURCE}."
            )
    return " ".join(parts)


@dataclass
class EvictionManager:
    """The agent's eviction loop (a Runnable through `run`) and its DiskPressure condition."""

    pods: Callable[[], Sequence[Evictable]]
    state_dir: Path
    writable_root: Path | None = None  # where containers' upper dirs live (the image store's)
    threshold: Threshold = field(default_factory=Threshold)
    interval: float = DEFAULT_INTERVAL_S
    transition: float = DEFAULT_TRANSITION_S
    _pressure_seen: float | None = None  # monotonic time of the last pass below threshold
    _condition: objects_pb2.Condition = field(
        default_factory=lambda: _disk_condition(False, datetime.now(UTC))
    )

    @property
    def disk_pressure(self) -> bool:
        return self._condition.status == "True"

    def conditions(self) -> list[objects_pb2.Condition]:
        """The node conditions this manager owns (DiskPressure), for the node's status."""
        copy = objects_pb2.Condition()
        copy.CopyFrom(self._condition)
        return [copy]

    async def run(self) -> None:
        while True:
            try:
                await self.once()
            except Exception:
                log.exception("eviction.pass_failed")
            await asyncio.sleep(self.interval)

    async def once(self) -> list[str]:
        """One pass; the keys of the pods it evicted."""
        live = [w for w in self.pods() if w.evicted is None and not w.stopping]
        measured = [(w, await self._measure(w.pod)) for w in live]
        evicted = []
        for worker, usage in measured:
            message = limit_violation(worker.pod, usage)
            if message is not None:
                log.warning(
                    "pod.evicting",
                    pod=specs.pod_key(worker.pod),
                    usage=usage.total,
                    reason="ephemeral-storage limit",
                    message=message,
                )
                await worker.evict(message)
                evicted.append(specs.pod_key(worker.pod))
        fs = await asyncio.to_thread(node_fs, self.state_dir)
        limit = self.threshold.quantity(fs.capacity)
        under = fs.available < limit
        self._set_pressure(under)
        if under:
            left = [(w, u) for w, u in measured if specs.pod_key(w.pod) not in evicted]
            if left:
                worker, usage = rank(left)[0]
                message = pressure_message(worker.pod, usage, threshold=limit, fs=fs)
                log.warning(
                    "pod.evicting",
                    pod=specs.pod_key(worker.pod),
                    usage=usage.total,
                    available=fs.available,
                    threshold=limit,
                    reason="node disk pressure",
                )
                await worker.evict(message)
                evicted.append(specs.pod_key(worker.pod))
        return evicted

    async def _measure(self, pod: objects_pb2.Pod) -> Usage:
        return await asyncio.to_thread(
            measure, pod, state_dir=self.state_dir, writable_root=self.writable_root
        )

    def _set_pressure(self, under: bool) -> None:
        now = time.monotonic()
        if under:
            self._pressure_seen = now
        pressure = self._pressure_seen is not None and now - self._pressure_seen < max(
            self.transition, 0.0
        )
        pressure = pressure or under
        if pressure != self.disk_pressure:
            log.warning("node.disk_pressure", pressure=pressure)
            self._condition = _disk_condition(pressure, datetime.now(UTC))
        self._condition.last_heartbeat_time.FromDatetime(datetime.now(UTC))


def _disk_condition(pressure: bool, when: datetime) -> objects_pb2.Condition:
    condition = objects_pb2.Condition(
        type="DiskPressure",
        status="True" if pressure else "False",
        reason="KubeletHasDiskPressure" if pressure else "KubeletHasNoDiskPressure",
        message="kubelet has disk pressure" if pressure else "kubelet has no disk pressure",
    )
    condition.last_transition_time.FromDatetime(when)
    condition.last_heartbeat_time.FromDatetime(when)
    return condition


# -- what an evicted pod's worker does and reports ----------------------------------------------

EVICTED_REASON = "Evicted"
KILLED_EXIT_CODE = 137


def mark_evicted(status: objects_pb2.PodStatus, message: str) -> None:
    """An evicted pod's status: Failed, reason Evicted, the eviction's message."""
    status.phase = "Failed"
    status.reason = EVICTED_REASON
    status.message = message


async def end_containers(
    *,
    runtime: ContainerRuntime,
    containers: PodContainers,
    records: dict[str, ContainerRecord],
    pod_dir: Path,
    log: Any,
) -> None:
    """Kill (no grace period) and remove every container of an evicted pod, with its writable
    layer, and its logs: what it used of the node's disk is given back."""
    for state in await containers.all():
        await stop_container(runtime, state.id, grace=0, log=log)
        await containers.remove(state.id)
    now = datetime.now(UTC)
    for rec in records.values():
        if not isinstance(rec.state, Terminated):
            started = rec.state.started_at if isinstance(rec.state, Running) else None
            rec.state = Terminated(
                exit_code=KILLED_EXIT_CODE,
                reason=TerminatedReason.ERROR,
                started_at=started,
                finished_at=now,
                container_id=rec.container_id,
            )
        rec.ready = False
    await asyncio.to_thread(_remove_logs, pod_dir)


def _remove_logs(pod_dir: Path) -> None:
    for path in pod_dir.glob("*/*.log*"):
        path.unlink(missing_ok=True)
