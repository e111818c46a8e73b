"""The PodAccess and ResourceUsage services: exec, attach and port-forward proxied to the agent
of the pod's node, and the agents' usage samples (`pilothouse top`).

Before any node is dialled, the pod is checked against the store, so a bad request ends with
one status and one line, in kubectl's words where kubectl has them:
- no such pod: NOT_FOUND `pods "x" not found`;
- a pod that has finished: FAILED_PRECONDITION `cannot exec into a container in a completed
  pod; current phase is Succeeded`; not bound to a node yet: FAILED_PRECONDITION;
- a container the pod lacks: INVALID_ARGUMENT `container c is not valid for pod x`;
- a container that is not running: FAILED_PRECONDITION, with its waiting reason.
Then the stream is relayed message for message, both ways, to the agent's PodStreams over the
control plane's mutual-TLS channel to it (the agent checks again: the store may be behind);
the agent's refusals keep its code and words (`AgentClient.failed`).

Invariants: a relay ends when either side ends; the agent's call is cancelled when the CLI
goes away, which ends the process in the container (the agent's invariant).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import structlog

from controlplane.api.errors import Failure, translated
from controlplane.nodes import conditions
from controlplane.nodes.agent import Connect, connector
from controlplane.nodes.usage import UsageGatherer
from controlplane.objects import ObjectStore
from pilothouse import selectors
from pilothouse.kinds import Kind
from pilothouse.v1 import agent_pb2, controlplane_pb2, controlplane_pb2_grpc, objects_pb2

log = structlog.get_logger(__name__)


class PodAccessServicer(controlplane_pb2_grpc.PodAccessServicer):
    def __init__(self, objects: ObjectStore, *, connect: Connect | None = None) -> None:
        self._objects = objects
        self._connect = connect or connector()

    async def Exec(
        self,
        request_iterator: AsyncIterator[agent_pb2.ExecInput],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[agent_pb2.ExecOutput]:
        async with translated(context, method="Exec"):
            start = await _start(request_iterator, "start")
            if not start.command:
                raise Failure(grpc.StatusCode.INVALID_ARGUMENT, "a command is required")
            async for out in self._relay("Exec", start, request_iterator, verb="exec into"):
                yield out

    async def Attach(
        self,
        request_iterator: AsyncIterator[agent_pb2.ExecInput],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[agent_pb2.ExecOutput]:
        async with translated(context, method="Attach"):
            start = await _start(request_iterator, "start")
            async for out in self._relay("Attach", start, request_iterator, verb="attach to"):
                yield out

    async def PortForward(
        self,
        request_iterator: AsyncIterator[agent_pb2.PortForwardInput],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[agent_pb2.PortForwardOutput]:
        async with translated(context, method="PortForward"):
            start = await _start(request_iterator, "start")
            pod = await self._objects.get(Kind.POD, start.namespace, start.pod)
            _check_phase(pod, verb="forward a port to")
            address, node = await self._agent_of(pod)
            first = agent_pb2.PortForwardInput(start=start)
            async with self._connect(address, node) as agent:
                call = agent.streams().PortForward(_chain(first, request_iterator))
                try:
                    async for out in call:
                        yield out
                except grpc.aio.AioRpcError as error:
                    raise agent.failed("PortForward", error) from None
                finally:
                    call.cancel()

    async def _relay(
        self,
        method: str,
        start: agent_pb2.ExecStart,
        requests: AsyncIterator[agent_pb2.ExecInput],
        *,
        verb: str,
    ) -> AsyncIterator[agent_pb2.ExecOutput]:
        pod = await self._objects.get(Kind.POD, start.namespace, start.pod)
        _check_phase(pod, verb=verb)
        start.container = _check_container(pod, start.container)
        address, node = await self._agent_of(pod)
        log.info(
            "pod.stream",
            method=method,
            namespace=pod.metadata.namespace,
            pod=pod.metadata.name,
            container=start.container,
            node=node,
        )
        first = agent_pb2.ExecInput(start=start)
        async with self._connect(address, node) as agent:
            stub = agent.streams()
            call = (stub.Exec if method == "Exec" else stub.Attach)(_chain(first, requests))
            try:
                async for out in call:
                    yield out
            except grpc.aio.AioRpcError as error:
                raise agent.failed(method, error) from None
            finally:
                call.cancel()

    async def _agent_of(self, pod: objects_pb2.Pod) -> tuple[str, str]:
        node = await self._objects.get(Kind.NODE, "", pod.spec.node_name)
        address = conditions.endpoint(node)
        if address is None:
            raise Failure(
                grpc.StatusCode.UNAVAILABLE,
                f'node "{node.metadata.name}" has not registered an agent address',
            )
        return address, node.metadata.name


class ResourceUsageServicer(controlplane_pb2_grpc.ResourceUsageServicer):
    def __init__(self, objects: ObjectStore, usage: UsageGatherer) -> None:
        self._objects = objects
        self._usage = usage

    async def TopPods(
        self, request: controlplane_pb2.TopPodsRequest, context: grpc.aio.ServicerContext
    ) -> controlplane_pb2.TopPodsResponse:
        async with translated(context, method="TopPods"):
            pods, errors = await self._usage.pods(request.namespace or None)
            if request.label_selector:
                wanted = selectors.parse(request.label_selector)
                listed = await self._objects_labels(request.namespace or None)
                pods = [p for p in pods if wanted.matches(listed.get((p.namespace, p.name), {}))]
            return controlplane_pb2.TopPodsResponse(pods=pods, errors=errors)
        raise AssertionError("unreachable")

    async def TopNodes(
        self, request: controlplane_pb2.TopNodesRequest, context: grpc.aio.ServicerContext
    ) -> controlplane_pb2.TopNodesResponse:
        async with translated(context, method="TopNodes"):
            gathered = await self._usage.gather()
            return controlplane_pb2.TopNodesResponse(
                nodes=[s.node for s in gathered.nodes.values() if s.HasField("node")],
                errors=gathered.errors,
            )
        raise AssertionError("unreachable")

    async def _objects_labels(self, namespace: str | None) -> dict[tuple[str, str], Any]:
        listed = await self._objects.list(Kind.POD, namespace)
        return {(p.metadata.namespace, p.metadata.name): p.metadata.labels for p in listed.items}


def _check_phase(pod: objects_pb2.Pod, *, verb: str) -> None:
    phase = pod.status.phase or "Pending"
    if phase in ("Succeeded", "Failed"):
        raise Failure(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"cannot {verb} a container in a completed pod; current phase is {phase}",
        )
    if not pod.spec.node_name:
        raise Failure(
            grpc.StatusCode.FAILED_PRECONDITION,
            f'pod "{pod.metadata.name}" is not running: it is not scheduled to a node yet',
        )


def _check_container(pod: objects_pb2.Pod, name: str) -> str:
    spec = pod.spec
    names = [c.name for c in spec.containers] + [c.name for c in spec.init_containers]
    name = name or spec.containers[0].name
    if name not in names:
        raise Failure(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"container {name} is not valid for pod {pod.metadata.name}",
        )
    statuses = [*pod.status.container_statuses, *pod.status.init_container_statuses]
    status = next((s for s in statuses if s.name == name), None)
    if status is None or not status.state.HasField("running"):
        why = "not started"
        if status is not None and status.state.HasField("waiting"):
            why = status.state.waiting.reason or "waiting"
        elif status is not None and status.state.HasField("terminated"):
            why = f"terminated: {status.state.terminated.reason or 'exited'}"
        raise Failure(
            grpc.StatusCode.FAILED_PRECONDITION,
            f'container "{name}" in pod "{pod.metadata.name}" is not running ({why})',
        )
    return name


async def _start(requests: AsyncIterator[Any], field: str) -> Any:
    first = None
    with contextlib.suppress(StopAsyncIteration):
        first = await anext(requests)
    if first is None or first.WhichOneof("input") != field:
        raise Failure(grpc.StatusCode.INVALID_ARGUMENT, f"the stream must begin with its {field}")
    return getattr(first, field)


async def _chain(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    yield first
    async for item in rest:
        yield item
