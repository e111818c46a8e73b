"""The NodeRegistry gRPC service: decode RegisterNode / Heartbeat(s), call the NodeRegistry.

Invariants: nothing is decided here (see `controlplane.nodes.registry`); errors become status
codes in `controlplane.api.errors` (a node owned by a live agent: FAILED_PRECONDITION; a
heartbeat from an agent that must register again: NOT_FOUND). A Heartbeats stream is checked
message by message as Heartbeat is call by call (a node beats only for itself:
`Authorizer.decide_node`); a refused message ends the stream with the refusal's status; a
message is answered only when it asks (`ack`). The stream itself is a heartbeat while it is
open (`NodeRegistry.hold`, from its first accepted beat until it ends); a stream whose beats
name another node or instance later holds that one instead. A stream whose certificate is
revoked while it is open (`node revoke`, the Node deleted) ends at once with UNAUTHENTICATED,
as its next call would: an open stream never outlives the deny list's verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc

from controlplane.api.errors import translated
from controlplane.auth.authorizer import Authorizer, node_certificate
from controlplane.auth.revocations import Revocation, Revocations
from controlplane.nodes.registry import NodeRegistry, Stream
from pilothouse import credentials
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc


class NodeRegistryServicer(api_grpc.NodeRegistryServicer):
    def __init__(self, registry: NodeRegistry, revocations: Revocations | None = None) -> None:
        self._registry = registry
        self._revocations = revocations

    async def RegisterNode(
        self, request: api.RegisterNodeRequest, context: grpc.aio.ServicerContext
    ) -> api.RegisterNodeResponse:
        async with translated(context, method="RegisterNode"):
            registered = await self._registry.register(
                request.node, instance_id=request.instance_id
            )
            return api.RegisterNodeResponse(
                node=registered.node,
                heartbeat_interval_ms=round(registered.heartbeat_interval * 1000),
                status_interval_ms=round(registered.status_interval * 1000),
            )
        raise AssertionError("unreachable")

    async def Heartbeat(
        self, request: api.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> api.HeartbeatResponse:
        async with translated(context, method="Heartbeat"):
            await self._beat(request)
            return api.HeartbeatResponse()
        raise AssertionError("unreachable")

    async def Heartbeats(
        self,
        requests: AsyncIterator[api.HeartbeatRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[api.HeartbeatResponse]:
        identity = credentials.peer_identity(context)
        method = "/pilothouse.v1.NodeRegistry/Heartbeats"
        held: Stream | None = None
        cut = self._cut(context)
        try:
            async for request in requests if cut is None else _until(requests, cut):
                if identity is not None:  # without TLS (--insecure) nobody is checked
                    decision = Authorizer.decide_node(identity, request.node_name, method=method)
                    if not decision.allowed:
                        await context.abort(grpc.StatusCode.PERMISSION_DENIED, decision.reason)
                async with translated(context, method="Heartbeats"):
                    await self._beat(request)
                if held is None or (held.name, held.instance) != (
                    request.node_name,
                    request.instance_id,
                ):
                    if held is not None:
                        self._registry.release(held)
                    held = self._registry.hold(request.node_name, request.instance_id)
                if request.ack:  # answering every beat would cost a write per beat
                    yield api.HeartbeatResponse()
            if cut is not None and cut.done():
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, cut.result().describe())
        finally:
            if cut is not None:
                cut.cancel()
            if held is not None:
                self._registry.release(held)

    def _cut(self, context: grpc.aio.ServicerContext) -> asyncio.Future[Revocation] | None:
        """What ends a node's stream when its certificate is revoked (None: nothing can)."""
        if self._revocations is None or (node := node_certificate(context)) is None:
            return None
        name, issued_at = node
        return asyncio.ensure_future(self._revocations.until_refused(name, issued_at=issued_at))

    async def _beat(self, request: api.HeartbeatRequest) -> None:
        await self._registry.heartbeat(
            request.node_name,
            instance_id=request.instance_id,
            status=request.status if request.HasField("status") else None,
        )


async def _until(
    requests: AsyncIterator[api.HeartbeatRequest], cut: asyncio.Future[Revocation]
) -> AsyncIterator[api.HeartbeatRequest]:
    """The stream's messages until it ends, or until `cut` is done (a message that arrives
    with it is not read)."""
    reader = aiter(requests)
    while True:
        read = asyncio.ensure_future(anext(reader, None))
        await asyncio.wait((read, cut), return_when=asyncio.FIRST_COMPLETED)
        if cut.done():
            read.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.RpcError):
                await read
            return
        request = read.result()
        if request is None:
            return
        yield request
