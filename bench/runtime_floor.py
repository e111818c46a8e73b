"""The runtime floor: bare runc start times beside RuncRuntime's, and the monitor's memory.

Starts (as root) N busybox containers each way, interleaved so that machine noise and the
number of running containers weigh the same on every way:
- `runc create` + `runc start` of a prepared bundle (the floor the agent is compared with);
- `runc run -d` of the same kind of bundle;
- `RuncRuntime.create` + `start` (bundle writing + conmon + runc create + runc start);
then reports the RSS and PSS of the conmon monitors per container. The last line is JSON.

Usage: python3 bench/runtime_floor.py [--count 20]
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

from nodeagent.runtime import ContainerSpec
from nodeagent.runtime.cgroups import Cgroups
from nodeagent.runtime.ocispec import NodeSettings, build
from nodeagent.runtime.runc import RuncRuntime
from tests.fixtures.runtime import make_busybox_rootfs

SLEEP = ("/bin/sleep", "1000")


def _ms(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {
        "p50_ms": round(statistics.median(s) * 1000, 2),
        "p90_ms": round(s[max(0, int(len(s) * 0.9) - 1)] * 1000, 2),
        "mean_ms": round(statistics.fmean(s) * 1000, 2),
    }


def _runc(root: Path, *args: str) -> None:
    # The container inherits runc's stdio: a pipe would stay open as long as it runs.
    with tempfile.TemporaryFile() as err:
        rc = subprocess.call(
            ["runc", "--root", str(root), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        if rc != 0:
            err.seek(0)
            raise SystemExit(f"runc {' '.join(args)} failed: {err.read().decode().strip()}")


def _memory_kib(pid: int) -> tuple[int, int]:
    rss = pss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


class Bench:
    def __init__(self, work: Path, rootfs: Path, parent: str) -> None:
        self.work, self.rootfs = work, rootfs
        self.settings = NodeSettings.from_host(cgroup_parent=parent)
        self.root = work / "runc"
        self.bare: list[str] = []
        self.rt = RuncRuntime(work / "agent-state", cgroup_parent=parent)
        self.rt_ids: list[str] = []
        self.times: dict[str, list[float]] = {"create+start": [], "run-d": [], "runtime": []}

    def _bundle(self, cid: str) -> Path:
        bundle = self.work / cid
        bundle.mkdir()
        spec = ContainerSpec(id=cid, hostname=cid, rootfs=str(self.rootfs), args=SLEEP)
        config = build(spec, settings=self.settings, rootfs=str(self.rootfs))
        (bundle / "config.json").write_text(json.dumps(config))
        return bundle

    def bare_once(self, i: int, mode: str) -> None:
        cid = f"floor-{mode}-{i}"
        bundle = self._bundle(cid)  # prepared ahead: the floor is runc's own work
        self.bare.append(cid)
        t0 = time.perf_counter()
        if mode == "create+start":
            _runc(self.root, "create", "--bundle", str(bundle), cid)
            _runc(self.root, "start", cid)
        else:
            _runc(self.root, "run", "-d", "--bundle", str(bundle), cid)
        self.times[mode].append(time.perf_counter() - t0)

    async def runtime_once(self, i: int) -> None:
        cid = f"rt-{i}"
        spec = ContainerSpec(
            id=cid,
            hostname=cid,
            rootfs=str(self.rootfs),
            args=SLEEP,
            log_path=str(self.work / "logs" / f"{cid}.log"),
        )
        self.rt_ids.append(cid)
        t0 = time.perf_counter()
        await self.rt.create(spec)
        await self.rt.start(cid)
        self.times["runtime"].append(time.perf_counter() - t0)

    def monitor_memory(self) -> dict[str, float]:
        rss = pss = 0
        for cid in self.rt_ids:
            pid = self.rt.monitor_pid(cid)
            assert pid, f"container {cid} has no monitor"
            r, p = _memory_kib(pid)
            rss, pss = rss + r, pss + p
        n = len(self.rt_ids)
        return {
            "monitor_rss_mib_per_container": round(rss / n / 1024, 2),
            "monitor_pss_mib_per_container": round(pss / n / 1024, 2),
        }

    async def cleanup(self) -> None:
        for cid in self.bare:
            _runc(self.root, "delete", "--force", cid)
        for cid in self.rt_ids:
            await self.rt.delete(cid)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    count = parser.parse_args().count
    if os.geteuid() != 0:
        raise SystemExit("run as root: containers need namespaces and cgroups")
    parent = f"/pilothouse-bench-{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="ph-floor-"))
    bench = Bench(work, make_busybox_rootfs(work / "rootfs"), parent)
    try:
        for i in range(count):
            bench.bare_once(i, "create+start")
            bench.bare_once(i, "run-d")
            await bench.runtime_once(i)
        memory = bench.monitor_memory()
    finally:
        await bench.cleanup()
        Cgroups().remove(parent)
        shutil.rmtree(work, ignore_errors=True)
    t = bench.times
    result = {
        "count": count,
        "runc_create_start": _ms(t["create+start"]),
        "runc_run_d": _ms(t["run-d"]),
        "runtime_create_start": _ms(t["runtime"]),
        "runtime_over_runc_p50": round(
            statistics.median(t["runtime"]) / statistics.median(t["create+start"]), 2
        ),
        **memory,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
