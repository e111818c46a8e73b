"""The NodeRegistry gRPC service: decode RegisterNode / Heartbeat, call the NodeRegistry.

Invariants: nothing is decided here (see `controlplane.nodes.registry`); errors become status
codes in `controlplane.api.errors` (a node owned by a live agent: FAILED_PRECONDITION; a
heartbeat from an agent that must register again: NOT_FOUND).
"""

from __future__ import annotations

import grpc

from controlplane.api.errors import translated
from controlplane.nodes.registry import NodeRegistry
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc


class NodeRegistryServicer(api_grpc.NodeRegistryServicer):
    def __init__(self, registry: NodeRegistry) -> None:
        self._registry = registry

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
            )
        raise AssertionError("unreachable")

    async def Heartbeat(
        self, request: api.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> api.HeartbeatResponse:
        async with translated(context, method="Heartbeat"):
            await self._registry.heartbeat(
                request.node_name,
                instance_id=request.instance_id,
                status=request.status if request.HasField("status") else None,
            )
            return api.HeartbeatResponse()
        raise AssertionError("unreachable")
