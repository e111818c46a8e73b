"""Is it serving yet? Readiness checks for the registry, the control plane and the agents,
and draining an agent of its pods.

Every check is one cheap call that answers True/False and never raises for a peer that is
not up yet; `wait_until` turns a check into a wait with a deadline and a readable error.
This is the only module of the cluster package that talks gRPC to an agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc

from pilothouse.client import Client, ClientError
from pilothouse.kinds import Kind
from pilothouse.v1 import agent_pb2, agent_pb2_grpc

CALL_TIMEOUT = 2.0


class NotReady(RuntimeError):
    """A part of the cluster did not come up in time."""


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    *,
    what: str,
    deadline_s: float,
    interval: float = 0.1,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Poll `check` until it is true; NotReady after `deadline_s` or once `alive()` is false."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while True:
        if await check():
            return
        if alive is not None and not alive():
            raise NotReady(f"{what}: the process exited")
        if loop.time() > deadline:
            raise NotReady(f"{what}: not ready within {deadline_s:.0f} s")
        await asyncio.sleep(interval)


async def registry_serves(address: str) -> bool:
    def get() -> bool:
        conn = http.client.HTTPConnection(address, timeout=CALL_TIMEOUT)
        try:
            conn.request("GET", "/v2/")
            return conn.getresponse().status in (200, 401)
        except OSError:
            return False
        finally:
            conn.close()

    return await asyncio.to_thread(get)


async def controlplane_serves(address: str) -> bool:
    try:
        async with Client(address, timeout=CALL_TIMEOUT) as client:
            await client.list(Kind.NODE)
        return True
    except ClientError:
        return False


async def ready_nodes(address: str) -> set[str]:
    """Names of the Nodes the control plane has registered and marked Ready (empty if it
    does not answer)."""
    try:
        async with Client(address, timeout=CALL_TIMEOUT) as client:
            listed = await client.list(Kind.NODE)
    except ClientError:
        return set()
    return {
        node.metadata.name  # type: ignore[attr-defined]
        for node in listed.items
        if any(
            c.type == "Ready" and c.status == "True"
            for c in node.status.conditions  # type: ignore[attr-defined]
        )
    }


async def node_info(address: str) -> agent_pb2.NodeInfoResponse | None:
    """The agent's NodeInfo, or None if it does not answer."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = agent_pb2_grpc.NodeAgentStub(channel)
        try:
            return await stub.NodeInfo(agent_pb2.NodeInfoRequest(), timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError:
            return None


async def agent_serves(address: str, *, name: str) -> bool:
    info = await node_info(address)
    return info is not None and info.name == name


async def drain(address: str, *, state_dir: Path, deadline_s: float) -> bool:
    """Ask the agent to run no pods (SyncPods with an empty set) and wait until its runtime
    holds no container. True if it emptied in time.

    The agent stops each container within its grace period and removes its mounts and
    cgroups itself: the clean way. Whatever is left after `deadline_s` is for the forced
    clean-up (`cleanup.sweep`).
    """
    async with grpc.aio.insecure_channel(address) as channel:
        stub = agent_pb2_grpc.NodeAgentStub(channel)
        try:
            await stub.SyncPods(agent_pb2.SyncPodsRequest(), timeout=CALL_TIMEOUT * 5)
        except grpc.aio.AioRpcError:
            return False
    containers = state_dir / "runtime" / "containers"

    async def empty() -> bool:
        with contextlib.suppress(FileNotFoundError):
            return not any(containers.iterdir())
        return True

    try:
        await wait_until(empty, what="drain", deadline_s=deadline_s, interval=0.2)
    except NotReady:
        return False
    return True
