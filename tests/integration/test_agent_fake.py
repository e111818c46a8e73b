"""The agent process over gRPC with the fake runtime (a hollow node): the API contract."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from pilothouse.v1 import agent_pb2, agent_pb2_grpc
from tests import factories


def start_agent(state_dir: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start `python3 -m nodeagent` on a free port; return the process and its address."""
    addr_file = state_dir / "agent.addr"
    addr_file.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nodeagent",
            "--name",
            "n1",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            str(state_dir),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(state_dir / "agent.log", "ab"),  # noqa: SIM115
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if addr_file.exists() and addr_file.read_text().endswith("\n"):
            return proc, addr_file.read_text().strip()
        if proc.poll() is not None:
            log = (state_dir / "agent.log").read_text()
            raise AssertionError(f"the agent exited with {proc.returncode}:\n{log}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the agent never wrote agent.addr")


def stop_agent(proc: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


@pytest.fixture
def agent() -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    state = Path(tempfile.mkdtemp(prefix="ph-ag-"))
    try:
        proc, address = start_agent(state, "--runtime", "fake")
        try:
            yield proc, address, state
        finally:
            stop_agent(proc)
    finally:
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
async def stub(
    agent: tuple[subprocess.Popen[bytes], str, Path],
) -> AsyncIterator[agent_pb2_grpc.NodeAgentStub]:
    async with grpc.aio.insecure_channel(agent[1]) as channel:
        yield agent_pb2_grpc.NodeAgentStub(channel)


WEB_AND_NAMELESS = (("web", "u1"), ("", "u2"))  # (name, uid): the second is invalid


async def test_sync_list_watch_and_node_info(stub: agent_pb2_grpc.NodeAgentStub) -> None:
    watch = stub.WatchPods(agent_pb2.WatchPodsRequest())
    app = factories.container(name="app")
    pods = [factories.pod(name=n, uid=u, grace=1, containers=[app]) for n, u in WEB_AND_NAMELESS]
    resp = await stub.SyncPods(agent_pb2.SyncPodsRequest(pods=pods))
    assert dict(resp.rejected) == {"default/": "metadata.name is required"}
    phase = ""
    async with asyncio.timeout(20):
        async for ev in watch:
            if ev.pod.metadata.name == "web":
                phase = ev.pod.status.phase
                if phase == "Running":
                    break
    assert phase == "Running", "WatchPods never showed the pod Running"
    listed = await stub.ListPods(agent_pb2.ListPodsRequest())
    assert [(p.metadata.name, p.status.phase) for p in listed.pods] == [("web", "Running")]
    await stub.SyncPods(agent_pb2.SyncPodsRequest())
    async with asyncio.timeout(20):
        async for ev in watch:
            if ev.type == agent_pb2.PodStatusEvent.REMOVED:
                assert ev.pod.metadata.name == "web"
                break
    watch.cancel()
    info = await stub.NodeInfo(agent_pb2.NodeInfoRequest())
    assert info.name == "n1"
    assert info.capacity["cpu"] == str(os.cpu_count())
    assert info.capacity["memory"].endswith("Ki") or info.capacity["memory"][-1].isdigit()
    assert info.capacity["pods"] == "110"
    assert info.node_info.kernel_version == os.uname().release
    assert info.node_info.container_runtime_version
    assert info.node_info.architecture in ("amd64", "arm64")


async def test_logs_of_an_unknown_pod_is_not_found(stub: agent_pb2_grpc.NodeAgentStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in stub.Logs(agent_pb2.LogsRequest(namespace="default", pod="nope")):
            pass
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "nope" in (err.value.details() or "")


def test_sigterm_exits_cleanly(agent: tuple[subprocess.Popen[bytes], str, Path]) -> None:
    proc, _, state = agent
    assert stop_agent(proc) == 0, (state / "agent.log").read_text()
    assert not (state / "agent.addr").exists(), "agent.addr left behind after a clean stop"
