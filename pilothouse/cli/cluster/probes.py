"""Is it serving yet? Readiness checks for the registry, the control plane and the agents,
draining an agent of its pods, and which flags this build's processes show (`shown_flags`).

Every check is one cheap call that answers True/False and never raises for a peer that is
not up yet; `wait_until` turns a check into a wait with a deadline and a readable error.
This is the only module of the cluster package that talks gRPC to an agent.

`tls`: with a secure control plane, the control plane is called with the admin's credentials
and agents with the control plane's own (the only identity an agent answers), verifying the
node's name; None is plaintext (`--insecure`).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import grpc

from pilothouse.client import Client, ClientError
from pilothouse.credentials import TlsMaterial
from pilothouse.credentials import secure_channel as _secure_channel
from pilothouse.kinds import Kind
from pilothouse.process import addressfile
from pilothouse.v1 import agent_pb2, agent_pb2_grpc

CALL_TIMEOUT = 2.0
READY_TIMEOUT_S = 120.0  # how long `up` waits for any one part to serve


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


async def address_from(file: Path, *, what: str, alive: Callable[[], bool]) -> str:
    """Wait for a process to write its bound address ("HOST:PORT") to `file`."""
    address = ""

    async def written() -> bool:
        nonlocal address
        address = await asyncio.to_thread(addressfile.read, file)
        return bool(address)

    await wait_until(written, what=what, deadline_s=READY_TIMEOUT_S, alive=alive)
    return address


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


def _client(address: str, tls: TlsMaterial | None) -> Client:
    creds = tls.channel_credentials() if tls is not None else None
    return Client(address, timeout=CALL_TIMEOUT, credentials=creds)


def _agent_channel(address: str, *, name: str, tls: TlsMaterial | None) -> grpc.aio.Channel:
    if tls is None:
        return grpc.aio.insecure_channel(address)
    return _secure_channel(address, tls, server_name=name)


async def controlplane_serves(address: str, *, tls: TlsMaterial | None = None) -> bool:
    try:
        async with _client(address, tls) as client:
            await client.list(Kind.NODE)
        return True
    except ClientError:
        return False


async def registered_nodes(address: str, *, tls: TlsMaterial | None = None) -> dict[str, str]:
    """Node name -> its pod CIDR, for every Node the control plane has (empty if it does not
    answer)."""
    try:
        async with _client(address, tls) as client:
            listed = await client.list(Kind.NODE)
    except ClientError:
        return {}
    return {
        node.metadata.name: node.spec.pod_cidr  # type: ignore[attr-defined]
        for node in listed.items
    }


async def ready_nodes(address: str, *, tls: TlsMaterial | None = None) -> set[str]:
    """Names of the Nodes the control plane has registered and marked Ready (empty if it
    does not answer)."""
    try:
        async with _client(address, tls) as client:
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


async def node_info(
    address: str, *, name: str = "", tls: TlsMaterial | None = None
) -> agent_pb2.NodeInfoResponse | None:
    """The agent's NodeInfo, or None if it does not answer (`name`: the node, for TLS)."""
    async with _agent_channel(address, name=name, tls=tls) as channel:
        stub = agent_pb2_grpc.NodeAgentStub(channel)
        try:
            return await stub.NodeInfo(agent_pb2.NodeInfoRequest(), timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError:
            return None


async def agent_serves(address: str, *, name: str, tls: TlsMaterial | None = None) -> bool:
    info = await node_info(address, name=name, tls=tls)
    return info is not None and info.name == name


async def drain(
    address: str,
    *,
    name: str,
    state_dir: Path,
    deadline_s: float,
    tls: TlsMaterial | None = None,
) -> bool:
    """Ask the agent to run no pods and route no Services (SyncPods with empty sets) and
    wait until its runtime holds no container. True if it emptied in time.

    The agent stops each container within its grace period and removes its mounts and
    cgroups itself: the clean way. Whatever is left after `deadline_s` is for the forced
    clean-up (`cleanup.sweep`).
    """
    async with _agent_channel(address, name=name, tls=tls) as channel:
        stub = agent_pb2_grpc.NodeAgentStub(channel)
        try:
            # No pods and no Services: the agent also takes its Services table away.
            request = agent_pb2.SyncPodsRequest(services_included=True)
            await stub.SyncPods(request, timeout=CALL_TIMEOUT * 5)
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


async def shown_flags(module: str, wanted: Sequence[str]) -> set[str]:
    """Which of `wanted` the `python3 -m <module> --help` of this build shows."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        "--help",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    text, _ = await proc.communicate()
    words = set(
        text.decode(errors="replace").replace(",", " ").replace("[", " ").replace("]", " ").split()
    )
    return {flag for flag in wanted if flag in words}
