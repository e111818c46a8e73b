"""`pilothouse cordon|uncordon|drain NODE`: take a node out of scheduling and empty it.

Invariants: cordon and uncordon change only `spec.unschedulable` (read, modify, apply; a write
conflict is retried on a fresh read). Drain cordons first, so no pod it moves lands back on the
node, then deletes the node's pods, which their Deployments re-create elsewhere; pods that no
controller owns would be lost, so drain refuses them unless `--force`.
"""

from __future__ import annotations

import argparse
import asyncio

from pilothouse.cli import resources
from pilothouse.cli.context import Context
from pilothouse.client import Client, ClientError, ErrorCode
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o

_POLL_SECONDS = 0.5
_CONFLICT_RETRIES = 5


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    for verb, text in (
        ("cordon", "mark a node unschedulable"),
        ("uncordon", "mark a node schedulable again"),
    ):
        parser = subparsers.add_parser(verb, help=text, description=text + ".")
        parser.add_argument("node", metavar="NODE")
    drain = subparsers.add_parser(
        "drain",
        help="cordon a node and move its pods elsewhere",
        description="Cordon a node, delete its pods so their Deployments run them elsewhere.",
    )
    drain.add_argument("node", metavar="NODE")
    drain.add_argument("--force", action="store_true", help="also delete pods no controller owns")
    drain.add_argument(
        "--timeout", type=float, default=0.0, help="seconds to wait for the pods to go (0: forever)"
    )


async def run_cordon(args: argparse.Namespace, ctx: Context) -> int:
    async with ctx.connect() as client:
        changed = await set_unschedulable(client, _node_name(args.node), unschedulable=True)
    ctx.print(f"node/{_node_name(args.node)} {'cordoned' if changed else 'already cordoned'}")
    return 0


async def run_uncordon(args: argparse.Namespace, ctx: Context) -> int:
    async with ctx.connect() as client:
        changed = await set_unschedulable(client, _node_name(args.node), unschedulable=False)
    ctx.print(f"node/{_node_name(args.node)} {'uncordoned' if changed else 'already uncordoned'}")
    return 0


async def run_drain(args: argparse.Namespace, ctx: Context) -> int:
    name = _node_name(args.node)
    async with ctx.connect() as client:
        changed = await set_unschedulable(client, name, unschedulable=True)
        ctx.print(f"node/{name} {'cordoned' if changed else 'already cordoned'}")
        pods = [
            p for p in await pods_on(client, name) if not p.metadata.HasField("deletion_timestamp")
        ]
        unmanaged = [p for p in pods if not p.metadata.owner_references]
        if unmanaged and not args.force:
            listed = ", ".join(f"{p.metadata.namespace}/{p.metadata.name}" for p in unmanaged)
            raise resources.UsageError(
                f"cannot delete pods that declare no controller (use --force to override): {listed}"
            )
        for pod in pods:
            ctx.print(f"evicting pod {pod.metadata.namespace}/{pod.metadata.name}")
            try:
                await client.delete(Kind.POD, pod.metadata.name, namespace=pod.metadata.namespace)
            except ClientError as exc:
                if exc.code is not ErrorCode.NOT_FOUND:
                    raise
        remaining = await _wait_gone(client, name, pods, wait_seconds=args.timeout)
        for pod in pods:
            if (pod.metadata.namespace, pod.metadata.name) not in remaining:
                ctx.print(f"pod/{pod.metadata.name} evicted")
        if remaining:
            ctx.error(f"timed out waiting for {len(remaining)} pod(s) to leave node {name}")
            return 1
    ctx.print(f"node/{name} drained")
    return 0


async def set_unschedulable(client: Client, name: str, *, unschedulable: bool) -> bool:
    """Whether the node changed; retried on write conflicts with a fresh read."""
    for _ in range(_CONFLICT_RETRIES):
        node = await client.get(Kind.NODE, name)
        assert isinstance(node, o.Node)
        if node.spec.unschedulable == unschedulable:
            return False
        node.spec.unschedulable = unschedulable
        try:
            await client.apply(node)
        except ClientError as exc:
            if exc.code is ErrorCode.CONFLICT:
                continue
            raise
        return True
    raise ClientError(ErrorCode.CONFLICT, f'node "{name}" kept changing; try again')


async def pods_on(client: Client, node: str) -> list[o.Pod]:
    try:
        listed = await client.list(Kind.POD, field_selector=f"spec.nodeName={node}")
    except ClientError as exc:
        if exc.code is not ErrorCode.INVALID:
            raise
        listed = await client.list(Kind.POD)  # a server without field selectors
    return [p for p in listed.items if isinstance(p, o.Pod) and p.spec.node_name == node]


async def _wait_gone(
    client: Client, node: str, pods: list[o.Pod], *, wait_seconds: float
) -> set[tuple[str, str]]:
    """The pods (namespace, name) still on the node when they are all gone or time is up."""
    wanted = {(p.metadata.namespace, p.metadata.name, p.metadata.uid) for p in pods}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds if wait_seconds > 0 else None
    while True:
        current = {
            (p.metadata.namespace, p.metadata.name, p.metadata.uid)
            for p in await pods_on(client, node)
        }
        remaining = {(ns, name) for ns, name, uid in wanted & current}
        if not remaining or (deadline is not None and loop.time() >= deadline):
            return remaining
        await asyncio.sleep(_POLL_SECONDS)


def _node_name(word: str) -> str:
    if "/" not in word:
        return word
    kind, name = resources.single([word], verb="cordon")
    if kind is not Kind.NODE:
        raise resources.UsageError(f"expected a node, got {word!r}")
    return name
