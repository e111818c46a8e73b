"""The control plane's client of one node agent: SyncPods, WatchPods, Logs and ListImages.

Invariants:
- Every unary call has a deadline (`timeout`), so a hung agent costs its caller at most that.
  Streams have none (a watch or a followed log lives as long as the agent does); a stream that
  breaks raises `AgentCallFailed` like any call.
- Failures surface as `AgentCallFailed` carrying the gRPC code name and a message that names
  the node and its endpoint; nothing else of gRPC leaks out of this module.
- One channel per client; `close()` (or leaving `async with`) ends it and every open stream.
- With `tls` (the control plane's client certificate and the cluster CA), the channel is
  mutual TLS and the agent must present a certificate for the node's own name, whatever
  address it registered: a node cannot stand in for another.
- A connector with `refuse` (the deny list: a revoked or deleted node that has not joined
  again) dials no agent it names: every call fails as PERMISSION_DENIED with the reason, so
  nothing (no pod, no Secret) is pushed to a cut-off node, and no status is read from it. A
  client made before the node was cut off asks again at every call and every pod change it
  reads, so a long-lived client or an open pod watch is cut off too.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from controlplane.nodes.peers import PeerChanges, PeersState
from controlplane.nodes.services import ServicesState
from pilothouse import credentials as tls_credentials
from pilothouse.process.pings import ping_options
from pilothouse.v1 import agent_pb2, agent_pb2_grpc, objects_pb2

DEFAULT_TIMEOUT = 5.0
# A frozen or cut-off agent under a silent pod watch is noticed within PING_INTERVAL_MS +
# PING_TIMEOUT_MS (15 s), not at TCP's leisure (minutes) nor gRPC's default ping wait (1 min).
PING_INTERVAL_MS = 10_000
PING_TIMEOUT_MS = 5_000


def _options() -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", 64 * 1024**2),
        ("grpc.max_send_message_length", 64 * 1024**2),
        *ping_options(interval_ms=PING_INTERVAL_MS, timeout_ms=PING_TIMEOUT_MS),
        # Reconnect quickly once an agent comes back.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2_000),
    ]


# How the control plane opens a client to an agent: (endpoint "HOST:PORT", node name) -> client.
# One place to add credentials (mTLS) for every caller: node sync and the logs proxy.
Connect = Callable[[str, str], "AgentClient"]


def connector(
    *,
    timeout: float = DEFAULT_TIMEOUT,
    credentials: grpc.ChannelCredentials | None = None,
    tls: tls_credentials.TlsMaterial | None = None,
    refuse: Callable[[str], str | None] | None = None,
) -> Connect:
    def connect(address: str, node: str) -> AgentClient:
        return AgentClient(
            address,
            node=node,
            timeout=timeout,
            credentials=credentials,
            tls=tls,
            refuse=(lambda: refuse(node)) if refuse is not None and node else None,
        )

    return connect


class AgentCallFailed(Exception):
    """A call to an agent failed. `code` is the gRPC status name ("UNAVAILABLE" …)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def unreachable(self) -> bool:
        return self.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED")


class Pushed(dict[str, str]):
    """What the agent answered a push: the pods it rejected (pod -> why), and whether its
    data plane routes by the Services the push carried."""

    def __init__(
        self,
        rejected: Mapping[str, str],
        *,
        services_programmed: bool,
        services_error: str,
        routes_programmed: bool = True,
        routes_error: str = "",
    ) -> None:
        super().__init__(rejected)
        self.services_programmed = services_programmed
        self.services_error = services_error
        self.routes_programmed = routes_programmed
        self.routes_error = routes_error


class PodChangeType(enum.Enum):
    UPDATED = "UPDATED"
    REMOVED = "REMOVED"
    NODE = "NODE"  # events about the node itself (image gc); no pod


@dataclass(frozen=True, slots=True)
class PodChange:
    """One observation streamed by WatchPods: the pod's metadata and the agent's status, and
    the events about the pod the agent recorded since its previous report."""

    type: PodChangeType
    pod: objects_pb2.Pod
    events: tuple[objects_pb2.Event, ...] = ()


_CHANGE_TYPES = {
    agent_pb2.PodStatusEvent.UPDATED: PodChangeType.UPDATED,
    agent_pb2.PodStatusEvent.REMOVED: PodChangeType.REMOVED,
    agent_pb2.PodStatusEvent.NODE: PodChangeType.NODE,
}


class AgentClient:
    def __init__(
        self,
        address: str,
        *,
        node: str = "",
        timeout: float = DEFAULT_TIMEOUT,
        credentials: grpc.ChannelCredentials | None = None,
        tls: tls_credentials.TlsMaterial | None = None,
        refuse: Callable[[], str | None] | None = None,
    ) -> None:
        self.address = address
        self.node = node
        self.timeout = timeout
        self._refuse = refuse
        self._channel: grpc.aio.Channel | None = None
        self._refused = refuse() if refuse is not None else None
        if self._refused is not None:
            return  # no channel: every call fails at once (`_check_refused`)
        options = _options()
        if tls is not None:
            # Verify the agent's certificate names this node, not the address dialed.
            self._channel = tls_credentials.secure_channel(
                address, tls, server_name=node, options=options
            )
        elif credentials is None:
            self._channel = grpc.aio.insecure_channel(address, options=options)
        else:
            self._channel = grpc.aio.secure_channel(address, credentials, options=options)
        self._stub = agent_pb2_grpc.NodeAgentStub(self._channel)

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(grace=None)

    def _check_refused(self) -> None:
        refused = self._refused or (self._refuse() if self._refuse is not None else None)
        if refused is not None:
            raise AgentCallFailed("PERMISSION_DENIED", f"{self._who()} is cut off: {refused}")

    async def sync_pods(
        self,
        pods: Sequence[objects_pb2.Pod],
        *,
        fence: bool = False,
        config_maps: Sequence[objects_pb2.ConfigMap] = (),
        secrets: Sequence[objects_pb2.Secret] = (),
        services: ServicesState | None = None,
        peers: PeersState | None = None,
        peer_changes: PeerChanges | None = None,
    ) -> Pushed:
        """Push the whole desired set; returns the pods the agent rejected, with why. `fence`:
        the agent ends the pods leaving its set at once and answers once they are stopped.
        `config_maps` and `secrets`: those the pods use (and no others). `services`: the
        cluster's Services (None: the agent keeps those it has). `peers`: the cluster's nodes,
        which the agent routes to (None: it keeps its routes); `peer_changes` instead: only
        what changed since a version the agent holds."""
        self._check_refused()
        request = agent_pb2.SyncPodsRequest(
            pods=pods, fence=fence, config_maps=config_maps, secrets=secrets
        )
        if services is not None:
            request.services_included = True
            request.services.extend(services.services)
            request.endpoint_slices.extend(services.slices)
            network = services.network
            request.network.service_cidr = network.service_cidr
            request.network.cluster_cidr = network.cluster_cidr
            request.network.cluster_domain = network.cluster_domain
        if peers is not None:
            request.peers_included = True
            request.peers_version = peers.version
            request.peers.extend(
                agent_pb2.PeerNode(name=p.name, address=p.address, pod_cidr=p.pod_cidr)
                for p in peers.peers
            )
        elif peer_changes is not None:
            request.peers_changes = True
            request.peers_version = peer_changes.version
            request.peers_base = peer_changes.base
            request.peers_removed.extend(peer_changes.removed)
            request.peers.extend(
                agent_pb2.PeerNode(name=p.name, address=p.address, pod_cidr=p.pod_cidr)
                for p in peer_changes.changed
            )
        try:
            response = await self._stub.SyncPods(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as error:
            raise self._failed("SyncPods", error) from None
        return Pushed(
            response.rejected,
            services_programmed=response.services_programmed,
            services_error=response.services_error,
            routes_programmed=(response.routes_programmed or peers is None)
            and (peer_changes is None or response.peers_version == peer_changes.version),
            routes_error=response.routes_error,
        )

    async def watch_pods(self) -> AsyncIterator[PodChange]:
        """The agent's pod statuses: every pod's current one first, then each change."""
        self._check_refused()
        call = self._stub.WatchPods(agent_pb2.WatchPodsRequest())
        try:
            async for event in call:
                self._check_refused()
                change_type = _CHANGE_TYPES.get(event.type)
                if change_type is not None:
                    yield PodChange(type=change_type, pod=event.pod, events=tuple(event.events))
        except grpc.aio.AioRpcError as error:
            raise self._failed("WatchPods", error) from None
        finally:
            call.cancel()
        raise AgentCallFailed("UNAVAILABLE", f"{self._who()} ended its pod watch")

    async def logs(
        self,
        *,
        namespace: str,
        pod: str,
        container: str = "",
        tail_lines: int = -1,
        follow: bool = False,
        previous: bool = False,
        since_time: Timestamp | None = None,
        timestamps: bool = False,
    ) -> AsyncIterator[bytes]:
        """A container's log bytes as the agent streams them."""
        self._check_refused()
        request = agent_pb2.LogsRequest(
            namespace=namespace,
            pod=pod,
            container=container,
            tail_lines=tail_lines,
            follow=follow,
            previous=previous,
            timestamps=timestamps,
        )
        if since_time is not None:
            request.since_time.CopyFrom(since_time)
        call = self._stub.Logs(request, timeout=None if follow else self.timeout * 6)
        try:
            async for chunk in call:
                yield chunk.data
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise AgentCallFailed(error.code().name, error.details() or "") from None
            raise self._failed("Logs", error) from None
        finally:
            call.cancel()

    async def list_images(self) -> agent_pb2.ListImagesResponse:
        """The node's images, their sizes and the pods using them."""
        self._check_refused()
        try:
            return await self._stub.ListImages(agent_pb2.ListImagesRequest(), timeout=self.timeout)
        except grpc.aio.AioRpcError as error:
            raise self._failed("ListImages", error) from None

    async def usage(self) -> agent_pb2.UsageResponse:
        """The agent's latest usage sample of its node and pods (NodeUsage.Usage)."""
        self._check_refused()
        try:
            return await agent_pb2_grpc.NodeUsageStub(self._channel).Usage(
                agent_pb2.UsageRequest(), timeout=self.timeout
            )
        except grpc.aio.AioRpcError as error:
            raise self._failed("Usage", error) from None

    def streams(self) -> agent_pb2_grpc.PodStreamsStub:
        """The agent's PodStreams (exec, attach, port-forward) on this client's channel; the
        caller maps their errors (`failed`)."""
        self._check_refused()
        return agent_pb2_grpc.PodStreamsStub(self._channel)

    def failed(self, method: str, error: grpc.aio.AioRpcError) -> AgentCallFailed:
        """A failed stream of `streams()` as AgentCallFailed: the agent's own refusals (no
        such pod or container, not running, nothing listening) keep its code and words."""
        if error.code() in (
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.UNIMPLEMENTED,
        ):
            return AgentCallFailed(error.code().name, error.details() or "")
        return self._failed(method, error)

    def _who(self) -> str:
        return (
            f'the agent of node "{self.node}" at {self.address}'
            if self.node
            else (f"the agent at {self.address}")
        )

    def _failed(self, method: str, error: grpc.aio.AioRpcError) -> AgentCallFailed:
        code = error.code()
        details = error.details() or code.name
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            message = f"{self._who()} did not answer {method} within {self.timeout:g} s"
        elif code is grpc.StatusCode.UNAVAILABLE:
            message = f"{self._who()} is unreachable: {details}"
        else:
            message = f"{method} on {self._who()} failed: {details}"
        return AgentCallFailed(code.name, message)
