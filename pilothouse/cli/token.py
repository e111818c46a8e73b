"""`pilothouse token create|list|delete`: bootstrap tokens with which nodes join (admin only).

Invariants: the whole token is printed once, by `create`, on stdout and nothing else there
(scripts capture it, as with `kubeadm token create`); `--print-join-command` prints the line
that joins a node instead: `echo TOKEN | pilothouse agent … --token -`, so the token reaches
the agent on its standard input (echo is the shell's own: no process shows the token in its
command line). The calls need the admin credentials of the config file; without them the verb
says so instead of sending a call that can only be refused.

`--for-node NAME` makes a token that joins only NAME, also over an existing Node (the admin's
approval said in advance, as `pilothouse node approve NAME`); `--single-use` one that the first
join spends; `--usages` what it may be used for (today: join).
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC

import grpc

from pilothouse import credentials
from pilothouse.cli import tables
from pilothouse.cli.context import Context
from pilothouse.cli.resources import UsageError
from pilothouse.client import ClientError, ErrorCode, failover, unreachable_message
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")
_TIMEOUT = 30.0


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "token",
        help="manage bootstrap tokens with which nodes join",
        description="Bootstrap tokens: `token create [--ttl 24h]`, `token list`, "
        "`token delete ID`.",
    )
    verbs = parser.add_subparsers(dest="token_verb", metavar="create|list|delete", required=True)
    create = verbs.add_parser("create", help="create a token and print it")
    create.add_argument("--ttl", default="24h", help="lifetime, e.g. 30m, 24h, 1h30m")
    create.add_argument("--description", default="", help="a note shown by `token list`")
    create.add_argument(
        "--for-node",
        default="",
        metavar="NAME",
        help="the token joins only this node, also over an existing one (an approval)",
    )
    create.add_argument(
        "--single-use", action="store_true", help="the first successful join spends the token"
    )
    create.add_argument(
        "--usages",
        default="join",
        metavar="LIST",
        help="comma-separated usages (default: join)",
    )
    create.add_argument(
        "--print-join-command",
        action="store_true",
        help="print the `pilothouse agent` command that joins a node",
    )
    verbs.add_parser("list", help="list tokens")
    delete = verbs.add_parser("delete", help="revoke tokens")
    delete.add_argument("ids", nargs="+", metavar="ID", help="token id (or the whole token)")


def parse_ttl(text: str) -> float:
    """Seconds in a Go-style duration ("24h", "1h30m", "90s")."""
    value = text.strip()
    if not value or _DURATION.sub("", value):
        raise UsageError(f"--ttl {text!r} is not a duration like 30m, 24h or 1h30m")
    unit = {"h": 3600.0, "m": 60.0, "s": 1.0}
    seconds = sum(float(n) * unit[u] for n, u in _DURATION.findall(value))
    if seconds <= 0:
        raise UsageError("--ttl must be longer than zero")
    return seconds


async def run(args: argparse.Namespace, ctx: Context) -> int:
    material = credentials.from_config(ctx.config)
    if material is None or material.cert_pem is None:
        raise UsageError(
            "token commands need the admin credentials: pass --config <data-dir>/admin.conf "
            "(written by `pilothouse controlplane`) or set PILOTHOUSE_CONFIG"
        )
    server = ctx.config.server
    # Any member of the control plane serves tokens: the first that answers.
    members = failover.split(server)
    async with failover.Members(members, lambda a: credentials.secure_channel(a, material)) as m:
        stub = m.stub(api_grpc.TokensStub)
        try:
            if args.token_verb == "create":
                return await _create(args, ctx, stub, server)
            if args.token_verb == "list":
                return await _list(ctx, stub)
            return await _delete(args, ctx, stub)
        except grpc.aio.AioRpcError as error:
            raise translate(error, server) from None


async def _create(
    args: argparse.Namespace, ctx: Context, stub: api_grpc.TokensStub, server: str
) -> int:
    ttl = parse_ttl(args.ttl)
    usages = [u.strip() for u in args.usages.split(",") if u.strip()]
    created = await stub.CreateToken(
        api.CreateTokenRequest(
            ttl_seconds=round(ttl),
            description=args.description,
            usages=usages,
            node_name=args.for_node,
            single_use=args.single_use,
        ),
        timeout=_TIMEOUT,
    )
    if not args.print_join_command:
        ctx.print(created.token)
        return 0
    ctx.print(join_command(created, server=server, node=args.for_node))
    return 0


def join_command(created: api.CreateTokenResponse, *, server: str, node: str = "") -> str:
    """`echo TOKEN | pilothouse agent …`: the token on the agent's standard input."""
    words = ["pilothouse agent"]
    if node:
        words.append(f"--name {node}")
    words.append(f"--server {server}")
    join_port = created.join_address.rpartition(":")[2]
    host, _, port = server.rpartition(":")
    if port.isdigit() and join_port != str(int(port) + 1):
        words.append(f"--join-server {host}:{join_port}")
    words += [f"--ca-cert-hash {created.ca_cert_hash}", "--token -"]
    return f"echo {created.token} | " + " ".join(words)


async def _list(ctx: Context, stub: api_grpc.TokensStub) -> int:
    listed = await stub.ListTokens(api.ListTokensRequest(), timeout=_TIMEOUT)
    now = ctx.now()
    rows = []
    for token in listed.tokens:
        expires = token.expires.ToDatetime(tzinfo=UTC)
        left = (expires - now).total_seconds()
        rows.append(
            (
                token.id,
                tables.human_duration(left) if left > 0 else "<expired>",
                expires.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                token.state,
                ",".join(token.usages) or "join",
                token.node_name or tables.NONE,
                token.description or tables.NONE,
            )
        )
    if not rows:
        ctx.warn("No bootstrap tokens found.")
        return 0
    headers = ("TOKEN ID", "TTL", "EXPIRES", "STATE", "USAGES", "NODE", "DESCRIPTION")
    ctx.print(tables.render(tables.Table(headers=headers, rows=tuple(rows))))
    return 0


async def _delete(args: argparse.Namespace, ctx: Context, stub: api_grpc.TokensStub) -> int:
    for given in args.ids:
        token_id = given.split(".", 1)[0]
        await stub.DeleteToken(api.DeleteTokenRequest(id=token_id), timeout=_TIMEOUT)
        ctx.print(f'bootstrap token "{token_id}" deleted')
    return 0


def translate(error: grpc.aio.AioRpcError, server: str) -> ClientError:
    code, details = error.code(), (error.details() or "").strip()
    if code is grpc.StatusCode.UNAVAILABLE:
        return ClientError(ErrorCode.UNREACHABLE, unreachable_message(server, details))
    if code is grpc.StatusCode.UNAUTHENTICATED:
        return ClientError(ErrorCode.UNAUTHORIZED, details)
    if code is grpc.StatusCode.PERMISSION_DENIED:
        return ClientError(ErrorCode.FORBIDDEN, details)
    if code is grpc.StatusCode.NOT_FOUND:
        return ClientError(ErrorCode.NOT_FOUND, details)
    if code is grpc.StatusCode.UNIMPLEMENTED:
        return ClientError(
            ErrorCode.UNSUPPORTED,
            f"the control plane at {server} serves no tokens (is it running with --insecure?)",
        )
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return ClientError(ErrorCode.INVALID, details)
    return ClientError(ErrorCode.INTERNAL, f"{code.name}: {details}")
