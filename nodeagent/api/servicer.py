"""The NodeAgent gRPC servicer: decode the request, call the PodManager, encode the answer.

Invariants: no decision is made here; domain errors map to gRPC codes in `_abort` only
(PodNotFound → NOT_FOUND, BadRequest → INVALID_ARGUMENT). WatchPods carries the pods'
reports and, between them, the node's own events (`NodeEvents`, as NODE reports) as they are
recorded; either source failing ends the stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC
from pathlib import Path

import grpc
import structlog

from nodeagent.api import images as image_listing
from nodeagent.api.nodeinfo import NodeFacts
from nodeagent.api.peerlist import PeerList
from nodeagent.discovery.convert import Pushed
from nodeagent.discovery.sync import ServiceSync
from nodeagent.images import ImageService
from nodeagent.network.routes import PeerRoutes, RoutesOutcome
from nodeagent.pods.configs import Configs
from nodeagent.pods.events import NodeEvents
from nodeagent.pods.manager import BadRequest, EventType, PodManager, PodNotFound
from pilothouse.v1 import agent_pb2, agent_pb2_grpc, objects_pb2

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
    def __init__(
        self,
        *,
        name: str,
        pods: PodManager,
        facts: NodeFacts,
        images: ImageService | None = None,
        image_filesystem: Path | None = None,
        node_events: NodeEvents | None = None,
        services: ServiceSync | None = None,
        routes: PeerRoutes | None = None,
    ) -> None:
        self._services = services
        self._routes = routes  # to the other nodes' pods, from the pushed node list
        self._peers = PeerList(keep=routes is not None)
        self._name = name
        self._pods = pods
        self._facts = facts
        self._images = images
        self._image_filesystem = image_filesystem
        self._node_events = node_events

    async def SyncPods(
        self, request: agent_pb2.SyncPodsRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.SyncPodsResponse:
        routed = None
        peers = self._peers.take(request)
        if isinstance(peers, str):
            routed = RoutesOutcome(programmed=False, error=peers)
        elif self._routes is not None and peers is not None:
            routed = await self._routes.push(peers)
        outcome = None
        if self._services is not None:
            # Out of the node's load balancing first, then stopped (see nodeagent.discovery).
            outcome = await self._services.push(
                pushed(request) if request.services_included else None,
                exclude=leaving(self._pods.pods(), request.pods),
            )
        rejected = await self._pods.sync(
            list(request.pods),
            fence=request.fence,
            configs=Configs.of(request.config_maps, request.secrets),
        )
        return agent_pb2.SyncPodsResponse(
            rejected=rejected,
            services_programmed=outcome.programmed if outcome is not None else True,
            services_error=outcome.error if outcome is not None else "",
            routes_programmed=routed.programmed if routed is not None else True,
            routes_error=routed.error if routed is not None else "",
            peers_version=self._peers.version,
        )

    async def ListPods(
        self, request: agent_pb2.ListPodsRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.ListPodsResponse:
        return agent_pb2.ListPodsResponse(pods=self._pods.pods())

    async def WatchPods(
        self, request: agent_pb2.WatchPodsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_pb2.PodStatusEvent]:
        reports: asyncio.Queue[agent_pb2.PodStatusEvent | BaseException] = asyncio.Queue()

        async def pods() -> None:
            async for event in self._pods.watch():
                reports.put_nowait(
                    agent_pb2.PodStatusEvent(
                        type=_EVENT_TYPES[event.type], pod=event.pod, events=event.events
                    )
                )

        async def node(events: NodeEvents) -> None:
            while True:
                await events.wait()
                reports.put_nowait(
                    agent_pb2.PodStatusEvent(
                        type=agent_pb2.PodStatusEvent.NODE, events=events.drain()
                    )
                )

        def ended(task: asyncio.Task[None]) -> None:
            if not task.cancelled():
                reports.put_nowait(task.exception() or RuntimeError(f"{task.get_name()} ended"))

        sources = [asyncio.create_task(pods(), name="watch.pods")]
        if self._node_events is not None:
            sources.append(asyncio.create_task(node(self._node_events), name="watch.node"))
        for task in sources:
            task.add_done_callback(ended)
        try:
            while True:
                report = await reports.get()
                if isinstance(report, BaseException):
                    raise report
                yield report
        finally:
            for task in sources:
                task.cancel()
            await asyncio.gather(*sources, return_exceptions=True)

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
                since=(
                    request.since_time.ToDatetime(tzinfo=UTC)
                    if request.HasField("since_time")
                    else None
                ),
                timestamps=request.timestamps,
            )
            async for data in chunks:
                yield agent_pb2.LogsChunk(data=data)
        except (PodNotFound, BadRequest) as error:
            await _abort(context, error)

    async def ListImages(
        self, request: agent_pb2.ListImagesRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.ListImagesResponse:
        if self._images is None:
            return agent_pb2.ListImagesResponse()
        return image_listing.listing(
            await self._images.images(),
            pods=self._pods.pods(),
            filesystem=self._image_filesystem,
        )

    async def NodeInfo(
        self, request: agent_pb2.NodeInfoRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.NodeInfoResponse:
        return agent_pb2.NodeInfoResponse(
            name=self._name,
            capacity=self._facts.capacity,
            allocatable=self._facts.allocatable,
            node_info=self._facts.info,
        )


def pushed(request: agent_pb2.SyncPodsRequest) -> Pushed:
    """The Services part of a push."""
    network = request.network
    return Pushed(
        services=tuple(request.services),
        slices=tuple(request.endpoint_slices),
        service_cidr=network.service_cidr,
        cluster_cidr=network.cluster_cidr,
        cluster_domain=network.cluster_domain or "cluster.local",
    )


def leaving(
    running: Sequence[objects_pb2.Pod], desired: Sequence[objects_pb2.Pod]
) -> frozenset[str]:
    """The addresses of this node's pods that the push stops (gone from the set or replaced)."""
    kept = {(p.metadata.namespace or "default", p.metadata.name, p.metadata.uid) for p in desired}
    return frozenset(
        pod.status.pod_ip
        for pod in running
        if pod.status.pod_ip
        and (pod.metadata.namespace or "default", pod.metadata.name, pod.metadata.uid) not in kept
    )
