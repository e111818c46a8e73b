"""ApiServer: the grpc.aio server that carries the control plane's services (ControlPlane for
the CLI and controllers, NodeRegistry for the node agents) on one address.

With a `Security` (the default in `controlplane.main`), the same server also carries the Join
and Tokens services, every call passes the authorizer, the listen address requires a client
certificate from the cluster CA, and a second port (`join_address`) serves TLS without client
certificates, where only Join may be called. Without one (`--insecure`) it is plaintext.

Invariants (the shared `pilothouse.process.grpcserver.Server` keeps them):
- `start()` binds the listen address (and the join port) before anything else runs, so a
  taken port is a clear startup error and `address` is the real one (port 0 resolved).
- As a Runnable, `run()` serves until cancelled, then stops with a short grace period so
  in-flight calls finish and open watches end.
"""

from __future__ import annotations

import dataclasses

import grpc
import structlog

from controlplane.api.controlplanes import ControlPlanesServicer
from controlplane.api.hostports import ReservedPorts, port_of
from controlplane.api.metering import Metering
from controlplane.api.podaccess import PodAccessServicer, ResourceUsageServicer
from controlplane.api.registry import NodeRegistryServicer
from controlplane.api.servicer import ControlPlaneServicer
from controlplane.auth.serving import Security
from controlplane.nodes.agent import Connect, connector
from controlplane.nodes.registry import NodeRegistry
from controlplane.nodes.usage import UsageGatherer
from controlplane.objects import ObjectStore
from controlplane.services.addresses import ServiceAddresses
from pilothouse.manifests.validation.policy import ClusterPolicy
from pilothouse.process import grpcserver
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc

log = structlog.get_logger(__name__)

_STOP_GRACE_SECONDS = 2.0


class ApiServer:
    name = "api"

    def __init__(
        self,
        *,
        objects: ObjectStore,
        listen: str,
        registry: NodeRegistry | None = None,
        connect: Connect | None = None,
        security: Security | None = None,
        services: ServiceAddresses | None = None,
        policy: ClusterPolicy | None = None,
        controlplanes: ControlPlanesServicer | None = None,
        usage: UsageGatherer | None = None,
        reserved_ports: ReservedPorts | None = None,
    ) -> None:
        self._objects = objects
        # The host ports no pod may take; this server adds the ports it binds.
        self.reserved_ports = reserved_ports or ReservedPorts(objects)
        self._controlplanes = controlplanes
        self._policy = policy
        self.services = services or ServiceAddresses(objects)
        self._connect = connect
        # The agents' usage samples (top, autoscaling, the dashboard), one cache for all.
        self.usage = usage or UsageGatherer(objects, connect=connect or connector())
        self._security = security
        self.join_address: str | None = None  # set by start() when secure
        # The node-lifecycle controller reads heartbeat times from the same registry.
        self.registry = registry if registry is not None else NodeRegistry(objects)
        self._listen = listen
        self._server = grpcserver.Server(
            name=self.name,
            listen=listen,
            setup=self._setup,
            # Metering first: it sees every call as the guard answered it (refusals too).
            interceptors=(Metering(), *(security.interceptors() if security else ())),
            grace=_STOP_GRACE_SECONDS,
            # Every connection is pinged: an agent's open Heartbeats stream is its heartbeat.
            limits=dataclasses.replace(
                grpcserver.API_LIMITS,
                ping_interval_ms=round(self.registry.heartbeat_interval * 1000),
                ping_timeout_ms=round(self.registry.ping_timeout * 1000),
            ),
        )

    @property
    def address(self) -> str:
        return self._server.address

    @property
    def objects(self) -> ObjectStore:
        return self._objects

    @property
    def connect(self) -> Connect:
        """How this server dials agents (logs, exec, usage), for the dashboard."""
        return self._connect or connector()

    def _setup(self, server: grpc.aio.Server) -> int:
        """Add the services and bind the ports; the API port is returned."""
        api_grpc.add_ControlPlaneServicer_to_server(
            ControlPlaneServicer(
                self._objects,
                connect=self._connect,
                services=self.services,
                policy=self._policy,
                reserved=self.reserved_ports,
            ),
            server,
        )
        api_grpc.add_NodeRegistryServicer_to_server(
            NodeRegistryServicer(
                self.registry,
                self._security.revocations if self._security is not None else None,
            ),
            server,
        )
        api_grpc.add_PodAccessServicer_to_server(
            PodAccessServicer(self._objects, connect=self._connect), server
        )
        api_grpc.add_ResourceUsageServicer_to_server(
            ResourceUsageServicer(self._objects, self.usage), server
        )
        if self._controlplanes is not None:
            api_grpc.add_ControlPlanesServicer_to_server(self._controlplanes, server)
        security = self._security
        if security is None:
            return grpcserver.bind(server, self._listen)
        ports = security.install(server, listen=self._listen)
        self.join_address = grpcserver.bound_address(security.join_listen, ports.join)
        return ports.api

    async def start(self) -> str:
        address = await self._server.start()
        if self._security is not None:
            await self._security.start()  # the join port: a server of its own
        self.reserved_ports.add(port_of(address), port_of(self.join_address or ""))
        log.info(
            "api.serving",
            address=address,
            join_address=self.join_address or "",
            secure=self._security is not None,
        )
        return address

    async def run(self) -> None:
        if not self._server.serving:
            await self.start()
        await self._server.run()

    async def stop(self) -> None:
        if self._security is not None:
            await self._security.stop()
        await self._server.stop()
