"""Typed `apply` -> N Running, beside Docker Swarm and Podman from Debian, in one run (as root).

What a person types, timed from just before the command starts until every replica runs:
- Pilothouse: `pilothouse apply -f deploy.yaml` on `pilothouse up --nodes 3` (mutual TLS, CNI,
  nodes in network namespaces, busybox from up's registry; bench/upcluster.py); "Running" is the
  API's watch showing every pod Running (opened before the command is typed);
- Docker Swarm (when `dockerd` is installed): `docker service create -d --replicas N` on a
  one-node swarm of a dockerd this script starts with private directories and socket, and
  stops by its PID afterwards; "Running" is the Engine API listing N tasks `running`;
- Podman (when installed): no orchestrator, so N `podman run -d` started at once by one typed
  shell line (`for i in …; do podman run -d … & done; wait`), private storage; "Running" is
  `podman ps` listing N containers once the line returns.
Every stack runs the same busybox sleeper (the tests' SLEEPER script; Swarm and Podman from a
rootfs of the host's busybox imported as an image). Rounds are interleaved (for each count and
round: Pilothouse, Swarm, Podman), so every stack meets the same machine load; everything is
removed between rounds. A stack whose programs are missing is skipped with a note.

Memory, each stack idle (no replicas) after one warm-up round: RSS and PSS summed over the
stack's processes (/proc/PID/smaps_rollup), with each process's share: Pilothouse the `up`
supervisor and its children (control plane, etcd, registry, agents); Swarm dockerd and its
containerd; Podman has no daemon (0).

Usage: python3 bench/peers.py [--counts 1,10,50] [--rounds 3] [--stacks pilothouse,swarm,podman]
The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PodWatch, ensure_namespace, require_root, wait_no_containers
from bench.peerstacks import descendants, memory, peers
from bench.upcluster import CONFIGURATION, UpCluster, up_cluster
from pilothouse.kinds import Kind
from tests.fixtures.agents import deployment_text
from tests.fixtures.cluster import PILOTHOUSE

NAMESPACE = "bench-peers"


# --- Pilothouse ---


class Pilothouse:
    name = "pilothouse"

    def __init__(self, cluster: UpCluster, work: Path) -> None:
        self.cluster = cluster
        self.work = work

    def pids(self) -> list[int]:
        record = self.cluster.run.supervisor()
        return descendants(record.pid) if record else []

    async def start_replicas(self, name: str, replicas: int) -> float:
        manifest = self.work / f"{name}.yaml"
        manifest.write_text(deployment_text(name, namespace=NAMESPACE, replicas=replicas))
        async with self.cluster.client() as client, PodWatch(client, NAMESPACE) as watch:
            started = time.time()
            typed = await asyncio.create_subprocess_exec(
                *PILOTHOUSE,
                "apply",
                "-f",
                str(manifest),
                env=self.cluster.run.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            _, err = await typed.communicate()
            if typed.returncode != 0:
                raise SystemExit(f"pilothouse apply failed: {err.decode()[-400:]}")
            seen = await watch.wait_running(replicas, owner=name)
            return max(seen.values()) - started

    async def remove(self, name: str) -> None:
        async with self.cluster.client() as client:
            await client.delete(Kind.DEPLOYMENT, name, namespace=NAMESPACE)
        await wait_no_containers(self.cluster)


@contextlib.asynccontextmanager
async def pilothouse_stack(wanted: list[str], work: Path) -> AsyncIterator[list[object]]:
    if "pilothouse" not in wanted:
        yield []
        return
    async with up_cluster(nodes=3) as cluster:
        async with cluster.client() as client:
            await ensure_namespace(client, NAMESPACE)
        yield [Pilothouse(cluster, work)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,10,50")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stacks", default="pilothouse,swarm,podman")
    opts = parser.parse_args()
    require_root()
    counts = [int(c) for c in opts.counts.split(",")]
    wanted = opts.stacks.split(",")
    work = Path(tempfile.mkdtemp(prefix="ph-peers-"))
    notes: dict[str, str] = {}
    result: dict[str, object] = {"rounds": opts.rounds, "pilothouse": CONFIGURATION}
    result["load_before"] = os.getloadavg()
    try:
        async with asyncio.timeout(3000), pilothouse_stack(wanted, work) as ours:
            with peers(wanted, work, notes) as others:
                stacks = [*ours, *others]
                for stack in stacks:  # warm-up: images, caches
                    await stack.start_replicas("warmup", 3)  # type: ignore[attr-defined]
                    await stack.remove("warmup")  # type: ignore[attr-defined]
                await asyncio.sleep(5)  # settle before measuring idle memory
                idle = {s.name: memory(s.pids()) for s in stacks}  # type: ignore[attr-defined]
                for name, mem in idle.items():
                    print(
                        f"{name} idle: RSS {mem['rss_mib']} MiB, PSS {mem['pss_mib']} MiB",
                        file=sys.stderr,
                        flush=True,
                    )
                times: dict[str, dict[int, list[float]]] = {s.name: {} for s in stacks}  # type: ignore[attr-defined]
                for count in counts:
                    for i in range(opts.rounds):
                        for stack in stacks:
                            name = f"p{count}-{i}"
                            took = await stack.start_replicas(name, count)  # type: ignore[attr-defined]
                            await stack.remove(name)  # type: ignore[attr-defined]
                            times[stack.name].setdefault(count, []).append(took)  # type: ignore[attr-defined]
                            print(
                                f"{stack.name} {count}: {took:.2f} s",
                                file=sys.stderr,  # type: ignore[attr-defined]
                                flush=True,
                            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["load_after"] = os.getloadavg()
    result["notes"] = notes
    result["stacks"] = {
        name: {
            "idle_memory": idle[name],
            **{
                f"replicas_{c}": {
                    "median_s": round(statistics.median(v), 3),
                    "samples_s": [round(x, 3) for x in v],
                }
                for c, v in by_count.items()
            },
        }
        for name, by_count in times.items()
    }
    if "pilothouse" in times:
        ours_median = {c: statistics.median(v) for c, v in times["pilothouse"].items()}
        result["speedup_over"] = {
            name: {
                f"replicas_{c}": round(statistics.median(v) / ours_median[c], 2)
                for c, v in by_count.items()
            }
            for name, by_count in times.items()
            if name != "pilothouse"
        }
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
