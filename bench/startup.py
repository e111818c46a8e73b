"""Apply -> all Running, on a real cluster, beside the bare-runc floor in the same run (as root).

The cluster is what users run (`--cluster up`, the default): `pilothouse up --nodes 3`, with
mutual TLS, CNI pod networks and each node in a network namespace of its own
(bench/upcluster.py), busybox pulled from up's registry. `--cluster processes` is the older,
lighter set-up: a control plane and 3 agents as plain processes on the host's network,
plaintext, no pod network (`--network none`), the test image imported. The JSON names the
configuration and what it omits. Both warm up with one pod per node first.
For 1, 10 and 50 replicas of a busybox sleeper:
- all Running: from just before Apply until the API's watch has shown every pod Running;
- per-pod startup: the watch first showing the pod (created) -> first showing it Running
  (creationTimestamp has whole-second resolution), p50/p99
  over every pod of every round of that count;
and, in the same run, bare `runc create` + `runc start` of the same count of busybox bundles
(shared read-only rootfs, no monitor), one after another and all at once (see bench/common.py).
The Deployment is deleted, and every container gone, between rounds. The last line is JSON.

Goals (issue #4): p99 pod startup <= 0.5 s; 10 replicas all Running <= 0.4 s; 50 replicas
all Running within 2x the runc floor for 50 (compared with the faster of the two floors).

Usage: python3 bench/startup.py [--counts 1,10,50] [--rounds 3] [--cluster up|processes]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    PodWatch,
    ensure_namespace,
    ms,
    percentile,
    require_root,
    runc_floor,
    running_cluster,
    wait_no_containers,
)
from bench.upcluster import CONFIGURATION, UpCluster, up_cluster
from pilothouse.kinds import Kind
from tests.fixtures.agents import Cluster, deployment

PROCESSES = {
    "cluster": "control plane + 3 agents as processes (tests.fixtures.agents)",
    "mutual_tls": False,
    "pod_network": "none (each container a network namespace of its own, loopback only)",
    "nodes_in": "the host's network",
    "etcd": "embedded, one member",
    "images": "the test image imported on each node",
    "omitted": ["mutual TLS", "CNI pod networking", "nodes in network namespaces"],
}

NAMESPACE = "bench-startup"


async def one_round(
    cluster: Cluster | UpCluster, name: str, replicas: int
) -> tuple[float, list[float]]:
    """(apply -> all Running, per-pod startup latencies), then the Deployment removed."""
    async with cluster.client() as client:
        await ensure_namespace(client, NAMESPACE)
        async with PodWatch(client, NAMESPACE) as watch:
            manifest = deployment(name, namespace=NAMESPACE, replicas=replicas)
            t0 = time.time()
            await client.apply(manifest)
            seen = await watch.wait_running(replicas, owner=name)
            all_running = max(seen.values()) - t0
            latencies = watch.startup_latencies(list(seen))
        await client.delete(Kind.DEPLOYMENT, name, namespace=NAMESPACE)
        await wait_no_containers(cluster)
    return all_running, latencies


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,10,50")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy the logs here")
    parser.add_argument("--cluster", choices=("up", "processes"), default="up")
    opts = parser.parse_args()
    require_root()
    counts = [int(c) for c in opts.counts.split(",")]
    configuration = CONFIGURATION if opts.cluster == "up" else PROCESSES
    result: dict[str, object] = {
        "nodes": 3,
        "rounds": opts.rounds,
        "configuration": configuration,
    }
    print(f"configuration: {configuration}", file=sys.stderr, flush=True)
    cluster_of = (
        up_cluster(nodes=3)
        if opts.cluster == "up"
        else running_cluster(agents=3, keep_logs=opts.keep_logs)
    )
    async with asyncio.timeout(1200), cluster_of as cluster:
        await one_round(cluster, "warmup", 3)  # one pod per node: image pulls, caches
        for count in counts:
            totals, latencies = [], []
            for i in range(opts.rounds):
                total, lat = await one_round(cluster, f"s{count}-{i}", count)
                totals.append(total)
                latencies.extend(lat)
            floor = await runc_floor(count)
            best_floor = min(floor.sequential, floor.parallel)
            result[f"replicas_{count}"] = {
                "all_running_ms_median": ms(statistics.median(totals)),
                "all_running_ms_samples": [ms(t) for t in totals],
                "pod_startup_p50_ms": ms(percentile(latencies, 50)),
                "pod_startup_p99_ms": ms(percentile(latencies, 99)),
                "pods_measured": len(latencies),
                "runc_floor_sequential_ms": ms(floor.sequential),
                "runc_floor_parallel_ms": ms(floor.parallel),
                "ratio_to_faster_floor": round(statistics.median(totals) / best_floor, 2),
            }
            print(f"{count}: {result[f'replicas_{count}']}", file=sys.stderr, flush=True)
    every_p99 = [v["pod_startup_p99_ms"] for k, v in result.items() if k.startswith("replicas_")]  # type: ignore[index]
    result["goals"] = {
        "p99_pod_startup_le_500ms": max(every_p99) <= 500,
        "ten_all_running_le_400ms": result.get("replicas_10", {}).get(  # type: ignore[union-attr]
            "all_running_ms_median", 1e9
        )
        <= 400,
        "fifty_within_2x_floor": result.get("replicas_50", {}).get(  # type: ignore[union-attr]
            "ratio_to_faster_floor", 1e9
        )
        <= 2,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
