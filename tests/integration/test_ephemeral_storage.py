"""Ephemeral-storage limits on real runc containers (issue 11): a pod writing past its limit is
evicted, as the kubelet evicts it, and gives its disk back.

The pod (limit 10Mi) writes 20 MiB into its own root file system; within a few eviction
passes it is Failed with reason Evicted and Kubernetes' message, its container is gone (so is
its writable layer), and a pod within its limit on the same node keeps running.
"""

from __future__ import annotations

import grpc
import pytest

from pilothouse.v1 import agent_pb2, agent_pb2_grpc, objects_pb2
from tests.integration.test_agent import make_pod, wait_for
from tests.integration.test_probes import runc_agent

pytestmark = [pytest.mark.root, pytest.mark.slow]


def _limited(name: str, script: str, limit: str) -> objects_pb2.Pod:
    pod = make_pod(name, script)
    pod.spec.containers[0].resources.limits["ephemeral-storage"] = limit
    return pod


def _evicted(pod: objects_pb2.Pod | None) -> bool:
    return pod is not None and pod.status.reason == "Evicted"


async def test_a_pod_writing_past_its_ephemeral_storage_limit_is_evicted() -> None:
    filler = _limited(
        "filler", "dd if=/dev/zero of=/fill bs=1M count=20 && sync; exec sleep 3600", "10Mi"
    )
    calm = _limited("calm", "echo small > /note; exec sleep 3600", "10Mi")
    flags = ("--backoff-initial", "0.2", "--eviction-interval", "0.5")
    async with runc_agent(*flags) as agent, grpc.aio.insecure_channel(agent.address) as channel:
        stub = agent_pb2_grpc.NodeAgentStub(channel)
        await stub.SyncPods(agent_pb2.SyncPodsRequest(pods=[filler, calm]))
        seen = await wait_for(stub, "evicted", lambda s: _evicted(s.get("filler")))
        pod = seen["filler"]
        assert pod.status.phase == "Failed", pod.status
        assert pod.status.message == (
            "Pod ephemeral local storage usage exceeds the total limit of containers 10Mi."
        )
        state = pod.status.container_statuses[0].state
        assert state.HasField("terminated") and not pod.status.container_statuses[0].ready
        left = [c.id for c in await agent.runtime().list()]
        assert "default_filler_app_0" not in left, "the evicted container was kept"
        assert not list((agent.state / "containers").glob("default_filler_*")), (
            "the evicted pod's writable layer still takes the node's disk"
        )
        calm_now = seen.get("calm")
        assert calm_now is not None and calm_now.status.phase == "Running", calm_now
