"""Probes seen through the control plane of a whole cluster (issue #5): a control plane with
embedded etcd and two real-runc agents.

What a user relies on:
- a failing readiness probe makes that pod not Ready (with the probe's words in its Ready
  condition) and lowers the Deployment's readyReplicas and availableReplicas, without
  restarting the container; when the probe passes again, both are back;
- a failing liveness probe restarts the container: `get pods` shows the restart,
  `lastState.terminated` says how the old attempt ended, `describe pod` and `get events` show
  the Unhealthy and Killing events, and the Deployment is fully available again afterwards.
"""

from __future__ import annotations

import asyncio

import pytest

from pilothouse.client import Client
from pilothouse.kinds import Kind
from pilothouse.manifests import loader
from pilothouse.v1 import objects_pb2 as o
from tests import factories
from tests.fixtures.agents import Cluster, ClusterFactory, eventually, is_ready, pods

pytestmark = [pytest.mark.slow, pytest.mark.root]

NAMESPACE = "probe-test"
NAME = "web"

# httpd as PID 1 ignores SIGTERM: a grace period of 1 s keeps a liveness kill short.
MANIFEST = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {NAME}, namespace: {NAMESPACE}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: {NAME}}}}}
  template:
    metadata: {{labels: {{app: {NAME}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox:stable
        command:
        - sh
        - -c
        - mkdir -p /www && echo ok > /www/ready && touch /tmp/alive
          && exec httpd -f -p 8080 -h /www
        ports: [{{containerPort: 8080}}]
        readinessProbe:
          httpGet: {{path: /ready, port: 8080}}
          periodSeconds: 1
          failureThreshold: 1
        livenessProbe:
          exec: {{command: [cat, /tmp/alive]}}
          periodSeconds: 1
          failureThreshold: 2
"""


def _deployment() -> o.Deployment:
    documents, problems = loader.parse(MANIFEST, source=f"{NAME}.yaml")
    assert not problems, problems
    message = documents[0].message
    assert isinstance(message, o.Deployment)
    return message


def _ready(pod: o.Pod) -> o.Condition | None:
    return next((c for c in pod.status.conditions if c.type == "Ready"), None)


async def _replicas(client: Client) -> tuple[int, int]:
    """(readyReplicas, availableReplicas) as `get deployment` shows them."""
    found = await client.get(Kind.DEPLOYMENT, NAME, namespace=NAMESPACE)
    assert isinstance(found, o.Deployment)
    return found.status.ready_replicas, found.status.available_replicas


async def _wait_available(client: Client, what: str, *, within: float = 30) -> None:
    async def both() -> object:
        counts = await _replicas(client)
        return counts == (2, 2) or {"ready, available": counts}

    await eventually(both, what, within=within)


async def _pod(client: Client, name: str) -> o.Pod:
    found = await client.get(Kind.POD, name, namespace=NAMESPACE)
    assert isinstance(found, o.Pod)
    return found


async def _exec(cluster: Cluster, pod: o.Pod, *argv: str) -> None:
    """`runc exec` into the pod's running container on its node, as an operator would."""
    node = pod.spec.node_name
    running = [
        c
        for c in await cluster.containers(node)
        if c.pod == pod.metadata.name and c.status == "running"
    ]
    assert len(running) == 1, f"node {node} runs {running} for pod {pod.metadata.name}"
    proc = await asyncio.create_subprocess_exec(
        "runc",
        "--root",
        str(cluster.agents[node].runc_root),
        "exec",
        running[0].id,
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, f"`runc exec {running[0].id} {' '.join(argv)}`: {out.decode()}"


async def test_probes_drive_pod_readiness_deployment_availability_and_restarts(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = await cluster_factory(agents=2, runtime="runc")
    async with cluster.client() as client:

        async def nodes_ready() -> object:
            nodes = [n for n in (await client.list(Kind.NODE)).items if isinstance(n, o.Node)]
            ready = sorted(n.metadata.name for n in nodes if is_ready(n))
            return ready == ["n1", "n2"] or ready

        await eventually(nodes_ready, "`get nodes` never showed n1 and n2 Ready")
        await client.apply(factories.namespace(name=NAMESPACE))
        await client.apply(_deployment())
        await _wait_available(
            client, "the 2 replicas with passing probes never became available", within=40
        )

        # Readiness: the page goes away in one replica, then comes back.
        sick, other = sorted(await pods(client, NAMESPACE), key=lambda p: p.metadata.name)
        await _exec(cluster, sick, "rm", "/www/ready")

        async def not_ready() -> object:
            condition = _ready(await _pod(client, sick.metadata.name))
            return (condition is not None and condition.status == "False") or condition

        await eventually(not_ready, "a pod whose readiness probe fails still shows Ready")
        pod = await _pod(client, sick.metadata.name)
        message = _ready(pod).message  # type: ignore[union-attr]
        assert "Readiness probe failed: HTTP probe failed with statuscode: 404" in message, (
            f"the not-ready pod's Ready condition does not say why: {message!r}"
        )

        async def one_available() -> object:
            counts = await _replicas(client)
            return counts == (1, 1) or {"ready, available": counts}

        await eventually(
            one_available, "the Deployment still counts the not-ready replica as available"
        )
        pod = await _pod(client, sick.metadata.name)
        status = pod.status.container_statuses[0]
        assert status.restart_count == 0 and status.state.HasField("running"), (
            f"a failing readiness probe restarted or stopped the container: {status}"
        )
        assert _ready(await _pod(client, other.metadata.name)).status == "True", (  # type: ignore[union-attr]
            "the other replica, whose probe passes, lost its Ready condition"
        )

        await _exec(cluster, sick, "sh", "-c", "echo ok > /www/ready")
        await _wait_available(
            client, "the Deployment did not return to 2 available when the probe passed again"
        )

        # Liveness: the file the probe reads goes away; the container is killed and restarted.
        await _exec(cluster, sick, "rm", "/tmp/alive")

        async def restarted() -> object:
            statuses = (await _pod(client, sick.metadata.name)).status.container_statuses
            return (bool(statuses) and statuses[0].restart_count == 1) or list(statuses)

        await eventually(restarted, "a container failing its liveness probe was not restarted")
        pod = await _pod(client, sick.metadata.name)
        last = pod.status.container_statuses[0].last_state
        assert last.HasField("terminated"), f"a restarted container shows no lastState: {last}"
        assert "failed liveness probe" in last.terminated.message, (
            f"lastState does not say the liveness probe killed it: {last.terminated}"
        )

        table = await cluster.cli("get", "pods", "-n", NAMESPACE)
        assert table.returncode == 0, f"`get pods` failed: {table.stderr}"
        restarts = {
            line.split()[0]: line.split()[3] for line in table.stdout.splitlines()[1:] if line
        }
        assert restarts.get(sick.metadata.name) == "1", (
            f"`get pods` does not show the liveness restart:\n{table.stdout}"
        )
        assert restarts.get(other.metadata.name) == "0", (
            f"`get pods` shows a restart of the healthy replica:\n{table.stdout}"
        )

        async def events_shown() -> object:
            described = await cluster.cli("describe", "pod", sick.metadata.name, "-n", NAMESPACE)
            reasons = {
                word
                for line in described.stdout.split("Events:")[-1].splitlines()
                for word in line.split()[1:2]
            }
            return {"Unhealthy", "Killing"} <= reasons or described.stdout + described.stderr

        await eventually(
            events_shown, "`describe pod` does not show the Unhealthy and Killing events"
        )
        listed = await cluster.cli("get", "events", "-n", NAMESPACE)
        assert listed.returncode == 0, f"`get events` failed: {listed.stderr}"
        about_sick = [line for line in listed.stdout.splitlines() if sick.metadata.name in line]
        for reason in ("Unhealthy", "Killing"):
            assert any(reason in line for line in about_sick), (
                f"`get events` shows no {reason} event for {sick.metadata.name}:\n{listed.stdout}"
            )

        await _wait_available(
            client, "the Deployment did not return to 2 available after the liveness restart"
        )
