"""Scale (issue 17): `pilothouse up --nodes 1 --hollow-nodes N` (real etcd, mutual TLS) for
each size, 30 pods per node; what users would see of a large cluster.

Per size: the control plane's idle CPU with every node heartbeating (10 s); then Deployments of
`--per-deployment` replicas (30 x N pods in all, 10m CPU each, by digest so no registry is
asked) applied at once, timed until every pod is Running; scheduler binds/s (pods seen bound
on a watch: overall, and the best sustained 5 s window); API latency p50/p99 of Apply (a
ConfigMap), Get and List (the ConfigMaps of a small namespace) from one client while the load
runs; control-plane and etcd CPU seconds and peak RSS; etcd's database size; the hollow
process' RSS per node; one lost node: a one-node `pilothouse hollow` process of its own
(joined with a token the bench makes) killed with SIGKILL once its pods run, timed until all
its pods are Running elsewhere. Growth exponents between consecutive sizes:
log(b/a) / log(N_b/N_a) of time, CPU and memory.

The real node (node-1, runc) is cordoned first: every pod goes to hollow nodes. Prints a line
per size and JSON last. Needs root (up's network namespaces).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

from bench.common import ensure_namespace, percentile
from pilothouse import credentials
from pilothouse.cli.cluster import processes
from pilothouse.client import Client
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o
from tests import factories
from tests.fixtures.cluster import LocalClusterRun, missing_for_local_cluster

IMAGE = "hollow/pause@sha256:" + "0" * 64
NAMESPACE = "scale"
PROBE_NAMESPACE = "scale-probe"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def client_of(run: LocalClusterRun, *, timeout: float = 60.0) -> Client:
    info = run.cluster_info()
    admin = run.admin()
    assert admin is not None
    return Client(
        info.controlplane,
        credentials=admin.channel_credentials(),
        options=credentials.channel_options(),
        timeout=timeout,
    )


def pid_of(run: LocalClusterRun, child: str) -> int:
    record = processes.read(run.layout.pids / f"{child}.pid")
    assert record is not None, f"no pid file for {child}"
    return record.pid


class Probe:
    """Apply/Get/List from one client in a loop while the load runs."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.samples: dict[str, list[float]] = {"apply": [], "get": [], "list": []}

    async def run(self) -> None:
        n = 0
        while True:
            cm = o.ConfigMap()
            cm.metadata.name, cm.metadata.namespace = f"probe-{n % 20}", PROBE_NAMESPACE
            cm.data["n"] = str(n)
            name = cm.metadata.name
            for kind, call in (
                ("apply", self.client.apply(cm)),
                ("get", self.client.get(Kind.CONFIGMAP, name, namespace=PROBE_NAMESPACE)),
                ("list", self.client.list(Kind.CONFIGMAP, namespace=PROBE_NAMESPACE)),
            ):
                begun = time.perf_counter()
                await call
                self.samples[kind].append(time.perf_counter() - begun)
            n += 1
            await asyncio.sleep(0.02)

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            k: {
                "n": len(v),
                "p50_ms": round(percentile(v, 50) * 1000, 1) if v else 0.0,
                "p99_ms": round(percentile(v, 99) * 1000, 1) if v else 0.0,
            }
            for k, v in self.samples.items()
        }


async def watch_pods(client: Client, state: dict[str, object]) -> None:
    """Time of each pod's first bind and first Running, by uid."""
    bound: dict[str, float] = state["bound"]  # type: ignore[assignment]
    running: dict[str, float] = state["running"]  # type: ignore[assignment]
    nodes: dict[str, str] = state["nodes"]  # type: ignore[assignment]
    async for change in client.watch(Kind.POD, namespace=NAMESPACE):
        pod = change.object
        if pod is None:
            continue
        uid = pod.metadata.uid
        if change.type.name == "DELETED":
            running.pop(uid, None)
            nodes.pop(uid, None)
            continue
        now = time.monotonic()
        if pod.spec.node_name:
            nodes[uid] = pod.spec.node_name
            bound.setdefault(uid, now)
        if pod.status.phase == "Running":
            running.setdefault(uid, now)
        else:
            running.pop(uid, None)


def best_rate(times: list[float], window: float = 5.0) -> float:
    times = sorted(times)
    best, j = 0, 0
    for i in range(len(times)):
        while times[i] - times[j] > window:
            j += 1
        best = max(best, i - j + 1)
    return best / window


async def until(check, *, within: float, what: str) -> bool:  # type: ignore[no-untyped-def]
    """Whether `check` came true within `within` s (a miss is reported, not fatal)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            print(f"timed out after {within:.0f} s: {what}", flush=True)
            return False
        await asyncio.sleep(0.1)
    return True


def lost_node(run: LocalClusterRun, root: Path) -> subprocess.Popen[bytes]:
    """A one-node hollow process of its own (its loss is a SIGKILL)."""
    made = run.cli("token", "create", "--ttl", "30m")
    token = made.stdout.strip().split()[-1]
    token_file = root / "lost-token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    info = json.loads(run.layout.cluster_file.read_text())
    creds = run.credentials()
    assert creds is not None
    join = (run.layout.controlplane / "join.addr").read_text().strip()
    node_ip = run.cluster_info().controlplane.rpartition(":")[0]
    argv = [sys.executable, "-m", "nodeagent.hollow", "--nodes", "1", "--name-prefix", "lost-"]
    argv += ["--server", info["controlplane"], "--join-server", join]
    argv += ["--token-file", str(token_file), "--ca-cert-hash", creds.ca_cert_hash]
    argv += ["--state-dir", str(root / "lost"), "--node-ip", node_ip]
    return subprocess.Popen(
        argv,
        stdout=(root / "lost.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def one_size(
    nodes: int, *, per_node: int, per_deployment: int, within: float
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

            def replaced() -> bool:
                gone = not (on_lost & set(running))
                elsewhere = sum(1 for u in running if pod_nodes.get(u) != "lost-0001")
                return gone and elsewhere >= total

            replace_s: float | None = None
            if finished and await until(replaced, within=120, what="the lost node's pods"):
                replace_s = time.monotonic() - killed
            watcher.cancel()
        log = run.layout.log("controlplane")
        not_ready = log.read_text(errors="replace").count('"node.not_ready"') if log.exists() else 0
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
            "nodes_not_ready_events": not_ready,
        }
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
    args = parser.parse_args()
    if reason := missing_for_local_cluster():
        raise SystemExit(f"cannot run `pilothouse up` here: {reason}")
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        results.append(
            await one_size(
                size,
                per_node=args.pods_per_node,
                per_deployment=args.per_deployment,
                within=args.within,
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
