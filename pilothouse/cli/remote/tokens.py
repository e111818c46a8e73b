"""Join tokens for `node add`: made through the API as `pilothouse token create` makes them.

Each token joins one node (`node_name`), once (`single_use`), within its TTL; `node add`
deletes it once the node is Ready (spent or not). The token's value goes only into a 0600
file on the host, never onto a command line or into a log.
"""

from __future__ import annotations

import grpc

from pilothouse import credentials
from pilothouse.cli.context import Context
from pilothouse.cli.token import translate
from pilothouse.client import failover
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc

_TIMEOUT = 30.0


def _members(ctx: Context) -> failover.Members:
    material = credentials.from_config(ctx.config)
    assert material is not None
    return failover.Members(
        failover.split(ctx.config.server), lambda a: credentials.secure_channel(a, material)
    )


async def create(ctx: Context, *, node: str, ttl_seconds: int, description: str) -> tuple[str, str]:
    """A single-use token that joins only `node`: (its id, the whole token)."""
    async with _members(ctx) as members:
        stub = members.stub(api_grpc.TokensStub)
        try:
            created = await stub.CreateToken(
                api.CreateTokenRequest(
                    ttl_seconds=ttl_seconds,
                    description=description,
                    usages=["join"],
                    node_name=node,
                    single_use=True,
                ),
                timeout=_TIMEOUT,
            )
        except grpc.aio.AioRpcError as error:
            raise translate(error, ctx.config.server) from None
    return created.token.split(".", 1)[0], created.token


async def delete(ctx: Context, token_id: str) -> None:
    """Delete the token (gone already is fine: a spent single-use token may be)."""
    async with _members(ctx) as members:
        stub = members.stub(api_grpc.TokensStub)
        try:
            await stub.DeleteToken(api.DeleteTokenRequest(id=token_id), timeout=_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            if error.code() is not grpc.StatusCode.NOT_FOUND:
                raise translate(error, ctx.config.server) from None
