"""Faults of one agent on `pilothouse up --nodes 3` (mutual TLS, CNI pod networks), issue 12.

What a user relies on:
- an agent whose own records are damaged (one container's meta.json, or its desired.json)
  and that is restarted kills no container of a healthy pod: the node is Ready again, every
  pod runs exactly one container, and the pods' network namespaces survive;
- Deployments with 60- and 250-character names run (pod names and hostnames are cut as
  Kubernetes cuts them);
- an agent frozen (SIGSTOP) until its pods run elsewhere, then thawed, is not Ready before its
  stale containers have stopped (they stop within about a second of its return), and every
  pod then runs exactly one container cluster-wide; the replacements are new pods, with names
  and uids that never existed before.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeagent.state.quarantine import quarantined
from pilothouse import credentials
from pilothouse.client import Client
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o
from tests import factories
from tests.e2e.network import missing_support
from tests.fixtures.cluster import LocalClusterRun, sleepers, wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow]

NODES = ["node-1", "node-2", "node-3"]


@pytest.fixture
def cluster(local_cluster: LocalClusterRun) -> Iterator[LocalClusterRun]:
    if reason := missing_support():
        pytest.skip(reason)
    started = local_cluster.up(nodes=3)
    assert started.returncode == 0, f"`up -d --nodes 3` failed:\n{started.stderr}"
    assert local_cluster.secure, "`up` made a plaintext cluster"
    yield local_cluster


def apply(cluster: LocalClusterRun, name: str, *, replicas: int, app: str = "") -> None:
    command = ("sh", "-c", "hostname > /tmp/hostname; exec sleep 3600")
    deployment = sleepers(name, replicas=replicas, grace=30, app=app, command=command)
    applied = cluster.apply(factories.manifest(deployment), name=f"{name[:40]}.yaml")
    assert applied.returncode == 0, f"`pilothouse apply` of {name} failed:\n{applied.stderr}"


def client(cluster: LocalClusterRun) -> Client:
    info = cluster.cluster_info()
    admin = cluster.admin()
    assert admin is not None
    return Client(
        info.controlplane,
        credentials=admin.channel_credentials(),
        options=credentials.channel_options(),
    )


def pods(cluster: LocalClusterRun) -> list[o.Pod]:
    async def listed() -> list[o.Pod]:
        async with client(cluster) as c:
            return list((await c.list(Kind.POD, namespace="default")).items)  # type: ignore[arg-type]

    return asyncio.run(listed())


def node_ready(cluster: LocalClusterRun, name: str) -> bool:
    async def ready() -> bool:
        async with client(cluster) as c:
            node = await c.get(Kind.NODE, name)
        return any(
            c.type == "Ready" and c.status == "True"
            for c in node.status.conditions  # type: ignore[attr-defined]
        )

    return asyncio.run(ready())


def runc_root(cluster: LocalClusterRun, node: str) -> Path:
    return cluster.layout.node(node) / "runtime" / "runc"


def running_containers(cluster: LocalClusterRun, node: str) -> dict[str, int]:
    """What runc runs on `node`: container id -> pid."""
    for _ in range(20):  # a container being created or deleted can fail one listing
        got = subprocess.run(
            ["runc", "--root", str(runc_root(cluster, node)), "list", "-f", "json"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if got.returncode == 0:
            break
        time.sleep(0.1)
    assert got.returncode == 0, f"runc list on {node} failed: {got.stderr}"
    return {
        c["id"]: c["pid"]
        for c in json.loads(got.stdout or "null") or []
        if c["status"] == "running"
    }


def pod_of(container_id: str) -> str:
    """The pod name in an agent container id `<namespace>_<pod>_<container>_<attempt>`."""
    return container_id.split("_")[1]


def one_container_per_pod(cluster: LocalClusterRun) -> dict[str, list[str]] | None:
    """Pod -> nodes running a container of it, if every pod runs exactly one (and no more)."""
    running: dict[str, list[str]] = {}
    for node in NODES:
        for cid in running_containers(cluster, node):
            running.setdefault(pod_of(cid), []).append(node)
    wanted = {
        p.metadata.name for p in pods(cluster) if not p.metadata.HasField("deletion_timestamp")
    }
    ok = set(running) == wanted and all(len(n) == 1 for n in running.values())
    return running if ok else None


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def agent_pid(cluster: LocalClusterRun, node: str) -> int:
    record = cluster.child(node)
    assert record is not None and record.alive(), f"the agent of {node} is not running"
    return record.pid


def restart_agent(cluster: LocalClusterRun, node: str) -> None:
    """kill -9 the agent; the supervisor starts it again (same state dir)."""
    old = agent_pid(cluster, node)
    os.kill(old, signal.SIGKILL)
    wait_for(
        f"the agent of {node} restarted",
        lambda: (r := cluster.child(node)) is not None and r.pid != old and r.alive(),
        within=30,
    )


def test_damaged_agent_records_kill_no_healthy_container_and_long_names_run(
    cluster: LocalClusterRun,
) -> None:
    apply(cluster, "sleepers", replicas=6)
    name60 = ("sixty-characters-" * 4)[:59] + "x"
    name250 = ("two-hundred-fifty-characters-" * 9)[:249] + "x"
    apply(cluster, name60, replicas=1, app="long60")
    apply(cluster, name250, replicas=1, app="long250")

    def all_running() -> list[o.Pod] | None:
        found = pods(cluster)
        running = [p for p in found if p.status.phase == "Running"]
        return running if len(running) == 8 == len(found) else None

    running = wait_for("8 pods Running (including the long names)", all_running, within=120)
    for pod in running:
        assert len(pod.metadata.name) <= 63, f"pod name of {len(pod.metadata.name)} characters"
    node = next(p.spec.node_name for p in running if p.metadata.name.startswith("sleepers"))
    before = running_containers(cluster, node)
    assert before, f"{node} runs no container"
    state = cluster.layout.node(node)
    netns_files = sorted(p.name for p in (state / "netns").iterdir())

    # 1. One container's meta.json is torn; the agent is restarted.
    victim = sorted(before)[0]
    meta = state / "runtime" / "containers" / victim / "meta.json"
    meta.write_text(meta.read_text()[:25])
    restart_agent(cluster, node)
    wait_for("the restarted agent keeping the damaged meta.json aside", lambda: quarantined(meta))
    wait_for(f"{node} Ready after its restart", lambda: node_ready(cluster, node))
    wait_for("one container per pod after the restart", lambda: one_container_per_pod(cluster))
    after = running_containers(cluster, node)
    assert after == before, (
        f"a container was killed or restarted because one container record was damaged: "
        f"{before} -> {after}; pods now: "
        f"{[(p.metadata.name, p.spec.node_name, p.status.phase) for p in pods(cluster)]}\n"
        + cluster.layout.log(node).read_text()[-8000:]
    )

    # 2. desired.json is unreadable; the agent is restarted.
    desired = state / "desired.json"
    desired.write_bytes(b"\x00\xff not json")
    restart_agent(cluster, node)
    wait_for("the restarted agent keeping desired.json aside", lambda: quarantined(desired))
    wait_for(f"{node} Ready after its restart", lambda: node_ready(cluster, node))
    wait_for("one container per pod after the restart", lambda: one_container_per_pod(cluster))
    after = running_containers(cluster, node)
    assert after == before, (
        "a container was killed or restarted because the agent's desired set was unreadable: "
        f"{before} -> {after}; pods now: "
        f"{[(p.metadata.name, p.spec.node_name, p.status.phase) for p in pods(cluster)]}\n"
        + cluster.layout.log(node).read_text()[-6000:]
    )
    assert sorted(p.name for p in (state / "netns").iterdir()) == netns_files, (
        "a pod's network namespace was removed"
    )
    phases = {p.metadata.name: p.status.phase for p in pods(cluster)}
    assert set(phases.values()) == {"Running"}, f"pods not Running after the restarts: {phases}"


def test_frozen_agent_is_fenced_on_return_and_replacements_are_new_pods(
    cluster: LocalClusterRun,
) -> None:
    apply(cluster, "sleepers", replicas=6)

    def six_running() -> list[o.Pod] | None:
        found = [p for p in pods(cluster) if p.status.phase == "Running"]
        return found if len(found) == 6 else None

    first = wait_for("6 pods Running", six_running, within=120)
    ever = {(p.metadata.name, p.metadata.uid) for p in first}
    frozen = "node-3"
    stale = running_containers(cluster, frozen)
    assert stale, f"no replica landed on {frozen}"
    pid = agent_pid(cluster, frozen)

    os.kill(pid, signal.SIGSTOP)
    try:

        def replaced() -> list[o.Pod] | None:
            found = [p for p in pods(cluster) if p.status.phase == "Running"]
            elsewhere = [p for p in found if p.spec.node_name != frozen]
            return elsewhere if len(elsewhere) == 6 == len(found) else None

        moved = wait_for(f"{frozen}'s replicas running elsewhere", replaced, within=60)
        assert not node_ready(cluster, frozen)
    finally:
        os.kill(pid, signal.SIGCONT)
    back = time.monotonic()
    stopped_at = ready_at = None
    while time.monotonic() - back < 30 and (stopped_at is None or ready_at is None):
        ready = node_ready(cluster, frozen)
        left = [cid for cid, p in stale.items() if alive(p)]
        now = time.monotonic() - back
        if left:
            assert not ready, (
                f"{frozen} counted as Ready {now:.2f} s after its return while its stale "
                f"containers still ran: {left}"
            )
        elif stopped_at is None:
            stopped_at = now
        if ready and ready_at is None:
            ready_at = now
        time.sleep(0.02)
    assert stopped_at is not None, f"{frozen}'s stale containers still run 30 s after its return"
    assert ready_at is not None, f"{frozen} was not Ready again 30 s after its return"
    print(
        f"\n{frozen} thawed -> stale containers stopped: {stopped_at:.2f} s, "
        f"node Ready: {ready_at:.2f} s"
    )
    wait_for("one container per pod cluster-wide", lambda: one_container_per_pod(cluster))
    for pod in moved:
        if (pod.metadata.name, pod.metadata.uid) in ever:
            continue
        names = {n for n, _ in ever}
        uids = {u for _, u in ever}
        assert pod.metadata.name not in names and pod.metadata.uid not in uids, (
            f"replacement {pod.metadata.name} reuses the name or uid of an evicted pod"
        )
