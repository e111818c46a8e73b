"""Probes on real runc containers through the agent's gRPC API (as root, busybox test image).

What a user sees:
- an httpGet readiness probe against busybox httpd in the container passes (the pod is
  Ready); removing the page (404) makes the pod not Ready with the probe's words in the Ready
  condition, without restarting it; restoring the page makes it Ready again. Its tcpSocket
  startup probe gates all of that.
- a failing exec liveness probe restarts the container: restartCount grows, and lastState
  shows exit 137 (SIGKILL after the probe's grace period) with the probe's output.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from nodeagent.probes.handlers import RuncExec
from pilothouse.v1 import agent_pb2, agent_pb2_grpc, objects_pb2
from tests.integration.test_agent import Agent, _missing, make_pod, wait_for
from tests.integration.test_agent_fake import start_agent, stop_agent

pytestmark = [pytest.mark.root, pytest.mark.slow]


class RuncAgent(Agent):
    """An agent process on real runc with the given flags (the test agent's, by default)."""

    def __init__(self, state: Path, cgroup_parent: str, flags: tuple[str, ...]) -> None:
        self.state = state
        self.cgroup_parent = cgroup_parent
        self.flags = flags
        self.proc, self.address = start_agent(state, "--cgroup-parent", cgroup_parent, *self.flags)


@asynccontextmanager
async def runc_agent(*flags: str) -> AsyncIterator[RuncAgent]:
    """An agent with the busybox test image; every container, cgroup and mount removed after."""
    if reason := _missing():
        pytest.skip(reason)
    from pilothouse.oci.testimage import build_test_image

    state = Path(tempfile.mkdtemp(prefix="ph-pr-"))  # short: conmon socket paths must fit
    build_test_image(state / "images" / "import" / "busybox.tar")
    try:
        a = RuncAgent(state, f"/pilothouse-probe-test-{uuid.uuid4().hex[:8]}", flags)
    except BaseException:
        shutil.rmtree(state, ignore_errors=True)
        raise
    try:
        yield a
    finally:
        await clean_up(a)


async def _containers(a: Agent) -> list[str]:
    try:
        return [c.id for c in await a.runtime().list()]
    except OSError:  # a container the agent is deleting right now
        return ["?"]


async def clean_up(a: Agent) -> None:
    """SyncPods with an empty set, stop the agent, then delete whatever is left."""
    try:
        if a.proc.poll() is None:
            async with grpc.aio.insecure_channel(a.address) as channel:
                stub = agent_pb2_grpc.NodeAgentStub(channel)
                await stub.SyncPods(agent_pb2.SyncPodsRequest(), timeout=10)
            for _ in range(100):
                if not await _containers(a):
                    break
                await asyncio.sleep(0.1)
    finally:
        stop_agent(a.proc)
        from nodeagent.runtime.cgroups import Cgroups
        from pilothouse.cli.cluster.cleanup import unmount_below

        rt = a.runtime()
        for cid in await _containers(a):
            if cid != "?":
                await rt.delete(cid)
        Cgroups().remove(a.cgroup_parent)
        # Every mount the agent left (rootfs, pod namespaces, volumes): rmtree cannot.
        unmount_below(a.state)
        shutil.rmtree(a.state, ignore_errors=True)


@pytest.fixture
async def agent() -> AsyncIterator[Agent]:
    async with runc_agent("--backoff-initial", "0.2") as a:
        yield a


def ready(pod: objects_pb2.Pod | None) -> str:
    if pod is None:
        return ""
    return next((c.status for c in pod.status.conditions if c.type == "Ready"), "")


def ready_message(pod: objects_pb2.Pod) -> str:
    return next(c.message for c in pod.status.conditions if c.type == "Ready")


async def test_http_readiness_probe_follows_the_page_and_never_restarts(agent: Agent) -> None:
    pod = make_pod("web", "exec httpd -f -p 8080 -h /www")
    c = pod.spec.containers[0]
    c.ports.add(name="http", container_port=8080)
    c.readiness_probe.http_get.path = "/index.html"
    c.readiness_probe.http_get.port.string_value = "http"
    c.readiness_probe.period_seconds = 1
    c.readiness_probe.failure_threshold = 1
    c.startup_probe.tcp_socket.port.number_value = 8080
    c.startup_probe.period_seconds = 1
    c.startup_probe.failure_threshold = 30
    shell = RuncExec(runc="runc", root=agent.state / "runtime" / "runc")
    async with grpc.aio.insecure_channel(agent.address) as channel:
        stub = agent_pb2_grpc.NodeAgentStub(channel)
        resp = await stub.SyncPods(agent_pb2.SyncPodsRequest(pods=[pod]))
        assert dict(resp.rejected) == {}
        pods = await wait_for(stub, "Ready", lambda s: ready(s.get("web")) == "True")
        status = pods["web"].status.container_statuses[0]
        assert status.ready and status.started, f"Ready pod with unready container: {status}"

        gone = await shell.exec("default_web_app_0", ["rm", "/www/index.html"], time_limit=10)
        assert gone.exit_code == 0, gone.output
        pods = await wait_for(stub, "not Ready", lambda s: ready(s.get("web")) == "False")
        message = ready_message(pods["web"])
        assert "Readiness probe failed: HTTP probe failed with statuscode: 404" in message, (
            f"describe pod would not say why the pod is not ready: {message!r}"
        )
        status = pods["web"].status.container_statuses[0]
        assert status.state.HasField("running") and status.restart_count == 0, (
            f"a failing readiness probe stopped or restarted the container: {status}"
        )

        back = await shell.exec(
            "default_web_app_0", ["sh", "-c", "echo back > /www/index.html"], time_limit=10
        )
        assert back.exit_code == 0, back.output
        pods = await wait_for(stub, "Ready again", lambda s: ready(s.get("web")) == "True")
        assert pods["web"].status.container_statuses[0].restart_count == 0


async def test_failing_exec_liveness_probe_restarts_the_container(agent: Agent) -> None:
    pod = make_pod("sick", "exec sleep 3600")  # sleep as PID 1 ignores SIGTERM
    live = pod.spec.containers[0].liveness_probe
    live.exec.command.extend(["cat", "/tmp/healthy"])
    live.period_seconds = 1
    live.failure_threshold = 2
    live.termination_grace_period_seconds = 1
    async with grpc.aio.insecure_channel(agent.address) as channel:
        stub = agent_pb2_grpc.NodeAgentStub(channel)
        await stub.SyncPods(agent_pb2.SyncPodsRequest(pods=[pod]))
        pods = await wait_for(
            stub,
            "restarted by its liveness probe",
            lambda s: (
                s.get("sick") is not None
                and s["sick"].status.container_statuses[0].restart_count >= 1
            ),
        )
    status = pods["sick"].status.container_statuses[0]
    last = status.last_state.terminated
    assert (last.exit_code, last.reason) == (137, "Error"), (
        f"the container killed for failing liveness should end 137/Error: {last}"
    )
    assert "failed liveness probe, will be restarted" in last.message, last.message
    assert "Liveness probe failed: cat: can't open '/tmp/healthy'" in last.message, last.message
    assert last.container_id == "default_sick_app_0"


async def test_exec_probe_that_times_out_fails_and_leaves_no_process_behind(
    agent: Agent,
) -> None:
    pod = make_pod("slow", "exec sleep 3600")
    probe = pod.spec.containers[0].readiness_probe
    probe.exec.command.extend(["sleep", "30"])
    probe.timeout_seconds = 1
    probe.period_seconds = 1
    probe.failure_threshold = 1
    shell = RuncExec(runc="runc", root=agent.state / "runtime" / "runc")
    async with grpc.aio.insecure_channel(agent.address) as channel:
        stub = agent_pb2_grpc.NodeAgentStub(channel)
        await stub.SyncPods(agent_pb2.SyncPodsRequest(pods=[pod]))
        pods = await wait_for(
            stub,
            "not Ready because its probe timed out",
            lambda s: (
                s.get("slow") is not None
                and 'command "sleep 30" timed out' in ready_message(s["slow"])
            ),
        )
        assert ready(pods["slow"]) == "False"
        await asyncio.sleep(4)  # a few more probe periods: leaked probes would pile up
        ps = await shell.exec("default_slow_app_0", ["ps", "-o", "args"], time_limit=10)
    leaked = [line for line in ps.output.splitlines() if line.strip() == "sleep 30"]
    assert len(leaked) <= 1, f"timed-out exec probes keep running in the container:\n{ps.output}"
