"""Issue 15's workloads on a cluster of real processes: a control plane with embedded etcd and
runc agents on this machine (host network).

What a user relies on:
- a DaemonSet runs one pod on each of the three nodes, a fourth node that joins gets one, and a
  cordoned node keeps its pod;
- a Job of 5 completions, 2 at a time, runs exactly 5 successful pods and never more than 2 at
  once; a Job that always fails stops after its backoffLimit with BackoffLimitExceeded; an
  Indexed Job's pods print their JOB_COMPLETION_INDEX (`logs`);
- deleting a namespace removes every object and container in it, and nothing of it stays in
  the store;
- a StatefulSet of 3 with a local-path volume each: every ordinal writes its file; a deleted
  web-1 comes back on the same node with the same file; freezing web-2's node never yields two
  running web-2 containers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from pilothouse import manifests
from pilothouse.client import Client
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o
from tests import factories
from tests.fixtures.agents import Cluster, eventually, wait_all_ready

pytestmark = [pytest.mark.slow, pytest.mark.root]


def _defaulted(message: o.Job | o.DaemonSet) -> o.Job | o.DaemonSet:
    manifests.set_defaults(message)
    assert manifests.validate(message) == []
    return message


async def _pods(client: Client, namespace: str = "default") -> list[o.Pod]:
    return [
        p for p in (await client.list(Kind.POD, namespace=namespace)).items if isinstance(p, o.Pod)
    ]


def _active(pods: list[o.Pod]) -> list[o.Pod]:
    return [
        p
        for p in pods
        if p.status.phase not in ("Succeeded", "Failed")
        and not p.metadata.HasField("deletion_timestamp")
    ]


async def test_a_daemonset_runs_on_every_node_a_joining_one_and_a_cordoned_one(
    cluster: Cluster,
) -> None:
    async with cluster.client() as client:
        await wait_all_ready(cluster, client)
        ds = factories.daemon_set(name="agent")
        ds.spec.template.spec.containers[0].command[:] = [
            "sh",
            "-c",
            "trap 'exit 0' TERM; sleep 100000 & wait",
        ]
        ds.spec.template.spec.termination_grace_period_seconds = 1
        await client.apply(_defaulted(ds))

        async def placed() -> object:
            running = {p.spec.node_name for p in await _pods(client) if p.status.phase == "Running"}
            return sorted(running)

        async def on(nodes: list[str]) -> object:
            got = await placed()
            return got == nodes or got

        await eventually(lambda: on(["n1", "n2", "n3"]), "a DaemonSet pod Running on each node")
        await cluster.add_agent("n4")
        await eventually(
            lambda: on(["n1", "n2", "n3", "n4"]), "the joining node got no pod", within=60
        )
        cordon = await cluster.cli("cordon", "n1")
        assert cordon.returncode == 0, cordon.stderr
        await asyncio.sleep(1)  # a pass of every controller; what must not happen is a removal
        assert await placed() == ["n1", "n2", "n3", "n4"], "the cordoned node lost its pod"
        got = await cluster.cli("get", "ds", "agent")
        assert got.stdout.splitlines()[1].split()[:6] == ["agent", "4", "4", "4", "4", "4"], (
            got.stdout
        )


async def test_jobs_run_to_completion_stop_at_their_backoff_limit_and_see_their_index(
    cluster: Cluster,
) -> None:
    async with cluster.client() as client:
        await wait_all_ready(cluster, client)
        done = factories.job(name="five", completions=5, parallelism=2)
        done.spec.template.spec.containers[0].command[:] = ["sh", "-c", "sleep 1; echo ok"]
        await client.apply(_defaulted(done))
        most = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pods = [p for p in await _pods(client) if p.metadata.name.startswith("five-")]
            most = max(most, len(_active(pods)))
            job = await client.get(Kind.JOB, "five")
            if any(c.type == "Complete" and c.status == "True" for c in job.status.conditions):
                break
            await asyncio.sleep(0.1)
        pods = [p for p in await _pods(client) if p.metadata.name.startswith("five-")]
        assert [p.status.phase for p in pods] == ["Succeeded"] * 5, "exactly 5 successful pods"
        assert most <= 2, f"{most} pods ran at once with parallelism 2"
        waited = await cluster.cli("wait", "--for=condition=complete", "job/five", "--timeout=10s")
        assert (waited.returncode, waited.stdout) == (0, "job.batch/five condition met\n")
        logs = await cluster.cli("logs", "job/five")
        assert logs.stdout.strip() == "ok", logs

        failing = factories.job(name="fails", backoff_limit=1)
        failing.spec.template.spec.containers[0].command[:] = ["sh", "-c", "exit 3"]
        await client.apply(_defaulted(failing))

        async def failed() -> object:
            job = await client.get(Kind.JOB, "fails")
            found = [(c.type, c.reason) for c in job.status.conditions if c.status == "True"]
            return found == [("Failed", "BackoffLimitExceeded")] or found

        await eventually(failed, "the failing Job never stopped at its backoff limit", within=90)
        tries = [p for p in await _pods(client) if p.metadata.name.startswith("fails-")]
        assert len(tries) == 2, "backoffLimit 1: the first try and one retry, no more"

        indexed = factories.job(name="idx", completions=3, parallelism=3, indexed=True)
        indexed.spec.template.spec.containers[0].command[:] = [
            "sh",
            "-c",
            "echo index=$JOB_COMPLETION_INDEX",
        ]
        await client.apply(_defaulted(indexed))

        async def complete() -> object:
            job = await client.get(Kind.JOB, "idx")
            return job.status.completed_indexes == "0-2" or job.status.completed_indexes

        await eventually(complete, "the Indexed Job did not complete", within=90)
        seen = set()
        for pod in await _pods(client):
            if pod.metadata.name.startswith("idx-"):
                out = await cluster.cli("logs", pod.metadata.name)
                seen.add(out.stdout.strip())
        assert seen == {"index=0", "index=1", "index=2"}


async def test_deleting_a_namespace_removes_every_object_and_container(cluster: Cluster) -> None:
    async with cluster.client() as client:
        await wait_all_ready(cluster, client)
        await client.apply(factories.namespace(name="doomed"))
        job = factories.job(name="long", namespace="doomed", parallelism=2, completions=2)
        job.spec.template.spec.containers[0].command[:] = [
            "sh",
            "-c",
            "trap 'exit 0' TERM; sleep 100000 & wait",
        ]
        job.spec.template.spec.termination_grace_period_seconds = 1
        await client.apply(_defaulted(job))
        ds = factories.daemon_set(name="every", namespace="doomed")
        ds.spec.template.spec.containers[0].command[:] = [
            "sh",
            "-c",
            "trap 'exit 0' TERM; sleep 100000 & wait",
        ]
        ds.spec.template.spec.termination_grace_period_seconds = 1
        await client.apply(_defaulted(ds))

        async def running() -> object:
            up = [p for p in await _pods(client, "doomed") if p.status.phase == "Running"]
            return len(up) == 5 or len(up)

        await eventually(running, "the namespace's 5 pods never ran", within=60)
        deleted = await cluster.cli("delete", "namespace", "doomed")
        assert deleted.returncode == 0, deleted.stderr

        async def gone() -> object:
            try:
                await client.get(Kind.NAMESPACE, "doomed")
            except Exception:
                return True
            return False

        await eventually(gone, "the namespace was never deleted", within=60)
        for kind in Kind:
            if kind.info.namespaced:
                left = (await client.list(kind, namespace="doomed")).items
                assert left == [], f"{kind.info.plural} left in the namespace: {left}"

        async def no_containers() -> object:
            found = [
                c.id
                for n in cluster.agents
                for c in await cluster.containers(n)
                if "_doomed_" in f"_{c.id}"
            ]
            return found if found else True

        await eventually(no_containers, "containers of the namespace still run", within=30)


WRITER = (
    "[ -f /data/first ] || { echo $(hostname) $(cat /proc/sys/kernel/random/uuid) "
    "> /data/first; }; cat /data/first; trap 'exit 0' TERM; sleep 100000 & wait"
)


async def test_a_statefulset_keeps_each_ordinals_volume_and_never_runs_an_ordinal_twice(
    cluster: Cluster,
) -> None:
    """web-0..2 write a file to their volumes (a local-path class under the test's dir);
    deleting web-1 brings back web-1 on the same node with the same file; freezing web-2's
    node never yields two running web-2 containers, and web-2 comes back once it thaws."""
    storage = cluster.root / "volumes"
    async with cluster.client() as client:
        await wait_all_ready(cluster, client)
        await client.apply(factories.storage_class(name="test-local", path=str(storage)))
        sts = factories.stateful_set(replicas=3, claims=["data"], storage_class="test-local")
        sts.spec.template.spec.containers[0].command[:] = ["sh", "-c", WRITER]
        sts.spec.template.spec.termination_grace_period_seconds = 1
        manifests.set_defaults(sts)
        assert manifests.validate(sts) == []
        await client.apply(sts)

        async def by_name() -> dict[str, o.Pod]:
            return {p.metadata.name: p for p in await _pods(client)}

        async def three() -> object:
            found = await by_name()
            up = sorted(n for n, p in found.items() if p.status.phase == "Running")
            return up == ["web-0", "web-1", "web-2"] or up

        await eventually(three, "web-0, web-1, web-2 never all ran", within=90)
        first = await by_name()
        files = {}
        for name, pod in first.items():
            volume = pod.metadata.annotations["pilothouse.io/volume.data"]
            assert volume.startswith(str(storage)), volume
            written = (Path(volume) / "first").read_text()
            assert written.startswith(f"{name} "), f"{name} wrote {written!r}"
            files[name] = (pod.spec.node_name, volume, written)
        claims = (await cluster.cli("get", "pvc")).stdout
        assert all(f"data-web-{i}" in claims for i in range(3)), claims

        old = first["web-1"].metadata.uid
        deleted = await cluster.cli("delete", "pod", "web-1")
        assert deleted.returncode == 0, deleted.stderr

        async def back() -> object:
            pod = (await by_name()).get("web-1")
            if pod is None or pod.metadata.uid == old or pod.status.phase != "Running":
                return None if pod is None else (pod.metadata.uid == old, pod.status.phase)
            return True

        await eventually(back, "web-1 did not come back", within=60)
        again = (await by_name())["web-1"]
        node, volume, written = files["web-1"]
        assert again.spec.node_name == node, "web-1 came back away from its volume"
        assert again.metadata.annotations["pilothouse.io/volume.data"] == volume
        assert (Path(volume) / "first").read_text() == written, "the volume's file changed"
        logs = await cluster.cli("logs", "web-1")
        assert logs.stdout.strip() == written.strip(), logs

        frozen_node = files["web-2"][0]
        agent = cluster.agents[frozen_node].pid
        assert agent
        most = 0
        os.kill(agent, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 12  # past NotReady (3 s) and eviction (2 s)
            while time.monotonic() < deadline:
                most = max(most, await _running_copies(cluster, "web-2"))
                await asyncio.sleep(0.1)
            pod = (await by_name()).get("web-2")
            assert pod is not None and pod.spec.node_name == frozen_node, (
                "web-2 was made again elsewhere while its node was frozen"
            )
        finally:
            os.kill(agent, signal.SIGCONT)

        async def web2_back() -> object:
            nonlocal most
            most = max(most, await _running_copies(cluster, "web-2"))
            pod = (await by_name()).get("web-2")
            return (
                pod is not None
                and pod.status.phase == "Running"
                and not pod.metadata.HasField("deletion_timestamp")
            ) or (pod and pod.status.phase)

        await eventually(web2_back, "web-2 did not run again after its node thawed", within=90)
        assert most <= 1, f"{most} web-2 containers ran at once"
        assert (Path(files["web-2"][1]) / "first").read_text() == files["web-2"][2]


async def _running_copies(cluster: Cluster, pod: str) -> int:
    count = 0
    for name in cluster.agents:
        for container in await cluster.containers(name):
            if container.status == "running" and container.pod == pod:
                count += 1
    return count
