"""Agent start latency and memory, beside bare runc on the same bundle, in one run (as root).

Measures, through the real agent process (`python3 -m nodeagent`, runc runtime, the busybox
test image imported from <state-dir>/images/import/):
- SyncPods -> Running (as WatchPods reports it) for 1 pod (several rounds) and for 20 pods;
- the agent's RSS with 20 containers running, and each monitor's (conmon) RSS;
and, in the same run, `runc create` + `runc start` of a copy of the agent's own bundle (same
config.json and overlay rootfs, its own id and cgroup): one at a time, and 20 at once.
The last line is JSON.

Usage: python3 bench/runtime.py [--count 20] [--rounds 5]
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
    stub: agent_pb2_grpc.NodeAgentStub, pods: list[objects_pb2.Pod]
) -> float:
    """Seconds from SyncPods until WatchPods shows every pod Running and ready."""
    t0 = time.perf_counter()
    watch = stub.WatchPods(agent_pb2.WatchPodsRequest())
    await stub.SyncPods(agent_pb2.SyncPodsRequest(pods=pods))
    want = {p.metadata.name for p in pods}
    up: set[str] = set()
    async for ev in watch:
        if ev.pod.status.phase == "Running" and ev.pod.status.container_statuses[0].ready:
            up.add(ev.pod.metadata.name)
        if want <= up:
            watch.cancel()
            return time.perf_counter() - t0
    raise SystemExit("WatchPods ended")


async def _remove_all(stub: agent_pb2_grpc.NodeAgentStub, rt: RuncRuntime) -> None:
    await stub.SyncPods(agent_pb2.SyncPodsRequest())
    for _ in range(600):
        if not await rt.list():
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


async def _bare_floor(work: Path, bundle: Path, parent: str, count: int) -> dict[str, float]:
    """runc create + start of copies of the agent's bundle: one by one, then `count` at once."""
    runc = shutil.which("runc") or "runc"
    root = work / "floor-runc"
    config = json.loads((bundle / "config.json").read_text())
    config["root"]["path"] = str((bundle / config["root"]["path"]).resolve())

    def prepare(cid: str) -> Path:
        b = work / "floor" / cid
        b.mkdir(parents=True)
        c = json.loads(json.dumps(config))
        c["linux"]["cgroupsPath"] = f"{parent}/floor/{cid}"
        c["hostname"] = cid
        (b / "config.json").write_text(json.dumps(c))
        return b

    async def one(cid: str, b: Path) -> float:
        t0 = time.perf_counter()
        err = b / "runc.err"
        await _runc(runc, "--root", str(root), "create", "--bundle", str(b), cid, errors=err)
        await _runc(runc, "--root", str(root), "start", cid, errors=err)
        return time.perf_counter() - t0

    singles = []
    for i in range(5):
        cid = f"floor-1-{i}"
        singles.append(await one(cid, prepare(cid)))
    ids = [f"floor-n-{i}" for i in range(count)]
    bundles = [prepare(cid) for cid in ids]
    t0 = time.perf_counter()
    await asyncio.gather(*(one(cid, b) for cid, b in zip(ids, bundles, strict=True)))
    parallel = time.perf_counter() - t0
    for cid in [f"floor-1-{i}" for i in range(5)] + ids:
        err = work / "floor" / cid / "runc.err"
        await _runc(runc, "--root", str(root), "delete", "--force", cid, errors=err)
    return {"single_ms": statistics.median(singles) * 1000, "parallel_ms": parallel * 1000}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
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
            await _time_to_running(stub, [_pod("warmup")])  # image import, caches
            await _remove_all(stub, rt)
            singles = []
            for i in range(opts.rounds):
                singles.append(await _time_to_running(stub, [_pod(f"one-{i}")]))
                if i < opts.rounds - 1:
                    await _remove_all(stub, rt)
            # The floor runs beside the agent's last single pod, on a copy of its bundle.
            [c] = await rt.list()
            floor = await _bare_floor(state, rt.bundle_dir(c.id), parent, opts.count)
            await _remove_all(stub, rt)
            many = await _time_to_running(stub, [_pod(f"many-{i}") for i in range(opts.count)])
            containers = await rt.list()
            monitors = [rt.monitor_pid(c.id) for c in containers]
            monitor_rss = [_rss_kib(p) for p in monitors if p]
            agent_rss = _rss_kib(proc.pid)
            await _remove_all(stub, rt)
        single_ms = statistics.median(singles) * 1000
        result.update(
            {
                "sync_to_running_1_pod_ms": round(single_ms, 1),
                "sync_to_running_1_pod_samples_ms": [round(s * 1000, 1) for s in singles],
                f"sync_to_running_{opts.count}_pods_ms": round(many * 1000, 1),
                "bare_runc_create_start_1_ms": round(floor["single_ms"], 1),
                f"bare_runc_create_start_{opts.count}_parallel_ms": round(floor["parallel_ms"], 1),
                "ratio_1_pod_vs_bare_runc": round(single_ms / floor["single_ms"], 2),
                f"ratio_{opts.count}_pods_vs_bare_runc": round(
                    many * 1000 / floor["parallel_ms"], 2
                ),
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
