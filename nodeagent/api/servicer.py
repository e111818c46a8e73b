"""The NodeAgent gRPC servicer: decode the request, call the PodManager, encode the answer.

Invariants: no decision is made here; domain errors map to gRPC codes in `_abort` only
(PodNotFound → NOT_FOUND, BadRequest → INVALID_ARGUMENT).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import structlog

from nodeagent.api.nodeinfo import NodeFacts
from nodeagent.pods.manager import BadRequest, EventType, PodManager, PodNotFound
from pilothouse.v1 import agent_pb2, agent_pb2_grpc

log = structlog.get_logger(__name__)

_EVENT_TYPES = {
    EventType.UPDATED: agent_pb2.PodStatusEvent.UPDATED,
    EventType.REMOVED: agent_pb2.PodStatusEvent.REMOVED,
}


async def _abort(context: grpc.aio.ServicerContext, error: Exception) -> None:
    code = (
        grpc.StatusCode.NOT_FOUND
        if isinstance(error, PodNotFound)
        else (grpc.StatusCode.INVALID_ARGUMENT)
    )
    await context.abort(code, str(error))


class NodeAgentServicer(agent_pb2_grpc.NodeAgentServicer):
    def __init__(self, *, name: str, pods: PodManager, facts: NodeFacts) -> None:
        self._name = name
        self._pods = pods
        self._facts = facts

    async def SyncPods(
        self, request: agent_pb2.SyncPodsRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.SyncPodsResponse:
        rejected = await self._pods.sync(list(request.pods), fence=request.fence)
        return agent_pb2.SyncPodsResponse(rejected=rejected)

    async def ListPods(
        self, request: agent_pb2.ListPodsRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.ListPodsResponse:
        return agent_pb2.ListPodsResponse(pods=self._pods.pods())

    async def WatchPods(
        self, request: agent_pb2.WatchPodsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_pb2.PodStatusEvent]:
        async for event in self._pods.watch():
            yield agent_pb2.PodStatusEvent(
                type=_EVENT_TYPES[event.type], pod=event.pod, events=event.events
            )

    async def Logs(
        self, request: agent_pb2.LogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_pb2.LogsChunk]:
        try:
            chunks = self._pods.logs(
                namespace=request.namespace,
                pod=request.pod,
                container=request.container,
                tail_lines=request.tail_lines,
                follow=request.follow,
                previous=request.previous,
            )
            async for data in chunks:
                yield agent_pb2.LogsChunk(data=data)
        except (PodNotFound, BadRequest) as error:
            await _abort(context, error)

    async def NodeInfo(
        self, request: agent_pb2.NodeInfoRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.NodeInfoResponse:
        return agent_pb2.NodeInfoResponse(
            name=self._name,
            capacity=self._facts.capacity,
            allocatable=self._facts.allocatable,
            node_info=self._facts.info,
        )
