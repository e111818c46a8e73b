"""Agent start latency and memory, beside bare runc on the same bundle, in one run (as root).

Measures, through the real agent process (`python3 -m nodeagent`, runc runtime, the busybox
test image imported from <state-dir>/images/import/):
- SyncPods -> Running (as WatchPods reports it) for 1 pod (several rounds) and for 20 pods;
- the agent's RSS with 20 containers running, and each monitor's (conmon) RSS;
and, in the same run, `runc create` + `runc start` of copies of the agent's own bundle (same
config.json and overlay rootfs, each with its own id and cgroup): one at a time, and 20 at
once. Each agent sample is followed at once by its bare-runc counterpart, so both see the
same load on a shared machine; medians are compared. A warm-up pod (image import, caches)
runs throughout; its bundle is the one copied. The last line is JSON.

Usage: python3 bench/runtime.py [--count 20] [--rounds 9] [--many-rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc

from nodeagent.runtime.cgroups import Cgroups
from nodeagent.runtime.runc import RuncRuntime
from pilothouse.oci.testimage import build_test_image
from pilothouse.v1 import agent_pb2, agent_pb2_grpc, objects_pb2


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _pod(name: str) -> objects_pb2.Pod:
    pod = objects_pb2.Pod(
        metadata=objects_pb2.ObjectMeta(name=name, namespace="default", uid=uuid.uuid4().hex)
    )
    pod.spec.termination_grace_period_seconds = 0
    pod.spec.containers.add(name="c", image="busybox:stable", command=["sleep", "100000"])
    return pod


async def _start_agent(state: Path, parent: str) -> tuple[subprocess.Popen[bytes], str]:
    addr = state / "agent.addr"
    cmd = [sys.executable, "-m", "nodeagent", "--name", "bench", "--listen", "127.0.0.1:0"]
    cmd += ["--state-dir", str(state), "--cgroup-parent", parent]
    with (state / "agent.log").open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)  # noqa: ASYNC220
    for _ in range(600):
        if addr.exists() and addr.read_text().endswith("\n"):
            return proc, addr.read_text().strip()
        if proc.poll() is not None:
            raise SystemExit(f"agent exited: {(state / 'agent.log').read_text()[-2000:]}")
        await asyncio.sleep(0.05)
    raise SystemExit("agent did not start")


async def _time_to_running(
    stub: agent_pb2_grpc.NodeAgentStub,
    pods: list[objects_pb2.Pod],
    *,
    running: objects_pb2.Pod | None = None,
) -> float:
    """Seconds from SyncPods until WatchPods shows every pod Running and ready. With
    `running` (a pod already running), the watch is open (its first report seen) first."""
    watch = stub.WatchPods(agent_pb2.WatchPodsRequest())
    if running is not None:
        async for ev in watch:
            if ev.pod.metadata.name == running.metadata.name:
                break
    t0 = time.perf_counter()
    await stub.SyncPods(agent_pb2.SyncPodsRequest(pods=pods))
    want = {p.metadata.name for p in pods} - {running.metadata.name if running else ""}
    up: set[str] = set()
    async for ev in watch:
        if ev.pod.status.phase == "Running" and ev.pod.status.container_statuses[0].ready:
            up.add(ev.pod.metadata.name)
        if want <= up:
            watch.cancel()
            return time.perf_counter() - t0
    raise SystemExit("WatchPods ended")


async def _remove_all(
    stub: agent_pb2_grpc.NodeAgentStub,
    rt: RuncRuntime,
    *,
    keep: objects_pb2.Pod | None = None,
    keep_id: str = "",
) -> None:
    """Every pod removed (but `keep`, whose container is `keep_id`)."""
    await stub.SyncPods(agent_pb2.SyncPodsRequest(pods=[keep] if keep else []))
    for _ in range(600):
        if [c.id for c in await rt.list()] == ([keep_id] if keep_id else []):
            return
        await asyncio.sleep(0.05)


async def _runc(*args: str, errors: Path) -> None:
    # Not a pipe: `runc create` hands its stdio to the container, which keeps a pipe open.
    with errors.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=err, stderr=err
        )
        await proc.wait()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: {errors.read_text().strip()}")  # noqa: ASYNC240


class Floor:
    """`runc create` + `runc start` of copies of the agent's own bundle (same config.json and
    overlay rootfs, each with its own id and cgroup), under a runc root of its own."""

    def __init__(self, work: Path, parent: str) -> None:
        self.runc = shutil.which("runc") or "runc"
        self.root = work / "floor-runc"
        self.work = work / "floor"
        self.parent = parent
        self.made: list[str] = []

    def _prepare(self, bundle: Path, cid: str) -> Path:
        config = json.loads((bundle / "config.json").read_text())
        config["root"]["path"] = str((bundle / config["root"]["path"]).resolve())
        b = self.work / cid
        b.mkdir(parents=True)
        config["linux"]["cgroupsPath"] = f"{self.parent}/floor/{cid}"
        config["hostname"] = cid
        (b / "config.json").write_text(json.dumps(config))
        return b

    async def _one(self, cid: str, b: Path) -> None:
        err = b / "runc.err"
        self.made.append(cid)
        await _runc(
            self.runc, "--root", str(self.root), "create", "--bundle", str(b), cid, errors=err
        )
        await _runc(self.runc, "--root", str(self.root), "start", cid, errors=err)

    async def start(self, bundle: Path, ids: list[str]) -> float:
        """Seconds to create and start `ids` (all at once), bundles prepared beforehand."""
        bundles = [self._prepare(bundle, cid) for cid in ids]
        t0 = time.perf_counter()
        await asyncio.gather(*(self._one(cid, b) for cid, b in zip(ids, bundles, strict=True)))
        return time.perf_counter() - t0

    async def remove(self) -> None:
        for cid in self.made:
            err = self.work / cid / "runc.err"
            await _runc(self.runc, "--root", str(self.root), "delete", "--force", cid, errors=err)
        self.made.clear()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--many-rounds", type=int, default=3)
    opts = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: containers need namespaces and cgroups")
    parent = f"/pilothouse-bench-agent-{uuid.uuid4().hex[:8]}"
    state = Path(tempfile.mkdtemp(prefix="ph-bench-"))
    build_test_image(state / "images" / "import" / "busybox.tar")
    rt = RuncRuntime(state / "runtime", cgroup_parent=parent)
    proc, address = await _start_agent(state, parent)
    result: dict[str, object] = {"count": opts.count}
    try:
        async with asyncio.timeout(300), grpc.aio.insecure_channel(address) as channel:
            stub = agent_pb2_grpc.NodeAgentStub(channel)
            # The warm-up pod (image import, caches) stays: the floor runs copies of its bundle.
            warm = _pod("warmup")
            await _time_to_running(stub, [warm])
            [c] = await rt.list()
            bundle = rt.bundle_dir(c.id)
            # Each agent sample is followed at once by a bare-runc one: both see the same
            # machine (a shared, noisy one).
            floor = Floor(state, parent)
            singles, bare_singles, many, bare_many = [], [], [], []
            for i in range(opts.rounds):
                pods = [warm, _pod(f"one-{i}")]
                singles.append(await _time_to_running(stub, pods, running=warm))
                bare_singles.append(await floor.start(bundle, [f"floor-1-{i}"]))
                await floor.remove()
                await _remove_all(stub, rt, keep=warm, keep_id=c.id)
            for i in range(opts.many_rounds):
                pods = [_pod(f"many-{i}-{j}") for j in range(opts.count)]
                many.append(await _time_to_running(stub, [warm, *pods], running=warm))
                containers = [s for s in await rt.list() if s.id != c.id]
                monitors = [rt.monitor_pid(s.id) for s in containers]
                monitor_rss = [_rss_kib(p) for p in monitors if p]
                agent_rss = _rss_kib(proc.pid)
                bare_many.append(
                    await floor.start(bundle, [f"floor-n-{i}-{j}" for j in range(opts.count)])
                )
                await floor.remove()
                await _remove_all(stub, rt, keep=warm, keep_id=c.id)
            await _remove_all(stub, rt)
        single_ms = statistics.median(singles) * 1000
        bare_ms = statistics.median(bare_singles) * 1000
        many_ms = statistics.median(many) * 1000
        bare_many_ms = statistics.median(bare_many) * 1000
        result.update(
            {
                "sync_to_running_1_pod_ms": round(single_ms, 1),
                "sync_to_running_1_pod_samples_ms": [round(s * 1000, 1) for s in singles],
                f"sync_to_running_{opts.count}_pods_ms": round(many_ms, 1),
                "bare_runc_create_start_1_ms": round(bare_ms, 1),
                "bare_runc_create_start_1_samples_ms": [round(s * 1000, 1) for s in bare_singles],
                f"bare_runc_create_start_{opts.count}_parallel_ms": round(bare_many_ms, 1),
                "ratio_1_pod_vs_bare_runc": round(single_ms / bare_ms, 2),
                f"ratio_{opts.count}_pods_vs_bare_runc": round(many_ms / bare_many_ms, 2),
                f"agent_rss_mib_with_{opts.count}_containers": round(agent_rss / 1024, 1),
                "monitor_rss_mib_per_container": round(statistics.fmean(monitor_rss) / 1024, 2)
                if monitor_rss
                else None,
                "containers_seen": len(containers),
            }
        )
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        for c in await rt.list():
            await rt.delete(c.id)
        Cgroups().remove(parent)
        shutil.rmtree(state, ignore_errors=True)
    for k, v in result.items():
        print(f"{k}: {v}", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
