"""`pilothouse scale deployment/NAME --replicas N`: set a Deployment's replica count.

Invariant: only `spec.replicas` changes (through the Scale call, never a whole-object write),
so a concurrent edit of the template is never overwritten.
"""

from __future__ import annotations

import argparse

from pilothouse.cli import output, resources
from pilothouse.cli.context import Context
from pilothouse.kinds import Kind

_SCALABLE = (Kind.DEPLOYMENT, Kind.REPLICASET, Kind.STATEFULSET, Kind.REPLICATIONCONTROLLER)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "scale",
        help="set the number of replicas of a deployment",
        description="Set a Deployment's replicas: `scale deployment/web --replicas 5`.",
    )
    parser.add_argument("resources", nargs="+", metavar="deployment/NAME | deployment NAME")
    parser.add_argument("--replicas", type=int, required=True)
    parser.add_argument("-n", "--namespace", default=None)


async def run(args: argparse.Namespace, ctx: Context) -> int:
    kind, name = resources.single(args.resources, verb="scale")
    if kind not in _SCALABLE:
        raise resources.UsageError(
            f"cannot scale {kind.info.plural}; deployments, replicasets, statefulsets and "
            "replicationcontrollers scale"
        )
    if args.replicas < 0:
        raise resources.UsageError("--replicas must be 0 or more")
    async with ctx.connect() as client:
        await client.scale(
            kind, name, namespace=ctx.namespace(args.namespace), replicas=args.replicas
        )
    ctx.print(f"{output.reference(kind, name)} scaled")
    return 0
