"""`pilothouse node remove NAME`: empty the node, stop its agent for good, delete the Node.

Order: cordon and delete the node's pods (their controllers run them elsewhere) and wait until
they are gone, so the agent stops their containers itself; then, over SSH (the target `node
add` recorded, else root at the node's address), stop and disable the agent and remove its
unit, settings, token file and state; then delete the Node, which cuts off its credentials.
The state directory is kept when something is still mounted under it (never `rm -rf` across a
mount). A host that cannot be reached is reported, and the Node is deleted all the same.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from pilothouse.cli import nodes
from pilothouse.cli.context import Context
from pilothouse.cli.remote import roles, ssh
from pilothouse.cli.remote.roles import FILES, Role
from pilothouse.client import Client, ClientError, ErrorCode
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o


async def run_remove(args: argparse.Namespace, ctx: Context) -> int:
    name = args.name.removeprefix("node/").removeprefix("nodes/")
    async with ctx.connect() as client:
        node = await client.get(Kind.NODE, name)
        assert isinstance(node, o.Node)
        await nodes.set_unschedulable(client, name, unschedulable=True)
        left = await _drain(client, name, wait_seconds=args.timeout)
        if left:
            ctx.warn(f"node/{name}: {left} pod(s) still there after {args.timeout:.0f} s")
        target = _target_of(node)
        try:
            said = await _stop_agent(target, args)
            ctx.print(f"node/{name}: {said} on {target}")
        except (ssh.SshError, OSError) as error:
            ctx.warn(f"node/{name}: agent not stopped, {target} unreachable: {error}")
        try:
            await client.delete(Kind.NODE, name)
        except ClientError as error:
            if error.code is not ErrorCode.NOT_FOUND:
                raise
    ctx.print(f"node/{name} removed")
    return 0


def _target_of(node: o.Node) -> ssh.Target:
    recorded = node.metadata.annotations.get(roles.SSH_ANNOTATION, "")
    if recorded:
        return ssh.Target.parse(recorded)
    address = next((a.address for a in node.status.addresses if a.type == "InternalIP"), "")
    return ssh.Target(user="root", host=address)


async def _drain(client: Client, name: str, *, wait_seconds: float) -> int:
    """Delete the node's pods and wait until they are gone; how many are left."""
    pods = [
        p
        for p in await nodes.pods_on(client, name)
        if not p.metadata.HasField("deletion_timestamp")
    ]
    for pod in pods:
        try:
            await client.delete(Kind.POD, pod.metadata.name, namespace=pod.metadata.namespace)
        except ClientError as error:
            if error.code is not ErrorCode.NOT_FOUND:
                raise
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        remaining = await nodes.pods_on(client, name)
        if not remaining:
            return 0
        await asyncio.sleep(0.5)
    return len(await nodes.pods_on(client, name))


async def _stop_agent(target: ssh.Target, args: argparse.Namespace) -> str:
    files = FILES[Role.AGENT]
    host = await ssh.connect(target, key=args.ssh_key, known_hosts=args.known_hosts)
    async with host:
        if not await host.elevate():
            raise ssh.SshError(f"{target.user} is not root and has no passwordless sudo")
        state = files.state_dir
        await host.run(
            f"systemctl disable --now {files.unit} >/dev/null 2>&1; "
            f"rm -f /etc/systemd/system/{files.unit} {files.defaults} {roles.TOKEN_FILE}; "
            "systemctl daemon-reload",
        )
        mounted = await host.run(f"findmnt -rn -o TARGET | grep -c '^{state}/'", check=False)
        if mounted.stdout.strip() not in ("", "0"):
            return f"agent stopped and disabled; {state} kept (still mounted under it)"
        await host.run(f"rm -rf {state}")
        return "agent stopped and disabled, its unit, settings and state removed"
