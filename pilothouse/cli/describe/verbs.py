"""`pilothouse describe`: the command line, and `page`, which puts an object's sections together
in kubectl's order for its kind (see the package docstring for the invariants).
"""

from __future__ import annotations

import argparse
from datetime import datetime

from google.protobuf.message import Message

from pilothouse.cli import controlplanes, resources
from pilothouse.cli.context import Context
from pilothouse.cli.describe import kinds15, nodes, podconfig, sections, services, workloads
from pilothouse.cli.sheet import Sheet
from pilothouse.client import Client
from pilothouse.v1 import objects_pb2 as o


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "describe",
        help="show the details of an object, with its events",
        description="Show an object's details and events: `describe KIND NAME`.",
    )
    parser.add_argument(
        "resources", nargs="+", metavar="RESOURCE", help="KIND [NAME...] or KIND/NAME..."
    )
    parser.add_argument("-n", "--namespace", default=None)
    parser.add_argument("-l", "--selector", default="")


async def run(args: argparse.Namespace, ctx: Context) -> int:
    if controlplanes.wanted(args.resources):  # members, not objects of a kind
        return await controlplanes.describe(args, ctx)
    targets = resources.parse_targets(args.resources, verb="describe")
    wanted = resources.selector(args.selector)
    namespace = ctx.namespace(args.namespace)
    pages: list[str] = []
    async with ctx.connect() as client:
        for target in targets:
            if target.names:
                objects = [
                    await client.get(target.kind, name, namespace=namespace)
                    for name in target.names
                ]
            else:
                listed = await client.list(target.kind, namespace=namespace)
                objects = [m for m in listed.items if resources.matches(m, wanted)]
            for obj in objects:
                pages.append(await page(client, obj, now=ctx.now()))
    if not pages:
        ctx.warn(f"No resources found in {namespace} namespace.")
    ctx.print("\n\n".join(pages))
    return 0


async def page(client: Client, obj: Message, *, now: datetime) -> str:
    """The describe text of one object."""
    sheet = Sheet()
    if isinstance(obj, o.Deployment):
        await workloads.deployment(sheet, client, obj)
    elif isinstance(obj, o.ReplicaSet):
        workloads.replicaset(sheet, obj)
    elif isinstance(obj, o.Pod):
        workloads.pod(sheet, obj)
    elif isinstance(obj, o.Node):
        await nodes.node(sheet, client, obj, now=now)
    elif isinstance(obj, o.Event):
        sections.event(sheet, obj)
    elif isinstance(obj, o.Service):
        await services.service(sheet, client, obj)
    elif isinstance(obj, o.EndpointSlice):
        services.endpoint_slice(sheet, obj)
    elif isinstance(obj, o.ConfigMap):
        sections.metadata(sheet, obj.metadata)
        podconfig.config_map(sheet, obj)
    elif isinstance(obj, o.Secret):
        sections.metadata(sheet, obj.metadata)
        podconfig.secret(sheet, obj)
    elif type(obj) in kinds15.DESCRIBERS:
        kinds15.DESCRIBERS[type(obj)](sheet, obj)
    if not isinstance(obj, o.Event):
        sections.event_table(sheet, await sections.events_of(client, obj), now=now)
    return sheet.render()
