"""`pilothouse port-forward (pod/NAME | svc/NAME | deployment/NAME) [LOCAL:]REMOTE ...`: local
ports forwarded to a pod's ports through the control plane and the agent of its node.

Each local connection is one PortForward stream (many at once); the agent connects to the
pod's port from inside its network namespace. For `svc/NAME` the pod is one behind the
Service's selector and REMOTE is a Service port, mapped to its targetPort (a number, or the
name of the pod's container port), as kubectl does.

Before listening, one connection to each remote port is tried, so a port nothing listens on
is one `error:` line at once, not a failure at the first use. The forward ends, with a line
saying why, when the pod is deleted or stops running (exit code 1, as kubectl's "lost
connection to pod").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator

from pilothouse.cli import podtarget
from pilothouse.cli.context import Context
from pilothouse.cli.usage import UsageError
from pilothouse.client import Client
from pilothouse.client.errors import ClientError, ErrorCode
from pilothouse.kinds import Kind
from pilothouse.v1 import agent_pb2, objects_pb2
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc

CHUNK = 64 * 1024


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "port-forward",
        help="forward local ports to a pod",
        description="Forward local ports to a pod: `port-forward pod/web 8080:80` "
        "(svc/NAME and deployment/NAME choose one of their pods).",
    )
    parser.add_argument("target", metavar="pod/NAME | svc/NAME | deployment/NAME")
    parser.add_argument("ports", nargs="+", metavar="[LOCAL:]REMOTE")
    parser.add_argument(
        "--address", default="127.0.0.1", help="the local address to listen on (127.0.0.1)"
    )
    parser.add_argument("-n", "--namespace", default=None)


def parse_ports(words: list[str]) -> list[tuple[int, str]]:
    """`[LOCAL:]REMOTE` pairs: (local port, remote port or name); local 0: any free port."""
    out = []
    for word in words:
        local, sep, remote = word.rpartition(":")
        if not sep:
            local, remote = remote, remote
        if not remote:
            raise UsageError(f"invalid port {word!r}: [LOCAL:]REMOTE")
        try:
            local_port = int(local) if local else 0
        except ValueError:
            raise UsageError(f"invalid local port {local!r} in {word!r}") from None
        if not 0 <= local_port < 65536:
            raise UsageError(f"invalid local port {local_port} in {word!r}")
        out.append((local_port, remote))
    return out


async def run(args: argparse.Namespace, ctx: Context) -> int:
    kind, name = podtarget.parse(args.target, verb="port-forward")
    wanted = parse_ports(args.ports)
    namespace = ctx.namespace(args.namespace)
    async with ctx.connect() as client:
        pod, owner = await podtarget.resolve(client, kind, name, namespace=namespace, err=ctx.err)
        pairs = [(local, _remote_port(remote, pod, owner)) for local, remote in wanted]
        forward = _Forward(client, pod)
        for _, remote in pairs:
            await forward.check(remote)
        servers = []
        try:
            for local, remote in pairs:
                server = await asyncio.start_server(
                    lambda r, w, port=remote: forward.connection(r, w, port),
                    host=args.address,
                    port=local,
                )
                servers.append(server)
                bound = server.sockets[0].getsockname()[1]
                ctx.print(f"Forwarding from {args.address}:{bound} -> {remote}")
            why = await _pod_gone(client, pod)
        finally:
            for server in servers:
                server.close()
            await forward.close()
    raise ClientError(
        ErrorCode.UNAVAILABLE,
        f'lost connection to pod "{pod.metadata.name}": {why}; the forward ended',
    )


def _remote_port(remote: str, pod: objects_pb2.Pod, owner: object) -> int:
    """The pod's port for `remote`: a Service port mapped to its targetPort, a named container
    port, or a number."""
    if isinstance(owner, objects_pb2.Service):
        for port in owner.spec.ports:
            if str(port.port) == remote or (port.name and port.name == remote):
                target = port.target_port
                kind = target.WhichOneof("kind")
                if kind == "number_value":
                    return int(target.number_value)
                if kind == "string_value":
                    return _named(target.string_value, pod)
                return int(port.port)
        raise UsageError(f'service "{owner.metadata.name}" has no port {remote}')
    if remote.isdigit():
        port = int(remote)
        if not 0 < port < 65536:
            raise UsageError(f"invalid remote port {remote}")
        return port
    return _named(remote, pod)


def _named(name: str, pod: objects_pb2.Pod) -> int:
    if name.isdigit():
        return int(name)
    for container in pod.spec.containers:
        for port in container.ports:
            if port.name == name:
                return int(port.container_port)
    raise UsageError(f'pod "{pod.metadata.name}" has no container port named "{name}"')


async def _pod_gone(client: Client, pod: objects_pb2.Pod) -> str:
    """Waits until the pod is deleted or stops running; why."""
    meta = pod.metadata
    changes = client.watch(
        Kind.POD, namespace=meta.namespace, field_selector=f"metadata.name={meta.name}"
    )
    async for change in changes:
        current = change.object
        if change.type.name == "DELETED" or current.metadata.uid != meta.uid:
            return "the pod was deleted"
        if current.metadata.HasField("deletion_timestamp"):
            return "the pod is being deleted"
        if current.status.phase in ("Succeeded", "Failed"):
            return f"the pod has ended ({current.status.phase})"
    return "the watch of the pod ended"


class _Forward:
    def __init__(self, client: Client, pod: objects_pb2.Pod) -> None:
        self._client = client
        self._stub = client.service(api_grpc.PodAccessStub)
        self._pod = pod
        self._tasks: set[asyncio.Task[None]] = set()

    def _start(self, port: int) -> agent_pb2.PortForwardInput:
        meta = self._pod.metadata
        return agent_pb2.PortForwardInput(
            start=agent_pb2.PortForwardStart(namespace=meta.namespace, pod=meta.name, port=port)
        )

    async def check(self, port: int) -> None:
        """One connection opened and closed: a closed port fails here, once. Nothing is sent
        after the start: a message written while the refusal arrives would replace the
        refusal by gRPC's "Internal error from Core" (grpc/grpc#36066); cancelling closes it."""
        inputs: asyncio.Queue[agent_pb2.PortForwardInput | None] = asyncio.Queue()
        call = self._stub.PortForward(_requests(self._start(port), inputs))
        try:
            with self._client.errors(Kind.POD, self._pod.metadata.name):
                async for out in call:
                    if out.WhichOneof("output") == "connected":
                        return
        finally:
            call.cancel()

    def connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int
    ) -> None:
        task = asyncio.ensure_future(self._relay(reader, writer, port))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int
    ) -> None:
        inputs: asyncio.Queue[agent_pb2.PortForwardInput | None] = asyncio.Queue()
        call = self._stub.PortForward(_requests(self._start(port), inputs))

        async def upstream() -> None:
            while data := await reader.read(CHUNK):
                inputs.put_nowait(agent_pb2.PortForwardInput(data=data))
            inputs.put_nowait(agent_pb2.PortForwardInput(close_write=True))

        pump = asyncio.ensure_future(upstream())
        try:
            with self._client.errors(Kind.POD, self._pod.metadata.name):
                async for out in call:
                    which = out.WhichOneof("output")
                    if which == "data":
                        writer.write(out.data)
                        await writer.drain()
                    elif which == "closed":
                        break
        except (ClientError, ConnectionError) as error:
            print(f"error: forwarding to port {port}: {error}", file=sys.stderr, flush=True)
        finally:
            call.cancel()
            pump.cancel()
            inputs.put_nowait(None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _requests(
    start: agent_pb2.PortForwardInput, inputs: asyncio.Queue[agent_pb2.PortForwardInput | None]
) -> AsyncIterator[agent_pb2.PortForwardInput]:
    yield start
    while (item := await inputs.get()) is not None:
        yield item
