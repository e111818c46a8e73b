"""The PodStreams and NodeUsage gRPC servicers: exec, attach and port-forward into this node's
pods, and the latest usage sample.

Each stream names its pod and container in its first message; the pod must be one this node
runs (a worker that is not stopping), the container one of its containers, and, for exec and
attach, running. A refusal is one status with one line a person can act on:
NOT_FOUND (no such pod here), INVALID_ARGUMENT (no such container; no command),
FAILED_PRECONDITION (the container does not run; nothing listens on the port),
UNIMPLEMENTED (this node's runtime cannot: the fake runtime of hollow nodes).

Invariants:
- Exec: `started` goes out once the process runs, then its output, then `exit` with its
  code, last; the caller's input, resizes and end of input are passed on as they arrive.
  Whatever way the stream ends (the process, the caller going away, the agent stopping),
  the process is ended and nothing of it is left running (`ExecSession.close`).
- PortForward: one stream is one TCP connection, made from inside the pod's network
  namespace to 127.0.0.1:PORT (as the kubelet does); `connected` first, then data both ways,
  `closed` when the pod's side ends it. Many streams may run at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from nodeagent.pods.manager import PodManager
from nodeagent.pods.status import Running
from nodeagent.pods.usage import UsageSampler
from nodeagent.pods.worker import PodWorker
from nodeagent.probes import netns
from nodeagent.runtime import ContainerNotFound, RuntimeError_, execs
from pilothouse.v1 import agent_pb2, agent_pb2_grpc

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT = 5.0
READ_CHUNK = 64 * 1024


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PodStreamsServicer(agent_pb2_grpc.PodStreamsServicer):
    def __init__(self, *, pods: PodManager, runtime: Any) -> None:
        self._pods = pods
        self._runtime = runtime
        runc = getattr(runtime, "runc", None)
        state_dir = getattr(runtime, "state_dir", None)
        self._runc: tuple[str, Path] | None = (
            (runc, Path(state_dir)) if isinstance(runc, str) and state_dir is not None else None
        )

    # -- exec and attach ----------------------------------------------------------------------

    async def Exec(
        self,
        request_iterator: AsyncIterator[agent_pb2.ExecInput],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[agent_pb2.ExecOutput]:
        start = await _first(request_iterator, "start", context)
        try:
            if not start.command:
                raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "a command is required")
            worker, name, container_id = self._running(start)
            if self._runc is None:
                raise Refused(grpc.StatusCode.UNIMPLEMENTED, "this node's runtime cannot run exec")
            runc, state_dir = self._runc
            size = start.size if start.HasField("size") else agent_pb2.TerminalSize()
            try:
                session = await execs.start_exec(
                    runc=runc,
                    root=state_dir / "runc",
                    container_id=container_id,
                    argv=list(start.command),
                    stdin=start.stdin,
                    tty_size=execs.Size(size.rows or 24, size.cols or 80) if start.tty else None,
                    scratch=state_dir / "execs",
                )
            except (RuntimeError_, OSError) as error:
                raise Refused(grpc.StatusCode.FAILED_PRECONDITION, str(error)) from None
        except Refused as refused:
            await context.abort(refused.code, refused.message)
        log.info(
            "exec.started",
            pod=worker.key,
            container=name,
            tty=start.tty,
            command=list(start.command)[:1],
        )
        pump = asyncio.create_task(_feed(request_iterator, session), name="exec.input")
        try:
            yield agent_pb2.ExecOutput(started=True)
            async for chunk in session.output():
                if chunk.stream is execs.Stream.STDERR:
                    yield agent_pb2.ExecOutput(stderr=chunk.data)
                else:
                    yield agent_pb2.ExecOutput(stdout=chunk.data)
            code = await session.exit_code()
            log.info("exec.ended", pod=worker.key, container=name, exit_code=code)
            yield agent_pb2.ExecOutput(exit=agent_pb2.ExecExit(code=code))
        finally:
            pump.cancel()
            with contextlib.suppress(BaseException):
                await pump
            await session.close()

    async def Attach(
        self,
        request_iterator: AsyncIterator[agent_pb2.ExecInput],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[agent_pb2.ExecOutput]:
        start = await _first(request_iterator, "start", context)
        try:
            if start.stdin:
                raise Refused(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "this node's containers run without stdin: attach can show their output "
                    "only (leave out -i)",
                )
            _worker, name, container_id = self._running(start)
            if self._runc is None:
                raise Refused(grpc.StatusCode.UNIMPLEMENTED, "this node's runtime cannot attach")
            _, state_dir = self._runc
            socket = self._attach_socket(state_dir, container_id)
            try:
                sock = await execs.connect_attach(socket)
            except RuntimeError_ as error:
                raise Refused(grpc.StatusCode.FAILED_PRECONDITION, str(error)) from None
        except Refused as refused:
            await context.abort(refused.code, refused.message)
        output = execs.attached(sock)
        try:
            yield agent_pb2.ExecOutput(started=True)
            async for chunk in output:
                if chunk.stream is execs.Stream.STDERR:
                    yield agent_pb2.ExecOutput(stderr=chunk.data)
                else:
                    yield agent_pb2.ExecOutput(stdout=chunk.data)
            code = await self._exit_code(container_id)
            yield agent_pb2.ExecOutput(
                exit=agent_pb2.ExecExit(code=code, message=f'container "{name}" ended')
            )
        finally:
            await output.aclose()

    # -- port-forward -------------------------------------------------------------------------

    async def PortForward(
        self,
        request_iterator: AsyncIterator[agent_pb2.PortForwardInput],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[agent_pb2.PortForwardOutput]:
        start = await _first(request_iterator, "start", context)
        try:
            worker = self._worker(start.namespace, start.pod)
            if not 0 < start.port < 65536:
                raise Refused(
                    grpc.StatusCode.INVALID_ARGUMENT, f"invalid port number: {start.port}"
                )
            pid = await self._pod_pid(worker)  # its netns (the node's under --network host)
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    sock = await netns.connect("127.0.0.1", start.port, pid=pid)
            except TimeoutError:
                raise Refused(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f'cannot connect to port {start.port} of pod "{start.pod}": timed out',
                ) from None
            except OSError as error:
                why = (error.strerror or str(error)).lower()
                raise Refused(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f'cannot connect to port {start.port} of pod "{start.pod}": dial tcp '
                    f"127.0.0.1:{start.port} in the pod's network: {why}",
                ) from None
        except Refused as refused:
            await context.abort(refused.code, refused.message)
        reader, writer = await asyncio.open_connection(sock=sock)
        pump = asyncio.create_task(_forward_input(request_iterator, writer), name="pf.input")
        try:
            yield agent_pb2.PortForwardOutput(connected=True)
            while data := await reader.read(READ_CHUNK):
                yield agent_pb2.PortForwardOutput(data=data)
            yield agent_pb2.PortForwardOutput(closed=True)
        except ConnectionError:
            yield agent_pb2.PortForwardOutput(closed=True)
        finally:
            pump.cancel()
            with contextlib.suppress(BaseException):
                await pump
            writer.close()

    # -- finding the container ----------------------------------------------------------------

    def _worker(self, namespace: str, pod: str) -> PodWorker:
        key = f"{namespace or 'default'}/{pod}"
        for worker in self._pods.workers():
            if worker.key == key:
                return worker
        raise Refused(
            grpc.StatusCode.NOT_FOUND,
            f'pod "{pod}" does not run on this node (namespace "{namespace or "default"}")',
        )

    def _running(self, start: agent_pb2.ExecStart) -> tuple[PodWorker, str, str]:
        worker = self._worker(start.namespace, start.pod)
        spec = worker.pod.spec
        names = [c.name for c in spec.containers] + [c.name for c in spec.init_containers]
        name = start.container or spec.containers[0].name
        if name not in names:
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"container {name} is not valid for pod {start.pod}",
            )
        rec = worker.records.get(name)
        if rec is None or not rec.container_id or not isinstance(rec.state, Running):
            state = type(rec.state).__name__.lower() if rec is not None else "not created"
            reason = getattr(getattr(rec, "state", None), "reason", None)
            why = f"{state}: {reason.value}" if reason is not None else state
            raise Refused(
                grpc.StatusCode.FAILED_PRECONDITION,
                f'container "{name}" in pod "{start.pod}" is not running ({why})',
            )
        return worker, name, rec.container_id

    async def _pod_pid(self, worker: PodWorker) -> int:
        """A process in the pod's network namespace: any running container's."""
        for rec in worker.records.values():
            if rec.container_id and isinstance(rec.state, Running):
                with contextlib.suppress(ContainerNotFound):
                    state = await self._runtime.state(rec.container_id)
                    if state.pid > 0:
                        return int(state.pid)
        raise Refused(
            grpc.StatusCode.FAILED_PRECONDITION,
            f'pod "{worker.pod.metadata.name}" has no running container to forward to',
        )

    def _attach_socket(self, state_dir: Path, container_id: str) -> Path:
        bundle = state_dir / "containers" / container_id
        try:
            meta = json.loads((bundle / "meta.json").read_text())
        except (OSError, ValueError):
            raise Refused(
                grpc.StatusCode.FAILED_PRECONDITION, f"container {container_id} has no monitor"
            ) from None
        return execs.attach_socket(
            bundle, socket_dir=state_dir / "sockets", container_uuid=str(meta.get("uuid", ""))
        )

    async def _exit_code(self, container_id: str) -> int:
        try:
            async with asyncio.timeout(2.0):
                state = await self._runtime.wait(container_id)
        except (TimeoutError, ContainerNotFound):
            return 0
        return int(state.exit_code or 0)


class NodeUsageServicer(agent_pb2_grpc.NodeUsageServicer):
    def __init__(self, *, name: str, sampler: UsageSampler) -> None:
        self._name = name
        self._sampler = sampler

    async def Usage(
        self, request: agent_pb2.UsageRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.UsageResponse:
        node, pods = self._sampler.latest()
        response = agent_pb2.UsageResponse()
        if node is not None:
            response.node.CopyFrom(
                agent_pb2.NodeUsageSample(
                    name=self._name,
                    timestamp=_timestamp(node.timestamp),
                    window_seconds=node.window_seconds,
                    cpu_nanocores=node.cpu_nanocores,
                    memory_working_set_bytes=node.memory_working_set_bytes,
                )
            )
        for pod in pods:
            response.pods.append(
                agent_pb2.PodUsage(
                    namespace=pod.namespace,
                    name=pod.name,
                    uid=pod.uid,
                    timestamp=_timestamp(pod.timestamp),
                    window_seconds=pod.window_seconds,
                    containers=[
                        agent_pb2.ContainerUsage(
                            name=c.name,
                            cpu_nanocores=c.cpu_nanocores,
                            memory_working_set_bytes=c.memory_working_set_bytes,
                            restarts=c.restarts,
                        )
                        for c in pod.containers
                    ],
                    network_rx_bytes=pod.network_rx_bytes,
                    network_tx_bytes=pod.network_tx_bytes,
                )
            )
        return response


def _timestamp(when: Any) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


async def _first(
    requests: AsyncIterator[Any], field: str, context: grpc.aio.ServicerContext
) -> Any:
    """The stream's first message, which must carry `field` (the start)."""
    try:
        first = await anext(requests)
    except StopAsyncIteration:
        first = None
    if first is None or first.WhichOneof("input") != field:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"the stream must begin with its {field}"
        )
    return getattr(first, field)


async def _feed(requests: AsyncIterator[agent_pb2.ExecInput], session: execs.ExecSession) -> None:
    async for message in requests:
        which = message.WhichOneof("input")
        if which == "stdin":
            await session.write(message.stdin)
        elif which == "stdin_closed":
            await session.close_stdin()
        elif which == "resize":
            session.resize(execs.Size(message.resize.rows, message.resize.cols))
    if not session.tty:
        await session.close_stdin()  # the caller's stream ended: no more input


async def _forward_input(
    requests: AsyncIterator[agent_pb2.PortForwardInput], writer: asyncio.StreamWriter
) -> None:
    with contextlib.suppress(ConnectionError):
        async for message in requests:
            which = message.WhichOneof("input")
            if which == "data":
                writer.write(message.data)
                await writer.drain()
            elif which == "close_write" and writer.can_write_eof():
                writer.write_eof()
        if writer.can_write_eof():
            writer.write_eof()  # the caller's stream ended: no more input
