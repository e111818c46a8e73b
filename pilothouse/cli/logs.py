"""`pilothouse logs POD`: a container's output, streamed from its node through the control plane.

Invariant: bytes are written as they arrive, unchanged, and flushed per chunk, so `-f` shows
lines as the container writes them.
"""

from __future__ import annotations

import argparse
import sys

from pilothouse.cli import resources
from pilothouse.cli.context import Context
from pilothouse.kinds import Kind


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "logs",
        help="print the logs of a pod's container",
        description="Print a container's logs: `logs POD [-c CONTAINER] [-f] [--tail N]`.",
    )
    parser.add_argument("pod", metavar="POD | pod/NAME")
    parser.add_argument("-c", "--container", default="")
    parser.add_argument("-f", "--follow", action="store_true")
    parser.add_argument("--tail", type=int, default=-1, help="last N lines (-1: all)")
    parser.add_argument("-p", "--previous", action="store_true", help="the previous instance")
    parser.add_argument("-n", "--namespace", default=None)


async def run(args: argparse.Namespace, ctx: Context) -> int:
    name = args.pod
    if "/" in name:
        kind, name = resources.single([name], verb="logs")
        if kind is not Kind.POD:
            raise resources.UsageError("logs reads pods: give POD or pod/NAME")
    sink = getattr(ctx.out, "buffer", None) if ctx.out is sys.stdout else None
    async with ctx.connect() as client:
        async for data in client.logs(
            name,
            namespace=ctx.namespace(args.namespace),
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
