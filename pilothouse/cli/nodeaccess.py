"""`pilothouse node approve|revoke NAME`: who may hold a node's certificate (admin only).
(`node add USER@HOST...` and `node remove NAME`, which install and remove agents over SSH,
live in pilothouse.cli.remote and are dispatched from here.)

- `node approve NAME [--ttl 1h]`: the next join for NAME (with any valid token, within the
  time given) may take the name over although a Node NAME exists and is alive, or was revoked;
  the approval is spent by that join.
- `node revoke NAME`: every certificate NAME holds is refused from now on, on every call (the
  deny list); the control plane stops talking to its agent. The node comes back only by
  joining again with an approval. Deleting the Node (`pilothouse delete node NAME`) cuts it off
  the same way; a deleted node joins again with a new token.

Invariant: like `token`, these calls need the admin credentials of the config file and say so
instead of sending a call that can only be refused.
"""

from __future__ import annotations

import argparse
from datetime import UTC

import grpc

from pilothouse import credentials
from pilothouse.cli.context import Context
from pilothouse.cli.remote import flags as remote_flags
from pilothouse.cli.resources import UsageError
from pilothouse.cli.token import parse_ttl, translate
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc

_TIMEOUT = 30.0


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "node",
        help="add or remove nodes over SSH; approve or revoke a node's credentials",
        description="`node add USER@HOST...`: install an agent over SSH and join it; `node "
        "remove NAME`: drain it, stop its agent, delete it; `node approve NAME [--ttl 1h]`: let "
        "the next join take the name NAME over; `node revoke NAME`: refuse every certificate "
        "NAME holds from now on.",
    )
    verbs = parser.add_subparsers(
        dest="node_verb", metavar="add|remove|approve|revoke", required=True
    )
    remote_flags.add_subverbs(verbs)
    approve = verbs.add_parser("approve", help="let the next join for NAME take it over")
    approve.add_argument("name", metavar="NAME")
    approve.add_argument("--ttl", default="1h", help="how long the approval waits, e.g. 30m")
    revoke = verbs.add_parser("revoke", help="cut NAME off: its certificates are refused")
    revoke.add_argument("name", metavar="NAME")


async def run(args: argparse.Namespace, ctx: Context) -> int:
    if args.node_verb == "add":
        from pilothouse.cli.remote.nodes import run_add

        return await run_add(args, ctx)
    if args.node_verb == "remove":
        from pilothouse.cli.remote.removal import run_remove

        return await run_remove(args, ctx)
    material = credentials.from_config(ctx.config)
    if material is None or material.cert_pem is None:
        raise UsageError(
            "node approve|revoke need the admin credentials: pass --config "
            "<data-dir>/admin.conf (written by `pilothouse controlplane`) or set PILOTHOUSE_CONFIG"
        )
    name = args.name.removeprefix("node/").removeprefix("nodes/")
    server = ctx.config.server
    async with credentials.secure_channel(server, material) as channel:
        stub = api_grpc.NodeAccessStub(channel)
        try:
            if args.node_verb == "approve":
                approved = await stub.ApproveNode(
                    api.ApproveNodeRequest(node_name=name, ttl_seconds=round(parse_ttl(args.ttl))),
                    timeout=_TIMEOUT,
                )
                until = approved.expires.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                ctx.print(
                    f"node/{approved.node_name} approved: the next join may take it (until {until})"
                )
                return 0
            revoked = await stub.RevokeNode(api.RevokeNodeRequest(node_name=name), timeout=_TIMEOUT)
            ctx.print(f"node/{revoked.node_name} revoked: its certificates are refused")
            return 0
        except grpc.aio.AioRpcError as error:
            raise translate(error, server) from None


VERBS = {"node": run}
