"""ApiServer: the grpc.aio server that carries the control plane's services (ControlPlane for
the CLI and controllers, NodeRegistry for the node agents) on one address.

With a `Security` (the default in `controlplane.main`), the same server also carries the Join
and Tokens services, every call passes the authorizer, the listen address requires a client
certificate from the cluster CA, and a second port (`join_address`) serves TLS without client
certificates, where only Join may be called. Without one (`--insecure`) it is plaintext.

Invariants:
- `start()` binds the listen address (and the join port) before anything else runs, so a
  taken port is a clear startup error and `address` is the real one (port 0 resolved).
- As a Runnable, `run()` serves until cancelled, then stops with a short grace period so
  in-flight calls finish and open watches end.
"""

from __future__ import annotations

import asyncio

import grpc
import structlog

from controlplane.api.registry import NodeRegistryServicer
from controlplane.api.servicer import ControlPlaneServicer
from controlplane.auth.serving import Security
from controlplane.nodes.agent import Connect
from controlplane.nodes.registry import NodeRegistry
from controlplane.objects import ObjectStore
from pilothouse.grpcserver import SERVER_OPTIONS, bind, bound_address
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc

log = structlog.get_logger(__name__)

_STOP_GRACE_SECONDS = 2.0


class ApiServer:
    name = "api"
    needs_leadership = False

    def __init__(
        self,
        *,
        objects: ObjectStore,
        listen: str,
        registry: NodeRegistry | None = None,
        connect: Connect | None = None,
        security: Security | None = None,
    ) -> None:
        self._objects = objects
        self._connect = connect
        self._security = security
        self.join_address: str | None = None  # set by start() when secure
        # The node-lifecycle controller reads heartbeat times from the same registry.
        self.registry = registry if registry is not None else NodeRegistry(objects)
        self._listen = listen
        self._server: grpc.aio.Server | None = None
        self._address: str | None = None

    @property
    def address(self) -> str:
        if self._address is None:
            raise RuntimeError("the API server has not been started")
        return self._address

    async def start(self) -> str:
        security = self._security
        server = grpc.aio.server(
            options=SERVER_OPTIONS, interceptors=security.interceptors() if security else None
        )
        api_grpc.add_ControlPlaneServicer_to_server(
            ControlPlaneServicer(self._objects, connect=self._connect), server
        )
        api_grpc.add_NodeRegistryServicer_to_server(NodeRegistryServicer(self.registry), server)
        if security is None:
            port = bind(server, self._listen)
        else:
            ports = security.install(server, listen=self._listen)
            port = ports.api
            self.join_address = bound_address(security.join_listen, ports.join)
        await server.start()
        self._server = server
        self._address = bound_address(self._listen, port)
        log.info(
            "api.serving",
            address=self._address,
            join_address=self.join_address or "",
            secure=security is not None,
        )
        return self._address

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
            log.info("api.stopped")
