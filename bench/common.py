"""Helpers shared by the cluster benchmarks (startup, heal): a whole cluster of real processes,
pod timings as a user sees them through the API's watch, and the bare-runc floor.

Invariants: everything a helper starts it also removes (processes, containers, mounts,
cgroups, temp dirs), also when the benchmark fails; timings are wall-clock (`time.time()`)
when compared with server timestamps (same machine, same clock), else `time.perf_counter()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pilothouse.client import ChangeType, Client
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o
from tests.fixtures.agents import Cluster


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def require_root() -> None:
    if os.geteuid() != 0:
        raise SystemExit("run as root: containers need namespaces, cgroups and mounts")


@contextlib.asynccontextmanager
async def running_cluster(
    *,
    agents: int = 3,
    runtime: str = "runc",
    control_plane_flags: Sequence[str] = (),
    agent_flags: Sequence[str] = (),
    keep_logs: Path | None = None,
) -> AsyncIterator[Cluster]:
    """A control plane + agents n1..nN, all Ready; everything removed on the way out (the
    processes' logs copied to `keep_logs` first, when given, for profiling)."""
    root = Path(tempfile.mkdtemp(prefix="ph-bn-"))
    cluster = Cluster(root, control_plane_flags=control_plane_flags)
    try:
        await cluster.start_control_plane()
        await asyncio.gather(
            *(
                cluster.add_agent(f"n{i}", runtime=runtime, flags=agent_flags)
                for i in range(1, agents + 1)
            )
        )
        async with cluster.client() as client:
            await wait_nodes_ready(client, sorted(cluster.agents))
        yield cluster
    finally:
        try:
            await cluster.stop()
        finally:
            if keep_logs is not None:
                _copy_logs(root, keep_logs)
            shutil.rmtree(root, ignore_errors=True)


def _copy_logs(root: Path, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    for log in root.glob("*/*.log"):
        shutil.copy(log, into / f"{log.parent.name}.log")


async def wait_nodes_ready(client: Client, names: Sequence[str], *, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        nodes = [n for n in (await client.list(Kind.NODE)).items if isinstance(n, o.Node)]
        ready = {
            n.metadata.name
            for n in nodes
            if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)
        }
        if set(names) <= ready:
            return
        await asyncio.sleep(0.1)
    raise SystemExit(f"nodes {list(names)} never all Ready")


@dataclass
class PodWatch:
    """Follows a namespace's pods through the API's watch; records, per pod uid, when the
    watch first showed it (created) and first showed it Running (wall clock).

    The creation time is the watch's first sight, not `creationTimestamp`: that field has
    whole-second resolution (as in Kubernetes), too coarse for sub-second latencies. Both
    ends carry the same watch delivery delay, so it cancels out."""

    client: Client
    namespace: str
    created: dict[str, float] = field(default_factory=dict)
    running_at: dict[str, float] = field(default_factory=dict)
    node_of: dict[str, str] = field(default_factory=dict)
    name_of: dict[str, str] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    _task: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> PodWatch:
        self._task = asyncio.create_task(self._follow())
        await asyncio.sleep(0.2)  # the watch is open and its initial state delivered
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _follow(self) -> None:
        async for change in self.client.watch(Kind.POD, namespace=self.namespace):
            now = time.time()
            pod = change.object
            if not isinstance(pod, o.Pod):
                continue
            uid = pod.metadata.uid
            if change.type is ChangeType.DELETED:
                self.deleted.add(uid)
            else:
                self.created.setdefault(uid, now)
                self.name_of.setdefault(uid, pod.metadata.name)
                if pod.status.phase == "Running" and uid not in self.running_at:
                    self.running_at[uid] = now
                    self.node_of[uid] = pod.spec.node_name
            self._changed.set()

    def live_running(self, owner: str = "") -> dict[str, float]:
        """Pods seen Running and not deleted (with `owner`: only pods named `<owner>-...`,
        so a previous round's pods still terminating are not counted)."""
        prefix = f"{owner}-" if owner else ""
        return {
            u: t
            for u, t in self.running_at.items()
            if u not in self.deleted and self.name_of.get(u, "").startswith(prefix)
        }

    async def wait_running(
        self, count: int, *, owner: str = "", within: float = 120
    ) -> dict[str, float]:
        """Wait until `count` live pods (of `owner`, see `live_running`) have been seen
        Running; uid -> when."""
        deadline = time.monotonic() + within
        while len(self.live_running(owner)) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemExit(f"only {len(self.live_running(owner))}/{count} pods Running")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))
        return self.live_running(owner)

    def startup_latencies(self, uids: Sequence[str]) -> list[float]:
        """Created -> seen Running, seconds, per pod."""
        return [self.running_at[u] - self.created[u] for u in uids if u in self.created]


async def wait_no_containers(cluster: Cluster, *, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any([await cluster.containers(n) for n in cluster.agents]):
            return
        await asyncio.sleep(0.1)
    raise SystemExit("containers were left after the Deployment was deleted")


# -- the bare runc floor ---------------------------------------------------------------------


async def _runc(*args: str, errors: Path) -> None:
    # Not a pipe: `runc create` hands its stdio to the container, which keeps a pipe open.
    with errors.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            "runc", *args, stdin=asyncio.subprocess.DEVNULL, stdout=err, stderr=err
        )
        await proc.wait()
    if proc.returncode != 0:
        message = await asyncio.to_thread(errors.read_text)
        raise SystemExit(f"runc {' '.join(args)}: {message.strip()}")


@dataclass(frozen=True, slots=True)
class Floor:
    """Bare `runc create` + `runc start` of N busybox sleepers, seconds for all N."""

    count: int
    sequential: float
    parallel: float


async def runc_floor(count: int) -> Floor:
    """N bundles of one shared read-only busybox rootfs (no image, overlay or monitor): made
    one after another, then all N at once; every container deleted afterwards."""
    from tests.fixtures.runtime import make_busybox_rootfs

    work = Path(tempfile.mkdtemp(prefix="ph-fl-"))
    root = work / "runc"
    parent = f"/pilothouse-bench-floor-{uuid.uuid4().hex[:8]}"
    rootfs = make_busybox_rootfs(work / "rootfs")
    spec_dir = work / "spec"
    spec_dir.mkdir()
    await _runc("spec", "--bundle", str(spec_dir), errors=work / "spec.err")
    base = json.loads((spec_dir / "config.json").read_text())
    base["process"]["terminal"] = False
    base["process"]["args"] = ["sleep", "100000"]
    base["root"] = {"path": str(rootfs), "readonly": True}
    base["linux"].setdefault("namespaces", []).append({"type": "cgroup"})
    made: list[str] = []

    def bundle(cid: str) -> Path:
        b = work / "bundles" / cid
        b.mkdir(parents=True)
        config = json.loads(json.dumps(base))
        config["hostname"] = cid
        config["linux"]["cgroupsPath"] = f"{parent}/{cid}"
        (b / "config.json").write_text(json.dumps(config))
        return b

    async def one(cid: str, b: Path) -> None:
        made.append(cid)
        await _runc("--root", str(root), "create", "--bundle", str(b), cid, errors=b / "err")
        await _runc("--root", str(root), "start", cid, errors=b / "err")

    try:
        seq = [(f"s{i}", bundle(f"s{i}")) for i in range(count)]
        t0 = time.perf_counter()
        for cid, b in seq:
            await one(cid, b)
        sequential = time.perf_counter() - t0
        par = [(f"p{i}", bundle(f"p{i}")) for i in range(count)]
        t0 = time.perf_counter()
        await asyncio.gather(*(one(cid, b) for cid, b in par))
        parallel = time.perf_counter() - t0
    finally:
        for cid in made:
            with contextlib.suppress(SystemExit):
                await _runc("--root", str(root), "delete", "--force", cid, errors=work / "del.err")
        from nodeagent.runtime.cgroups import Cgroups

        Cgroups().remove(parent)
        shutil.rmtree(work, ignore_errors=True)
    return Floor(count=count, sequential=sequential, parallel=parallel)


async def ensure_namespace(client: Client, name: str) -> None:
    """The benchmark's namespace, created if need be (what lives in one needs it to exist)."""
    namespace = o.Namespace()
    namespace.metadata.name = name
    await client.apply(namespace)
