"""Watching a cluster (issue 16) on real processes (control plane with embedded etcd, one runc
agent sampling usage every second), through the `pilothouse` command and the metrics ports:

- `top pods` shows a pod holding 100 MiB (in a memory-backed emptyDir) at about 100 MiB
  (within 15 %) and a busy loop limited to 200m at about 200m; `--containers`, `-A` and
  `top nodes` show their columns; `describe node` shows the pods' usage;
- every metrics endpoint (the control plane's and the agent's) parses with prometheus_client's
  own parser, and each metric issue 16 lists is there with the samples its work produced;
- a HorizontalPodAutoscaler on a Deployment under CPU load scales it up within two sync
  periods of the load being measured, and back down once the load is gone and the (shortened)
  scale-down window has passed; `get hpa` shows its target; an HPA on a Pod is refused in one
  line; `get events --watch` prints the HPA's rescale event as it happens.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pilothouse import manifests
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o
from tests.fixtures.agents import ClusterFactory, eventually

pytestmark = [pytest.mark.slow, pytest.mark.root]

SYNC = 3.0
WINDOW = 12


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pod(name: str, script: str) -> o.Pod:
    pod = o.Pod()
    pod.metadata.name, pod.metadata.namespace = name, "default"
    pod.spec.termination_grace_period_seconds = 1
    c = pod.spec.containers.add(name="main", image="busybox:stable")
    c.command[:] = ["sh", "-c", script]
    return pod


def _load(replicas: int, *, busy: bool) -> o.Deployment:
    script = "while :; do :; done" if busy else "trap 'exit 0' TERM; sleep 100000 & wait"
    text = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: load}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: load}}}}
  template:
    metadata: {{labels: {{app: load}}}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: main
        image: busybox:stable
        command: ["sh", "-c", "{script}"]
        resources: {{requests: {{cpu: 100m}}, limits: {{cpu: 300m}}}}
"""
    documents, problems = manifests.parse(text, source="load.yaml")
    assert not problems, problems
    return documents[0].message  # type: ignore[return-value]


HPA = f"""
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: load}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: load}}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 50}}}}
  behavior:
    scaleDown: {{stabilizationWindowSeconds: {WINDOW}}}
"""


def _scrape(port: int) -> dict[str, list]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def _cells(output: str, name: str) -> list[str]:
    for line in output.splitlines():
        cells = line.split()
        if name in cells:
            return cells
    raise AssertionError(f"no line for {name} in:\n{output}")


async def test_top_metrics_and_autoscaling(cluster_factory: ClusterFactory) -> None:
    cp_port, agent_port = _free_port(), _free_port()
    cluster = await cluster_factory(
        agents=1,
        runtime="runc",
        control_plane_flags=(
            "--metrics-listen",
            f"127.0.0.1:{cp_port}",
            "--horizontal-pod-autoscaler-sync-period",
            f"{SYNC:g}s",
        ),
        agent_flags=("--usage-interval", "1", "--metrics-listen", f"127.0.0.1:{agent_port}"),
    )
    mem = _pod("mem", "head -c 104857600 /dev/zero > /mem/fill && sleep 100000")
    volume = mem.spec.volumes.add(name="mem")
    volume.empty_dir.medium = "Memory"
    mem.spec.containers[0].volume_mounts.add(name="mem", mount_path="/mem")
    mem.spec.containers[0].resources.limits["memory"] = "300Mi"
    busy = _pod("busy", "while :; do :; done")
    busy.spec.containers[0].resources.limits["cpu"] = "200m"
    busy.spec.containers[0].readiness_probe.exec.command[:] = ["true"]
    busy.spec.containers[0].readiness_probe.period_seconds = 1
    async with cluster.client() as client:
        await client.apply(mem)
        await client.apply(busy)

    async def measured() -> object:
        got = await cluster.cli("top", "pods")
        if got.returncode != 0:
            return got.stderr
        try:
            mem_mi = int(_cells(got.stdout, "mem")[2].removesuffix("Mi"))
            busy_m = int(_cells(got.stdout, "busy")[1].removesuffix("m"))
        except AssertionError:
            return got.stdout
        ok = 85 <= mem_mi <= 115 and 160 <= busy_m <= 240
        return ok or got.stdout

    await eventually(measured, "top pods never showed mem ~100Mi and busy ~200m", within=60)
    shown = await cluster.cli("top", "pods")
    print(shown.stdout)
    assert shown.stdout.split("\n")[0].split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    containers = await cluster.cli("top", "pods", "-A", "--containers")
    assert containers.stdout.split("\n")[0].split() == [
        "NAMESPACE", "POD", "NAME", "CPU(cores)", "MEMORY(bytes)"
    ]  # fmt: skip
    assert _cells(containers.stdout, "busy")[2] == "main"
    nodes = await cluster.cli("top", "nodes")
    assert nodes.returncode == 0, nodes.stderr
    assert nodes.stdout.split("\n")[0].split() == [
        "NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"
    ]  # fmt: skip
    assert _cells(nodes.stdout, "n1")[2].endswith("%")
    described = await cluster.cli("describe", "node", "n1")
    assert "CPU Usage" in described.stdout and "Memory Usage" in described.stdout
    busy_line = _cells(described.stdout, "busy")
    # namespace, name, then requests and limits with their shares, then usage: "198m (9%)".
    assert busy_line[10].endswith("m") and int(busy_line[10][:-1]) >= 160, busy_line

    # Autoscaling under load.
    async with cluster.client() as client:
        await client.apply(_load(1, busy=True))

    async def load_measured() -> object:
        got = await cluster.cli("top", "pods", "-l", "app=load")
        return (got.returncode == 0 and "m" in got.stdout) or got.stderr

    await eventually(load_measured, "the load pod's usage was never measured", within=60)
    watch = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pilothouse.cli.main",
        "--server",
        cluster.address,
        "get",
        "events",
        "--watch",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        began = time.monotonic()
        applied = await _apply_text(cluster, HPA)
        assert applied.returncode == 0, applied.stderr
        async with cluster.client() as client:

            async def replicas() -> int:
                d = await client.get(Kind.DEPLOYMENT, "load")
                return int(d.spec.replicas)

            async def scaled_up() -> object:
                return await replicas() > 1 or await replicas()

            await eventually(scaled_up, "the HPA did not scale the loaded Deployment up", within=30)
            took = time.monotonic() - began
            print(f"scaled up {took:.1f} s after the HPA was created (sync period {SYNC:g} s)")
            listed = await cluster.cli("get", "hpa")
            assert "Deployment/load" in _cells(listed.stdout, "load")
            assert "cpu:" in listed.stdout and "/50%" in listed.stdout, listed.stdout
            # The load goes; the replicas follow after the scale-down window.
            await client.apply(_load(await replicas(), busy=False))
            idle_since = time.monotonic()

            async def scaled_down() -> object:
                return await replicas() == 1 or await replicas()

            await eventually(scaled_down, "the HPA never scaled back down", within=90)
            took = time.monotonic() - idle_since
            print(f"scaled down {took:.1f} s after the load went (window {WINDOW} s)")
            # The last recommendation for the load came at most one sync period before it went.
            assert took >= WINDOW - SYNC, "scaled down inside the stabilization window"
        assert watch.stdout is not None
        seen = b""
        deadline = time.monotonic() + 20
        while b"SuccessfulRescale" not in seen and time.monotonic() < deadline:
            seen += await asyncio.wait_for(watch.stdout.read(4096), 20)
        assert b"SuccessfulRescale" in seen, seen.decode()[-2000:]
    finally:
        watch.kill()
        await watch.wait()

    refused = await _apply_text(cluster, HPA.replace("kind: Deployment", "kind: Pod"))
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode != 0 and len(lines) == 1, refused.stderr
    assert "scaleTargetRef.kind" in lines[0] and '"Pod"' in lines[0], lines

    # Metrics: both endpoints parse, every listed metric has the samples its work produced.
    cp, agent = _scrape(cp_port), _scrape(agent_port)
    for name in (
        "pilothouse_api_requests",
        "pilothouse_api_request_duration_seconds",
        "pilothouse_reconcile",
        "pilothouse_reconcile_duration_seconds",
        "pilothouse_scheduler_attempts",
        "pilothouse_scheduler_attempt_duration_seconds",
        "pilothouse_etcd_request_duration_seconds",
        "pilothouse_node_sync_pushes",
        "pilothouse_hpa_scale",
    ):
        assert any(s.value > 0 for s in cp.get(name, [])), f"{name}: {cp.get(name)}"
    assert [s.value for s in cp["pilothouse_leader"]] == [1.0]
    depths = {s.labels["controller"] for s in cp["pilothouse_workqueue_depth"]}
    assert "controller.horizontalpodautoscaler" in depths, depths
    methods = {s.labels["method"] for s in cp["pilothouse_api_requests"]}
    assert {"ControlPlane/Apply", "ResourceUsage/TopPods", "ResourceUsage/TopNodes"} <= methods
    for name in (
        "pilothouse_container_cpu_usage_cores",
        "pilothouse_container_memory_working_set_bytes",
        "pilothouse_probe_results",
        "pilothouse_image_pulls",
        "pilothouse_node_cpu_usage_cores",
        "pilothouse_node_memory_working_set_bytes",
    ):
        assert any(s.value > 0 for s in agent.get(name, [])), f"{name}: {agent.get(name)}"
    restarts = [s for s in agent["pilothouse_container_restarts"] if s.labels["pod"] == "busy"]
    assert restarts and restarts[0].value == 0
    memory = {
        s.labels["pod"]: s.value for s in agent["pilothouse_container_memory_working_set_bytes"]
    }
    assert 0.85 * 100 * 2**20 <= memory["mem"] <= 1.15 * 100 * 2**20, memory
    assert "pilothouse_pod_network_receive_bytes_total" in {
        s.name for samples in agent.values() for s in samples
    }


async def _apply_text(cluster: object, text: str) -> subprocess.CompletedProcess[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pilothouse.cli.main",
        "--server",
        cluster.address,  # type: ignore[attr-defined]
        "apply",
        "-f",
        "-",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(text.encode()), 60)
    return subprocess.CompletedProcess(["apply"], proc.returncode or 0, out.decode(), err.decode())
