"""`pilothouse logs POD`: a container's output, streamed from its node through the control plane.

Invariants: bytes are written as they arrive, unchanged, and flushed per chunk, so `-f` shows
lines as the container writes them. `KIND/NAME` of a deployment, replicaset,
replicationcontroller, job, daemonset or statefulset reads one of its pods, as kubectl does: a
running one, the oldest first, and says on stderr which one it chose when there were several.
"""

from __future__ import annotations

import argparse
import sys

from pilothouse import selectors
from pilothouse.cli import resources
from pilothouse.cli.context import Context
from pilothouse.client import Client
from pilothouse.kinds import Kind

_OWNERS = (
    Kind.DEPLOYMENT,
    Kind.REPLICASET,
    Kind.REPLICATIONCONTROLLER,
    Kind.JOB,
    Kind.DAEMONSET,
    Kind.STATEFULSET,
)
_JOB_UID = "batch.kubernetes.io/controller-uid"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "logs",
        help="print the logs of a pod's container",
        description="Print a container's logs: `logs POD [-c CONTAINER] [-f] [--tail N]`.",
    )
    parser.add_argument("pod", metavar="POD | pod/NAME | KIND/NAME")
    parser.add_argument("-c", "--container", default="")
    parser.add_argument("-f", "--follow", action="store_true")
    parser.add_argument("--tail", type=int, default=-1, help="last N lines (-1: all)")
    parser.add_argument("-p", "--previous", action="store_true", help="the previous instance")
    parser.add_argument("-n", "--namespace", default=None)


async def run(args: argparse.Namespace, ctx: Context) -> int:
    name, kind = args.pod, Kind.POD
    if "/" in name:
        kind, name = resources.single([name], verb="logs")
        if kind is not Kind.POD and kind not in _OWNERS:
            raise resources.UsageError(
                "logs reads pods: give POD, pod/NAME, or KIND/NAME of a deployment, replicaset, "
                "replicationcontroller, job, daemonset or statefulset"
            )
    namespace = ctx.namespace(args.namespace)
    sink = getattr(ctx.out, "buffer", None) if ctx.out is sys.stdout else None
    async with ctx.connect() as client:
        if kind in _OWNERS:
            name = await _pod_of(client, kind, name, namespace=namespace, ctx=ctx)
        async for data in client.logs(
            name,
            namespace=namespace,
            container=args.container,
            tail_lines=args.tail,
            follow=args.follow,
            previous=args.previous,
        ):
            if sink is not None:
                sink.write(data)
                sink.flush()
            else:
                ctx.out.write(data.decode("utf-8", errors="replace"))
                ctx.out.flush()
    return 0


async def _pod_of(client: Client, kind: Kind, name: str, *, namespace: str, ctx: Context) -> str:
    """The pod whose logs `logs KIND/NAME` shows: a running one, the oldest first."""
    owner = await client.get(kind, name, namespace=namespace)
    if kind is Kind.REPLICATIONCONTROLLER:
        labels = dict(owner.spec.selector)
    elif kind is Kind.JOB and not owner.spec.selector.match_labels:
        labels = {_JOB_UID: owner.metadata.uid}  # the selector Kubernetes would generate
    else:
        labels = dict(owner.spec.selector.match_labels)
    wanted = selectors.from_match_labels(labels)
    listed = await client.list(Kind.POD, namespace=namespace, label_selector=str(wanted))
    pods = [p for p in listed.items if not p.metadata.HasField("deletion_timestamp")]
    if not pods:
        raise resources.UsageError(f"{kind.info.plural}/{name} has no pods")
    pods.sort(
        key=lambda p: (
            p.status.phase != "Running",
            p.metadata.creation_timestamp.ToDatetime(),
            p.metadata.name,
        )
    )
    if len(pods) > 1:
        print(f"Found {len(pods)} pods, using pod/{pods[0].metadata.name}", file=ctx.err)
    return str(pods[0].metadata.name)
