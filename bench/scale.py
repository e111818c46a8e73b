"""Scale (issue 17): `pilothouse up --nodes 1 --hollow-nodes N` (real etcd, mutual TLS) for
each size, 30 pods per node; what users would see of a large cluster.

Per size: the control plane's idle CPU with every node heartbeating (10 s); then Deployments of
`--per-deployment` replicas (30 x N pods in all, 10m CPU each, by digest so no registry is
asked) applied at once, timed until every pod is Running; scheduler binds/s (pods seen bound
on a watch: overall, and the best sustained 5 s window); API latency p50/p99 of Apply (a
ConfigMap), Get and List (the ConfigMaps of a small namespace) from one client while the load
runs; control-plane and etcd CPU seconds and peak RSS; etcd's database size; the hollow
process' RSS per node; one lost node: a one-node `pilothouse hollow` process of its own
(joined with a token the bench makes) killed with SIGKILL once its pods run, timed until
replacements of all its pods are Running elsewhere (the lost pods themselves stay Terminating
until the pod GC removes them, as in Kubernetes); at the largest size (`--restart-sizes`) the
control plane restarted under the load's pods: seconds to serving and to reconciling, pods
moved or replaced (should be 0) and nodes logged NotReady after it (should be 0). Growth
exponents between consecutive sizes: log(b/a) / log(N_b/N_a) of time, CPU and memory.

The real node (node-1, runc) is cordoned first: every pod goes to hollow nodes. Prints a line
per size and JSON last. Needs root (up's network namespaces).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ensure_namespace
from bench.scalekit import (
    IMAGE,
    NAMESPACE,
    PROBE_NAMESPACE,
    Probe,
    best_rate,
    children,
    client_of,
    cpu_seconds,
    logged_after,
    lost_node,
    pid_of,
    restart,
    status_kib,
    until,
    watch_pods,
)
from pilothouse.kinds import Kind
from tests import factories
from tests.fixtures.cluster import LocalClusterRun, missing_for_local_cluster


async def one_size(
    nodes: int, *, per_node: int, per_deployment: int, within: float, restart_too: bool
) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="ph-scale-"))
    run = LocalClusterRun(root)
    lost: subprocess.Popen[bytes] | None = None
    try:
        started_up = time.monotonic()
        done = await asyncio.to_thread(
            run.run, "up", "-d", "--nodes", "1", "--hollow-nodes", str(nodes), timeout=900
        )
        if done.returncode != 0:
            raise SystemExit(f"up failed:\n{done.stderr[-3000:]}")
        up_s = time.monotonic() - started_up
        cp = pid_of(run, "controlplane")
        etcd = next(iter(children(cp)), None)
        hollow = pid_of(run, "hollow")
        cordon = run.cli("cordon", "node-1")
        assert cordon.returncode == 0, cordon.stderr
        lost = lost_node(run, root)
        async with client_of(run) as client:
            await ensure_namespace(client, NAMESPACE)
            await ensure_namespace(client, PROBE_NAMESPACE)

            async def lost_ready() -> bool:
                got = [
                    n
                    for n in (await client.list(Kind.NODE)).items
                    if n.metadata.name == "lost-0001"
                ]
                return bool(got) and any(
                    c.type == "Ready" and c.status == "True" for c in got[0].status.conditions
                )

            deadline = time.monotonic() + 60
            while not await lost_ready():
                if time.monotonic() > deadline:
                    raise SystemExit("the lost node never became Ready")
                await asyncio.sleep(0.2)
            # Idle: every node heartbeating, nothing else.
            cpu0, t0 = cpu_seconds(cp), time.monotonic()
            await asyncio.sleep(10)
            idle = (cpu_seconds(cp) - cpu0) / (time.monotonic() - t0)
            hollow_rss = status_kib(hollow, "VmRSS")

            total = nodes * per_node
            state: dict[str, object] = {"bound": {}, "running": {}, "nodes": {}}
            watcher = asyncio.create_task(watch_pods(client, state))
            probe = Probe(client)
            prober = asyncio.create_task(probe.run())
            await asyncio.sleep(1)  # the watch has started
            cp_cpu0 = cpu_seconds(cp)
            etcd_cpu0 = cpu_seconds(etcd) if etcd else 0.0
            small = factories.container(image=IMAGE, cpu="10m", memory="16Mi")
            start = time.monotonic()
            left, index = total, 0
            while left > 0:
                count = min(per_deployment, left)
                await client.apply(
                    factories.deployment(
                        name=f"d{index}", namespace=NAMESPACE, replicas=count, containers=[small]
                    )
                )
                left -= count
                index += 1
            applied_s = time.monotonic() - start
            running: dict[str, float] = state["running"]  # type: ignore[assignment]
            finished = await until(
                lambda: len(running) >= total, within=within, what="all pods Running"
            )
            all_running_s = time.monotonic() - start if finished else None
            running_at_end = len(running)
            prober.cancel()
            bound_times = list(state["bound"].values())  # type: ignore[union-attr]
            cp_cpu = cpu_seconds(cp) - cp_cpu0
            etcd_cpu = (cpu_seconds(etcd) - etcd_cpu0) if etcd else 0.0
            binds_overall = len(bound_times) / max(max(bound_times, default=start) - start, 1e-6)
            # List of every pod, once, at the end of the load.
            t = time.perf_counter()
            listed = await client.list(Kind.POD, namespace=NAMESPACE)
            list_all_s = time.perf_counter() - t
            # One node lost: the pods on lost-0001 Running elsewhere.
            pod_nodes: dict[str, str] = state["nodes"]  # type: ignore[assignment]
            on_lost = {u for u, n in pod_nodes.items() if n == "lost-0001"}
            assert lost is not None
            lost.send_signal(signal.SIGKILL)
            lost.wait()
            killed = time.monotonic()
            killed_wall = time.time()

            def replaced() -> bool:  # its pods' replacements Running (they stay Terminating)
                return sum(1 for u in running if pod_nodes.get(u) != "lost-0001") >= total

            replace_s: float | None = None
            if finished and await until(replaced, within=120, what="the lost node's pods"):
                replace_s = time.monotonic() - killed
            watcher.cancel()
        log = run.layout.log("controlplane")
        text = log.read_text(errors="replace") if log.exists() else ""
        not_ready = text.count('"node.not_ready"')
        db = next(iter(run.layout.controlplane.glob("**/member/snap/db")), Path("/nonexistent"))
        result = {
            "nodes": nodes + 1,
            "hollow_nodes": nodes,
            "pods": total,
            "up_s": round(up_s, 1),
            "apply_calls_s": round(applied_s, 2),
            "all_running_s": round(all_running_s, 2) if all_running_s else None,
            "running_at_end": running_at_end,
            "binds_per_s_overall": round(binds_overall, 1),
            "binds_per_s_best_5s": round(best_rate(bound_times), 1),
            "api_during_load": probe.summary(),
            "list_all_pods_s": round(list_all_s, 3),
            "list_all_pods_n": len(listed.items),
            "controlplane_cpu_s": round(cp_cpu, 1),
            "controlplane_peak_rss_mib": round(status_kib(cp, "VmHWM") / 1024, 1),
            "etcd_cpu_s": round(etcd_cpu, 1),
            "etcd_peak_rss_mib": round(status_kib(etcd, "VmHWM") / 1024, 1) if etcd else 0,
            "etcd_db_mib": round(db.stat().st_size / 2**20, 1) if db.exists() else None,
            "idle_controlplane_cpu_pct": round(idle * 100, 1),
            "hollow_rss_mib": round(hollow_rss / 1024, 1),
            "hollow_kib_per_node_idle": round(hollow_rss / nodes, 1),
            "hollow_rss_loaded_mib": round(status_kib(hollow, "VmRSS") / 1024, 1),
            "lost_node_pods": len(on_lost),
            "lost_node_replaced_s": round(replace_s, 2) if replace_s else None,
            # Of that: until the control plane logged it NotReady.
            "lost_node_not_ready_s": logged_after(text, "node.not_ready", "lost-0001", killed_wall),
            "nodes_not_ready_events": not_ready,
        }
        if restart_too and finished:  # last: the control plane's figures are its first run's
            result["restart"] = await restart(run, namespace=NAMESPACE, image=IMAGE)
        print(json.dumps(result), flush=True)
        return result
    finally:
        if lost is not None and lost.poll() is None:
            lost.kill()
            lost.wait()
        try:
            await asyncio.to_thread(run.down)
        finally:
            await asyncio.to_thread(run.force_clean)
            shutil.rmtree(root, ignore_errors=True)


def _growth(a: dict[str, object], b: dict[str, object], key: str) -> float | None:
    x, y = a[key], b[key]
    if not x or not y:
        return None
    ratio = math.log(b["hollow_nodes"] / a["hollow_nodes"])  # type: ignore[operator]
    return round(math.log(y / x) / ratio, 2)  # type: ignore[operator]


def exponents(results: list[dict[str, object]]) -> list[dict[str, object]]:
    keys = ("all_running_s", "controlplane_cpu_s", "controlplane_peak_rss_mib", "etcd_db_mib")
    keys += ("idle_controlplane_cpu_pct",)
    return [
        {"from": a["hollow_nodes"], "to": b["hollow_nodes"]} | {k: _growth(a, b, k) for k in keys}
        for a, b in itertools.pairwise(results)
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,300,1000", help="hollow node counts")
    parser.add_argument("--pods-per-node", type=int, default=30)
    parser.add_argument("--per-deployment", type=int, default=500)
    parser.add_argument("--within", type=float, default=1800, help="s allowed for all Running")
    parser.add_argument(
        "--restart-sizes",
        default="",
        help="sizes whose control plane is restarted (default: largest)",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    restarts = {int(s) for s in args.restart_sizes.split(",") if s} or {max(sizes)}
    if reason := missing_for_local_cluster():
        raise SystemExit(f"cannot run `pilothouse up` here: {reason}")
    results = []
    for size in sizes:
        results.append(
            await one_size(
                size,
                per_node=args.pods_per_node,
                per_deployment=args.per_deployment,
                within=args.within,
                restart_too=size in restarts,
            )
        )
    print(
        json.dumps(
            {
                "benchmark": "scale",
                "configuration": "pilothouse up --nodes 1 (cordoned) --hollow-nodes N: "
                "embedded etcd, mutual TLS; hollow pods Running at once",
                "pods_per_node": args.pods_per_node,
                "load_avg": os.getloadavg(),
                "sizes": results,
                "growth_exponents": exponents(results),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
