"""The control plane under faults, on `pilothouse up --control-planes 3 --nodes 3` (issue 12).

1. Killing the leader (kill -9) restarts no container and moves no pod: a new leader takes
   over within the goal, and a Deployment applied right after through a surviving member
   rolls out.
2. The fault-injection run: while a 12-replica Deployment rolls from version to version, a
   seeded random schedule kills the leader, kills an etcd member, freezes and thaws the
   leader, freezes and thaws an agent, cuts and restores a node's link and restarts an agent
   (tests/e2e/faults_support.py). Checked all the time: no acknowledged apply is lost (a
   ConfigMap counter applied in a loop, and each Deployment version), resourceVersions never
   go backwards, no more than maxSurge extra pods while all nodes are up, never two
   containers of one pod on a node. At the end, with the faults stopped: exactly the desired
   pods, Running, of the last version, one container per pod cluster-wide, the rollout
   complete. The seed is printed (and in every failure message) so a run can be replayed:
   PILOTHOUSE_FAULT_SEED=<seed>. The schedule lasts PILOTHOUSE_FAULT_SECONDS (default 30,
   what CI runs; 120 for the full run).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Iterator

import pytest

from pilothouse.client import Client
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o
from tests import factories
from tests.e2e.faults_support import NODES, Faults, HaCluster, Monitor, version_of
from tests.e2e.network import missing_support
from tests.fixtures.cluster import LocalClusterRun

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.fault]

SECONDS = float(os.environ.get("PILOTHOUSE_FAULT_SECONDS", "30"))
REPLICAS, SURGE = 12, 3


@pytest.fixture
def ha(local_cluster: LocalClusterRun) -> Iterator[HaCluster]:
    if reason := missing_support():
        pytest.skip(reason)
    started = local_cluster.run("up", "-d", "--nodes", "3", "--control-planes", "3", timeout=300)
    assert started.returncode == 0, f"`up --control-planes 3 --nodes 3` failed:\n{started.stderr}"
    cluster = HaCluster(local_cluster)
    try:
        yield cluster
    finally:
        cluster.heal_all()


def web(version: int, *, replicas: int = REPLICAS, name: str = "web") -> o.Deployment:
    deployment = factories.deployment(
        name=name, replicas=replicas, strategy="RollingUpdate", surge=SURGE, unavailable=3
    )
    deployment.metadata.labels["app"] = name
    deployment.spec.selector.match_labels.clear()
    deployment.spec.selector.match_labels["app"] = name
    template = deployment.spec.template
    template.metadata.labels.clear()
    template.metadata.labels["app"] = name
    template.spec.termination_grace_period_seconds = 1
    container = template.spec.containers[0]
    container.command[:] = ["sleep", "3600"]
    container.env.add(name="VERSION", value=str(version))
    return deployment


async def until(what: str, check, within: float = 120.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = await check()
        except Exception as error:  # an outage: look again
            last = error
        if last is True or (last and not isinstance(last, Exception | bool)):
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {within:.0f} s (last: {last!r})")


async def rolled_out(client: Client, name: str, version: int) -> bool:
    d = await client.get(Kind.DEPLOYMENT, name, namespace="default")
    s = d.status  # type: ignore[attr-defined]
    return (
        version_of(d) == version  # type: ignore[arg-type]
        and s.observed_generation >= d.metadata.generation  # type: ignore[attr-defined]
        and s.updated_replicas == s.replicas == s.available_replicas == d.spec.replicas  # type: ignore[attr-defined]
    )


async def containers_by_pod(cluster: HaCluster) -> dict[str, list[str]]:
    """Pod name -> the nodes running a container of it."""
    found: dict[str, list[str]] = {}
    for node in NODES:
        for cid in await asyncio.to_thread(cluster.containers, node):
            found.setdefault(cid.split("_")[1], []).append(node)
    return found


async def test_killing_the_leader_restarts_nothing_and_a_new_deployment_rolls_out(
    ha: HaCluster,
) -> None:
    async with ha.client() as client:
        await client.apply(web(1, replicas=6))
        await until("6 pods of version 1 running", lambda: rolled_out(client, "web", 1))
        before = await containers_by_pod(ha)
        placement = {
            p.metadata.name: p.spec.node_name  # type: ignore[attr-defined]
            for p in (await client.list(Kind.POD, namespace="default")).items
        }
    leader = await until("a leader, with etcd's raft leader elsewhere", ha.steady_leader, 30)
    os.kill(ha.pid(leader), signal.SIGKILL)  # type: ignore[arg-type]

    async def new_leader() -> bool:  # how soon: bench/failover.py
        return (await ha.leader()) not in (None, leader)

    await until("a new leader", new_leader, within=15)
    async with ha.client() as client:
        await client.apply(web(1, replicas=3, name="after"))
        await until("the Deployment applied after the kill", lambda: rolled_out(client, "after", 1))
        pods = (await client.list(Kind.POD, namespace="default")).items
    after = await containers_by_pod(ha)
    kept = {pod: nodes for pod, nodes in after.items() if pod in before}
    assert kept == before, f"containers changed across the leader change: {before} -> {kept}"
    moved = {
        p.metadata.name: p.spec.node_name  # type: ignore[attr-defined]
        for p in pods
        if p.metadata.name in placement  # type: ignore[attr-defined]
    }
    assert moved == placement, "a leader change moved pods"
    restarted = [
        p.metadata.name  # type: ignore[attr-defined]
        for p in pods
        if any(c.restart_count for c in p.status.container_statuses)  # type: ignore[attr-defined]
    ]
    assert not restarted, f"containers restarted across the leader change: {restarted}"


async def test_a_rolling_update_survives_a_seeded_schedule_of_faults(ha: HaCluster) -> None:
    seed = int(os.environ.get("PILOTHOUSE_FAULT_SEED") or random.randrange(1 << 31))
    print(f"fault injection seed {seed} ({SECONDS:.0f} s of faults)", flush=True)
    rng = random.Random(seed)
    faults = Faults(ha, rng)
    monitor = Monitor(ha, faults, deployment="web", replicas=REPLICAS, max_surge=SURGE)
    version = 1
    async with ha.client(timeout=6.0) as client:
        await client.apply(web(version))
        monitor.acked_versions.append(version)
        await until("12 pods of version 1", lambda: rolled_out(client, "web", 1), within=180)

        async def count() -> None:
            n = 0
            while True:
                n += 1
                config = o.ConfigMap()
                config.metadata.name, config.metadata.namespace = "counter", "default"
                config.data["count"] = str(n)
                try:
                    await client.apply(config)
                except Exception:
                    n -= 1  # not acknowledged: the same count again
                else:
                    monitor.acked_counts.append(n)
                await asyncio.sleep(0.2)

        async def roll() -> None:
            nonlocal version
            while True:
                with contextlib.suppress(Exception):
                    if await rolled_out(client, "web", version):
                        await client.apply(web(version + 1))
                        version += 1
                        monitor.acked_versions.append(version)
                await asyncio.sleep(0.5)

        await client.apply(web(version + 1))
        version += 1
        monitor.acked_versions.append(version)
        tasks = [asyncio.create_task(t) for t in (count(), roll(), monitor.run(client))]
        try:
            await faults.schedule(SECONDS)
        finally:
            tasks[1].cancel()  # no new versions; the counter and the checks go on
            ha.heal_all()
        final = version
        context = f"seed {seed}, faults {faults.injected}"
        try:
            await until(
                f"the rollout of version {final} complete after the faults ({context})",
                lambda: rolled_out(client, "web", final),
                within=180,
            )

            async def settled() -> bool:
                """True once settled; otherwise raises what differs (until() reports it)."""
                pods = [
                    p
                    for p in (await client.list(Kind.POD, namespace="default")).items
                    if p.metadata.labels.get("app") == "web"  # type: ignore[attr-defined]
                ]
                running = await containers_by_pod(ha)
                names = {p.metadata.name for p in pods}  # type: ignore[attr-defined]
                wrong = {
                    "pods": len(pods) if len(pods) != REPLICAS else None,
                    "not Running": sorted(
                        f"{p.metadata.name}:{p.status.phase}@{p.spec.node_name}"  # type: ignore[attr-defined]
                        for p in pods
                        if p.status.phase != "Running"  # type: ignore[attr-defined]
                    ),
                    "old version": sorted(
                        p.metadata.name  # type: ignore[attr-defined]
                        for p in pods
                        if version_of_pod(p) != final  # type: ignore[arg-type]
                    ),
                    "no container": sorted(names - running.keys()),
                    "several containers": {
                        n: running[n] for n in names & running.keys() if len(running[n]) != 1
                    },
                    "containers of no pod": {
                        n: running[n] for n in running.keys() - names - {"after"}
                    },
                }
                if any(wrong.values()):
                    raise AssertionError({k: v for k, v in wrong.items() if v})
                return True

            await until(f"exactly {REPLICAS} pods, one container each ({context})", settled)
            leader = await ha.leader()
            assert leader is not None, f"no leader after the faults ({context})"
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    print(
        f"fault injection seed {seed}: {len(faults.injected)} faults {faults.injected}; "
        f"{monitor.checks} checks, {monitor.errors} during outages; "
        f"{len(monitor.acked_counts)} counts and {len(monitor.acked_versions)} versions acked",
        flush=True,
    )
    assert not monitor.violations, f"invariants broken ({context}): {monitor.violations}"
    assert monitor.checks > 0


def version_of_pod(pod: o.Pod) -> int:
    for env in pod.spec.containers[0].env:
        if env.name == "VERSION":
            return int(env.value)
    return 0
