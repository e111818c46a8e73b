"""Security for the control plane's gRPC servers, in one object the API server wires in.

`Security.install(server, listen=…)` adds, in this order:
1. the Join, Tokens and NodeAccess services to the API server;
2. the API port at `listen`: TLS that requires a client certificate from the cluster CA;
3. the join port at `join_listen`, on a gRPC server of its own (`start()`/`stop()` run it):
   TLS without client certificates, where only Join is served.
The authorizer's interceptor must be passed to `grpc.aio.server(interceptors=…)` when the API
server is made (`Security.interceptors()`), since grpc.aio takes interceptors only there.

Why the join port has a server of its own: it is the one port anonymous callers reach, and
gRPC limits (message size, streams, flow-control window) are per server, not per port. It runs
with `grpcserver.JOIN_LIMITS` (64 KiB messages, 64 KiB stream window, 4 streams per
connection), at most `JOIN_CALLS_PER_PEER` calls in flight per peer address, and refuses every
method but Join.* with UNAUTHENTICATED before reading the request (the answer the API's
authorizer gives an anonymous caller), so no other handler is reachable without a certificate.

Invariant: the same Join servicer and the same authorizer decide on both ports; the join port
never hands a request to anything else.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog

from controlplane.auth.admission import NodeAccessRules
from controlplane.auth.authorizer import JOIN_PREFIX, Authorizer
from controlplane.auth.bootstrap import ClusterPki
from controlplane.auth.revocations import Reason, Revocations
from controlplane.auth.servicer import JoinServicer, NodeAccessServicer, TokensServicer
from controlplane.auth.tokens import TokenStore
from pilothouse.process import grpcserver
from pilothouse.process.grpcserver import bind, bound_address
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc

log = structlog.get_logger(__name__)

JOIN_CALLS_PER_PEER = 4
_JOIN_GRACE_SECONDS = 1.0
_DELETE = "/pilothouse.v1.ControlPlane/Delete"
_ANONYMOUS = (
    "this call needs a client certificate signed by the cluster CA (use the admin config the "
    "control plane wrote, or join the node with a token); the join port serves only Join"
)


@dataclass(frozen=True, slots=True)
class Ports:
    api: int
    join: int


def join_listen_for(listen: str) -> str:
    """The default join address: the API's host, the API's port + 1 (port 0 stays 0)."""
    host, _, port = listen.rpartition(":")
    number = int(port) if port.isdigit() else 0
    return f"{host}:{number + 1 if number else 0}"


@dataclass
class Security:
    pki: ClusterPki
    tokens: TokenStore
    join_listen: str
    authorizer: Authorizer = field(default_factory=Authorizer)
    # Who may hold node certificates (takeover rules, approvals, the deny list); None: any
    # token joins any name and nothing is revoked (tests of the plumbing alone).
    access: NodeAccessRules | None = None
    _tokens_servicer: TokensServicer | None = None
    _join: grpcserver.Server | None = None
    _watch: asyncio.Task[None] | None = None

    @property
    def revocations(self) -> Revocations | None:
        """The deny list, which also ends a revoked node's open streams (None: no list)."""
        return self.access.revocations if self.access is not None else None

    def interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        revocations = self.revocations
        if revocations is None:
            return [self.authorizer.interceptor()]
        return [self.authorizer.interceptor(revocations=revocations), NodeDeletion(revocations)]

    def install(self, server: grpc.aio.Server, *, listen: str) -> Ports:
        join = JoinServicer(ca=self.pki.ca, tokens=self.tokens, access=self.access)
        api_grpc.add_JoinServicer_to_server(join, server)
        if self.access is not None:
            api_grpc.add_NodeAccessServicer_to_server(NodeAccessServicer(self.access), server)
        self._tokens_servicer = TokensServicer(
            tokens=self.tokens, ca_cert_hash=self.pki.ca_cert_hash
        )
        api_grpc.add_TokensServicer_to_server(self._tokens_servicer, server)
        api_port = bind(server, listen, self.pki.server_credentials(require_client_cert=True))
        join_port = 0

        def setup(join_server: grpc.aio.Server) -> int:
            nonlocal join_port
            api_grpc.add_JoinServicer_to_server(join, join_server)
            join_port = bind(
                join_server,
                self.join_listen,
                self.pki.server_credentials(require_client_cert=False),
            )
            return join_port

        self._join = grpcserver.Server(
            name="join",
            listen=self.join_listen,
            setup=setup,
            interceptors=[PeerLimit(JOIN_CALLS_PER_PEER), JoinOnly()],
            grace=_JOIN_GRACE_SECONDS,
            limits=grpcserver.JOIN_LIMITS,
        )
        self._join.bind()
        self._tokens_servicer.set_join_address(bound_address(self.join_listen, join_port))
        log.info("auth.ports", api_port=api_port, join_port=join_port)
        return Ports(api=api_port, join=join_port)

    async def start(self) -> None:
        """Read the deny list, keep it in step (a watch), and serve the join port (bound by
        `install`)."""
        if self.access is not None and self._watch is None:
            await self.access.revocations.load()
            self._watch = asyncio.create_task(self._keep_revocations(), name="revocations")
        if self._join is not None:
            await self._join.start()

    async def stop(self) -> None:
        if self._join is not None:
            await self._join.stop()
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch

    async def _keep_revocations(self) -> None:
        assert self.access is not None
        try:
            await self.access.revocations.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("auth.revocations_watch_ended", note="revocations are not followed")
            raise


class NodeDeletion(grpc.aio.ServerInterceptor):
    """A Node deleted through the API cuts its certificates off at once: once ControlPlane/
    Delete of a node has succeeded, and before its answer is sent, the node is on the deny
    list (in memory at once, then in the store)."""

    def __init__(self, revocations: Revocations) -> None:
        self._revocations = revocations

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler_call_details.method != _DELETE or handler is None or not handler.unary_unary:
            return handler
        inner = handler.unary_unary
        revocations = self._revocations

        async def delete(request: Any, context: grpc.aio.ServicerContext) -> Any:
            response = await inner(request, context)
            deleted = response.object if response is not None else None
            if deleted is not None and deleted.WhichOneof("kind") == "node":
                await revocations.revoke(deleted.node.metadata.name, reason=Reason.DELETED)
            return response

        return grpc.unary_unary_rpc_method_handler(
            delete,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class JoinOnly(grpc.aio.ServerInterceptor):
    """Every method but Join.* is refused as an anonymous caller is refused on the API port,
    before its request is read (a handler that never reads its request stream)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        method = handler_call_details.method
        if method.startswith(JOIN_PREFIX):
            return await continuation(handler_call_details)

        async def refuse(requests: Any, context: grpc.aio.ServicerContext) -> None:
            log.warning("auth.denied", identity="anonymous", method=method, port="join")
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, _ANONYMOUS)

        return grpc.stream_unary_rpc_method_handler(refuse)


class PeerLimit(grpc.aio.ServerInterceptor):
    """At most `limit` unary calls in flight per peer address (host, any port): more are
    RESOURCE_EXHAUSTED. Streams per connection are limited by the server's options; this
    bounds a caller that opens many connections."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._in_flight: collections.Counter[str] = collections.Counter()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or not handler.unary_unary:
            return handler
        inner = handler.unary_unary

        async def limited(request: Any, context: grpc.aio.ServicerContext) -> Any:
            peer = peer_host(context.peer())
            if self._in_flight[peer] >= self._limit:
                log.warning("auth.peer_limited", peer=peer, method=handler_call_details.method)
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"too many calls in flight from {peer} (at most {self._limit}); retry later",
                )
            self._in_flight[peer] += 1
            try:
                return await inner(request, context)
            finally:
                self._in_flight[peer] -= 1
                if self._in_flight[peer] <= 0:
                    del self._in_flight[peer]

        return grpc.unary_unary_rpc_method_handler(
            limited,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def peer_host(peer: str) -> str:
    """The address part of gRPC's peer string ("ipv4:127.0.0.1:5000" -> "127.0.0.1")."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    return peer
