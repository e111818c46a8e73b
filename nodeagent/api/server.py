"""AgentServer: the grpc.aio server that carries the NodeAgent service.

Invariants: `start()` binds before anything else serves, so a taken port is a clear startup
error and `address` is the real one (port 0 resolved). As a runnable, `run()` serves until
cancelled and then stops with a short grace period (open watches and log follows end).
With `credentials` the port speaks TLS only (the node's mutual TLS, see `nodeagent.main`),
and `interceptors` see every call before the servicer does (who may call, see
`pilothouse.credentials.require_identity`); without them it is plaintext, for standalone and
`--insecure` agents.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc
import structlog

from nodeagent.api.servicer import NodeAgentServicer
from pilothouse.grpcserver import SERVER_OPTIONS, bind, bound_address
from pilothouse.v1 import agent_pb2_grpc

log = structlog.get_logger(__name__)

_STOP_GRACE_SECONDS = 1.0


class AgentServer:
    name = "api"

    def __init__(
        self,
        *,
        servicer: NodeAgentServicer,
        listen: str,
        credentials: grpc.ServerCredentials | None = None,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    ) -> None:
        self._servicer = servicer
        self._listen = listen
        self._credentials = credentials
        self._interceptors = tuple(interceptors)
        self._server: grpc.aio.Server | None = None
        self.address = ""

    async def start(self) -> str:
        server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=self._interceptors or None)
        agent_pb2_grpc.add_NodeAgentServicer_to_server(self._servicer, server)
        port = bind(server, self._listen, self._credentials)
        await server.start()
        self._server = server
        self.address = bound_address(self._listen, port)
        log.info("agent.serving", address=self.address, tls=self._credentials is not None)
        return self.address

    async def run(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        try:
            await self._server.wait_for_termination()
        finally:
            await asyncio.shield(self.stop())

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop(_STOP_GRACE_SECONDS)
            log.info("agent.api_stopped")
