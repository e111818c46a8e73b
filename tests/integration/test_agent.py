"""The agent process with real runc and a real image, driven over gRPC (as root).

What a user relies on: SyncPods makes a pod Running, ListPods/WatchPods/Logs show it, and a
`kill -9` of the agent leaves its containers running; the next agent re-adopts them without
restarting them and reports the real exit code of one that ended while no agent ran.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from pilothouse.v1 import agent_pb2, agent_pb2_grpc, objects_pb2
from tests import factories
from tests.integration.test_agent_fake import start_agent, stop_agent

pytestmark = [pytest.mark.root, pytest.mark.slow]


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (namespaces, cgroups, mounts)"
    for tool in ("runc", "conmon"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not Path("/bin/busybox").exists():
        return "busybox-static is not installed"
    return None


class Agent:
    def __init__(self, state: Path, cgroup_parent: str) -> None:
        self.state = state
        self.cgroup_parent = cgroup_parent
        self.proc, self.address = start_agent(
            state, "--cgroup-parent", cgroup_parent, "--backoff-initial", "0.2"
        )

    def restart(self) -> None:
        self.proc, self.address = start_agent(
            self.state, "--cgroup-parent", self.cgroup_parent, "--backoff-initial", "0.2"
        )

    def runtime(self):  # RuncRuntime, imported lazily (root-only module)
        from nodeagent.runtime.runc import RuncRuntime

        return RuncRuntime(self.state / "runtime", cgroup_parent=self.cgroup_parent)


@pytest.fixture
async def agent() -> AsyncIterator[Agent]:
    if reason := _missing():
        pytest.skip(reason)
    from pilothouse.oci.testimage import build_test_image

    state = Path(tempfile.mkdtemp(prefix="ph-ag-"))  # short: conmon socket paths must fit
    build_test_image(state / "images" / "import" / "busybox.tar")
    parent = f"/pilothouse-agent-test-{uuid.uuid4().hex[:8]}"
    try:
        a = Agent(state, parent)
    except BaseException:
        shutil.rmtree(state, ignore_errors=True)
        raise
    try:
        yield a
    finally:
        await _clean_up(a)


async def _clean_up(a: Agent) -> None:
    """SyncPods with an empty set, stop the agent, then delete whatever is left."""
    try:
        if a.proc.poll() is None:
            async with grpc.aio.insecure_channel(a.address) as channel:
                stub = agent_pb2_grpc.NodeAgentStub(channel)
                await stub.SyncPods(agent_pb2.SyncPodsRequest(), timeout=10)
                rt = a.runtime()
                for _ in range(100):
                    if not await rt.list():
                        break
                    await asyncio.sleep(0.1)
    finally:
        stop_agent(a.proc)
        rt = a.runtime()
        for c in await rt.list():
            await rt.delete(c.id)
        from nodeagent.runtime.cgroups import Cgroups

        Cgroups().remove(a.cgroup_parent)
        from nodeagent.runtime import mounts

        for m in (a.state / "runtime" / "containers").glob("*/bundle/rootfs"):
            mounts.unmount(m)
        shutil.rmtree(a.state, ignore_errors=True)


def make_pod(name: str, script: str, *, restart_policy: str = "") -> objects_pb2.Pod:
    """A pod (tests.factories) whose container "app" runs `script` with sh; 2 s grace."""
    app = factories.container(name="app", script=script)
    return factories.pod(name=name, restart_policy=restart_policy, grace=2, containers=[app])


async def wait_for(
    stub: agent_pb2_grpc.NodeAgentStub, what: str, check: object
) -> dict[str, objects_pb2.Pod]:
    """Follow WatchPods until `check(pods by name)` holds; the pods as then seen."""
    seen: dict[str, objects_pb2.Pod] = {}
    watch = stub.WatchPods(agent_pb2.WatchPodsRequest())
    try:
        async with asyncio.timeout(60):
            async for ev in watch:
                if ev.type == agent_pb2.PodStatusEvent.REMOVED:
                    seen.pop(ev.pod.metadata.name, None)
                else:
                    seen[ev.pod.metadata.name] = ev.pod
                if check(seen):  # type: ignore[operator]
                    return seen
    except TimeoutError:
        raise AssertionError(f"pods never became {what}; last seen: {seen}") from None
    finally:
        watch.cancel()
    raise AssertionError(f"WatchPods ended before pods became {what}")


def _state(pod: objects_pb2.Pod) -> objects_pb2.ContainerState:
    return pod.status.container_statuses[0].state


async def test_agent_runs_pods_and_readopts_them_after_kill_9(agent: Agent) -> None:
    web = make_pod("web", "echo hello-from-web; hostname; exec sleep 3600")
    quitter = make_pod("quit", "sleep 4; exit 3", restart_policy="Never")
    async with grpc.aio.insecure_channel(agent.address) as channel:
        stub = agent_pb2_grpc.NodeAgentStub(channel)
        resp = await stub.SyncPods(agent_pb2.SyncPodsRequest(pods=[web, quitter]))
        assert dict(resp.rejected) == {}
        pods = await wait_for(
            stub,
            "Running",
            lambda s: all(n in s and s[n].status.phase == "Running" for n in ("web", "quit")),
        )
        assert pods["web"].status.container_statuses[0].image_id.startswith("sha256:")
        listed = await stub.ListPods(agent_pb2.ListPodsRequest())
        assert sorted(p.metadata.name for p in listed.pods) == ["quit", "web"]
        out = b""
        for _ in range(300):  # up to 30 s on a loaded machine
            out = b"".join(
                [
                    c.data
                    async for c in stub.Logs(
                        agent_pb2.LogsRequest(namespace="default", pod="web", tail_lines=-1)
                    )
                ]
            )
            if b"hello-from-web" in out:
                break
            await asyncio.sleep(0.1)
        assert out.splitlines()[:2] == [b"hello-from-web", b"web"], (
            f"Logs did not return the container's output (or its hostname is wrong): {out!r}"
        )

    rt = agent.runtime()
    before = {c.id: c for c in await rt.list()}
    web_pid = before["default_web_app_0"].pid
    assert web_pid > 0
    stop_agent(agent.proc, sig=signal.SIGKILL)
    await asyncio.sleep(0.5)
    alive = await asyncio.to_thread(os.path.exists, f"/proc/{web_pid}")
    assert alive, "killing the agent killed its container"
    for _ in range(100):  # the quitter ends (exit 3) while no agent runs
        if (await rt.state("default_quit_app_0")).exit_code is not None:
            break
        await asyncio.sleep(0.1)

    agent.restart()
    async with grpc.aio.insecure_channel(agent.address) as channel:
        stub = agent_pb2_grpc.NodeAgentStub(channel)
        listed = {
            p.metadata.name: p for p in (await stub.ListPods(agent_pb2.ListPodsRequest())).pods
        }
        assert set(listed) == {"web", "quit"}, "the restarted agent forgot its pods"
        web_status = listed["web"].status.container_statuses[0]
        assert web_status.state.HasField("running"), f"web is not running: {web_status}"
        assert web_status.restart_count == 0, "re-adoption restarted the container"
        assert web_status.container_id == "default_web_app_0"
        pods = await wait_for(
            stub, "Failed", lambda s: s.get("quit") and s["quit"].status.phase == "Failed"
        )
        term = _state(pods["quit"]).terminated
        assert (term.exit_code, term.reason) == (3, "Error"), (
            f"the exit that happened while the agent was down is misreported: {term}"
        )
    after = await rt.state("default_web_app_0")
    assert after.pid == web_pid, "the container was restarted across the agent restart"
