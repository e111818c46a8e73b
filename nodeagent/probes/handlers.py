"""Probe handlers: exec inside the container, HTTP GET and TCP connect to it, as the kubelet does.

- exec: the command runs inside the container (its namespaces, cgroup, env, user); exit 0 is
  success, anything else a failure whose message is the command's output (first 10 KiB).
- httpGet: success when 200 <= status < 400 (redirects are not followed: a 3xx is success);
  HTTPS without certificate verification; headers `User-Agent: kube-probe/…` and
  `Accept: */*` unless the probe sets them. The request is built and the response parsed by
  h11 (an HTTP/1.1 library), never by joining strings: a header value or path with CR/LF is
  refused by h11 (and, before that, at apply), so a probe sends exactly one request.
- tcpSocket: success when a connection opens.
Where they connect: the pod IP if the pod has one, else 127.0.0.1, always from inside the
container's own network namespace (so probes work whether or not the node can route to the
pod, and a probe can reach nothing the pod itself could not). A probe `host` other than the
pod's IP points outside the pod: it is refused unless the agent runs with
`--allow-probe-host` (an administrator's decision), and even then the connection is made from
the pod's namespace, never from the node's. Only a pod on the node's network (agent
`--network host`) is ever probed from the agent's own namespace.

Invariants: `check` never raises for a failed check; a check that outlives its timeout is a
failure with the kubelet's words ("timed out", "i/o timeout", "context deadline exceeded");
an exec that timed out is killed inside the container, not left running; no check opens a
socket in the node's network namespace for a pod that has one of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shlex
import signal
import socket
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import h11
import structlog

from nodeagent.probes import SUCCESS, Result, Target, failure, grpchealth, has_action, netns
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

MAX_OUTPUT = 10 * 1024  # the kubelet's maxReadLength
READ_CHUNK = 16 * 1024
USER_AGENT = "kube-probe/pilothouse"


@dataclass(frozen=True, slots=True)
class ExecOutcome:
    exit_code: int
    output: str


class Executor(Protocol):
    async def exec(self, container_id: str, argv: list[str], *, time_limit: float) -> ExecOutcome:
        """Run argv inside the running container; TimeoutError when it outlives `time_limit` s."""
        ...


class RuncExec:
    """`runc exec` into a container of a runc root: the Executor for the runc runtime."""

    def __init__(self, *, runc: str, root: Path) -> None:
        self.runc = runc
        self.root = Path(root)

    async def exec(self, container_id: str, argv: list[str], *, time_limit: float) -> ExecOutcome:
        with tempfile.TemporaryDirectory(prefix="ph-exec-") as tmp:
            pid_file = Path(tmp) / "pid"
            proc = await asyncio.create_subprocess_exec(
                self.runc,
                "--root",
                str(self.root),
                "exec",
                "--pid-file",
                str(pid_file),
                container_id,
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            try:
                async with asyncio.timeout(time_limit):
                    out, _ = await proc.communicate()
            except TimeoutError:
                _kill_pid_file(pid_file)  # the command inside the container, then runc
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
                raise
            finally:
                if proc.returncode is None:  # cancelled: leave nothing running
                    _kill_pid_file(pid_file)
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            code = proc.returncode if proc.returncode is not None else -1
            return ExecOutcome(code, out[:MAX_OUTPUT].decode(errors="replace"))


def _kill_pid_file(path: Path) -> None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def resolve_port(port: object, target: Target) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    value: object = port
    if isinstance(port, str):
        if port in target.ports:
            value = target.ports[port]
        elif port.isdigit():
            value = int(port)
        else:
            raise ValueError(f'port "{port}" is not a named port of the container')
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or not 0 < value < 65536:
        raise ValueError(f"invalid port number: {port}")
    return value


def _port_of(value: object, target: Target) -> int:
    """From a google.protobuf.Value (number or string)."""
    kind = value.WhichOneof("kind")  # type: ignore[attr-defined]
    if kind == "number_value":
        return resolve_port(value.number_value, target)  # type: ignore[attr-defined]
    if kind == "string_value":
        return resolve_port(value.string_value, target)  # type: ignore[attr-defined]
    raise ValueError("the probe has no port")


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ProbeRefused(ValueError):
    """The probe may not be run as asked (a host outside the pod, no namespace to run in)."""


async def _open(host: str, port: int, target: Target, *, explicit: bool) -> socket.socket:
    """A connection to host:port from the pod's network namespace (see the module docstring)."""
    if target.pid <= 0 and not target.host_network:
        raise ProbeRefused(
            "the container's network namespace is not known (no process): probes are never "
            "made from the node's network"
        )
    if explicit:  # an allowed probe host: its name resolved by the node, dialled from the pod
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        host = str(infos[0][4][0])
    return await netns.connect(host, port, pid=max(target.pid, 0))


def _dial_error(host: str, port: int, exc: OSError) -> str:
    if isinstance(exc, netns.NamespaceError):
        return exc.strerror or str(exc)
    why = exc.strerror or str(exc)
    if exc.errno is not None and exc.errno == getattr(os, "ECONNREFUSED", 111):
        why = "connection refused"
    return f"dial tcp {_hostport(host, port)}: connect: {why.lower()}"


class ProbeHandlers:
    """The real handlers, dispatching on the probe's action.

    `allow_host`: the agent's `--allow-probe-host`; without it a probe whose host is not the
    pod's own IP fails without connecting anywhere.
    """

    def __init__(self, executor: Executor | None, *, allow_host: bool = False) -> None:
        self._executor = executor
        self._allow_host = allow_host

    def _refuse_host(self, host: str, target: Target) -> None:
        if host and host != target.pod_ip and not self._allow_host:
            raise ProbeRefused(
                f'probe host "{host}" is outside the pod: refused (this node does not allow '
                "probes to leave their pod; an admin may allow it with --allow-probe-host)"
            )

    async def check(self, probe: objects_pb2.Probe, target: Target, *, time_limit: float) -> Result:
        try:
            if probe.HasField("exec"):
                return await self._exec(list(probe.exec.command), target, time_limit=time_limit)
            if probe.HasField("http_get"):
                return await self._http_get(probe.http_get, target, time_limit=time_limit)
            if probe.HasField("tcp_socket"):
                return await self._tcp(probe.tcp_socket, target, time_limit=time_limit)
            if probe.HasField("grpc"):
                return await self._grpc(probe.grpc, target, time_limit=time_limit)
        except ValueError as exc:
            return failure(str(exc))
        return failure("the probe has no handler (exec, httpGet or tcpSocket)")

    async def _exec(self, argv: list[str], target: Target, *, time_limit: float) -> Result:
        if not argv:
            return failure("exec probe has no command")
        if self._executor is None:
            return failure("exec probes are not supported by this node's runtime")
        try:
            out = await self._executor.exec(target.container_id, argv, time_limit=time_limit)
        except TimeoutError:
            return failure(f'command "{shlex.join(argv)}" timed out')
        if out.exit_code == 0:
            return SUCCESS
        return failure(
            out.output.strip() or f'command "{shlex.join(argv)}" exited with {out.exit_code}'
        )

    async def _tcp(
        self, action: objects_pb2.TCPSocketAction, target: Target, *, time_limit: float
    ) -> Result:
        port = _port_of(action.port, target)
        self._refuse_host(action.host, target)
        host = action.host or target.pod_ip or "127.0.0.1"
        try:
            async with asyncio.timeout(time_limit):
                sock = await _open(host, port, target, explicit=bool(action.host))
        except TimeoutError:
            return failure(f"dial tcp {_hostport(host, port)}: i/o timeout")
        except OSError as exc:
            return failure(_dial_error(host, port, exc))
        sock.close()
        return SUCCESS

    async def _grpc(
        self, action: objects_pb2.GRPCAction, target: Target, *, time_limit: float
    ) -> Result:
        """grpc.health.v1.Health/Check on the pod's IP (`grpchealth`): SERVING or failure."""
        host = target.pod_ip or "127.0.0.1"
        address = _hostport(host, action.port)
        try:
            async with asyncio.timeout(time_limit):
                sock = await _open(host, action.port, target, explicit=False)
                reader, writer = await asyncio.open_connection(sock=sock)
                try:
                    healthy, why = await grpchealth.check(
                        reader, writer, authority=address, service=action.service
                    )
                finally:
                    writer.close()
        except TimeoutError:
            return failure(
                f'timeout: failed to connect service "{address}" within {time_limit:g}s: '
                "context deadline exceeded"
            )
        except (OSError, asyncio.IncompleteReadError) as exc:
            return failure(f'failed to connect service "{address}": {exc}')
        return SUCCESS if healthy else failure(why)

    async def _http_get(
        self, action: objects_pb2.HTTPGetAction, target: Target, *, time_limit: float
    ) -> Result:
        port = _port_of(action.port, target)
        self._refuse_host(action.host, target)
        host = action.host or target.pod_ip or "127.0.0.1"
        scheme = (action.scheme or "HTTP").lower()
        if scheme not in ("http", "https"):
            return failure(f'unsupported scheme "{action.scheme}"')
        path = action.path or "/"
        if not path.startswith("/"):
            path = "/" + path
        url = f"{scheme}://{_hostport(host, port)}{path}"
        headers = {"Host": _hostport(host, port), "User-Agent": USER_AGENT, "Accept": "*/*"}
        for h in action.http_headers:
            name = next((k for k in headers if k.lower() == h.name.lower()), h.name)
            headers[name] = h.value
        headers["Connection"] = "close"
        try:
            request = h11.Request(method="GET", target=path, headers=list(headers.items()))
        except h11.LocalProtocolError as exc:  # refused at apply; an old object may hold one
            return failure(f'Get "{url}": the probe\'s request is not valid HTTP: {exc}')
        try:
            async with asyncio.timeout(time_limit):
                sock = await _open(host, port, target, explicit=bool(action.host))
                code = await _exchange(sock, request, scheme=scheme, host=host)
        except TimeoutError:
            return failure(
                f'Get "{url}": context deadline exceeded '
                "(Client.Timeout exceeded while awaiting headers)"
            )
        except OSError as exc:
            if isinstance(exc, ssl.SSLError):
                return failure(f'Get "{url}": {exc}')
            return failure(f'Get "{url}": {_dial_error(host, port, exc)}')
        except ValueError as exc:
            return failure(f'Get "{url}": {exc}')
        if 200 <= code < 400:
            return SUCCESS
        return failure(f"HTTP probe failed with statuscode: {code}")


async def _exchange(sock: socket.socket, request: h11.Request, *, scheme: str, host: str) -> int:
    """Send the request over the connected socket; the response's status code."""
    context = None
    if scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(
        sock=sock, ssl=context, server_hostname=host if context else None
    )
    try:
        http = h11.Connection(our_role=h11.CLIENT)
        writer.write(http.send(request) + (http.send(h11.EndOfMessage()) or b""))
        await writer.drain()
        while True:
            try:
                event = http.next_event()
            except h11.RemoteProtocolError as exc:
                raise ValueError(f"malformed HTTP response: {exc}") from None
            if event is h11.NEED_DATA:
                http.receive_data(await reader.read(READ_CHUNK))
            elif isinstance(event, h11.Response):
                return int(event.status_code)
            elif isinstance(event, h11.ConnectionClosed):
                raise ValueError("the server closed the connection without an HTTP response")
            # h11.InformationalResponse (1xx): the final response follows
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


class Unprobed:
    """For hollow nodes (fake runtime): nothing real to probe, every check passes."""

    async def check(self, probe: objects_pb2.Probe, target: Target, *, time_limit: float) -> Result:
        return SUCCESS if has_action(probe) else failure("the probe has no handler")


class RuntimeExec:
    """A runtime's own `exec(container_id, argv, <time limit>)`, whatever its limit is called."""

    def __init__(self, runtime: Any) -> None:
        self._exec = runtime.exec
        params = list(inspect.signature(self._exec).parameters)
        self._limit = params[2] if len(params) > 2 else "timeout"

    async def exec(self, container_id: str, argv: list[str], *, time_limit: float) -> ExecOutcome:
        out = await self._exec(container_id, argv, **{self._limit: time_limit})
        if isinstance(out, ExecOutcome):
            return out
        code, output = out
        return ExecOutcome(int(code), output if isinstance(output, str) else output.decode())


def for_runtime(runtime: object, *, allow_host: bool = False) -> ProbeHandlers | Unprobed:
    """The handlers that fit a ContainerRuntime: runc gets real ones, the fake none.
    `allow_host`: the agent's --allow-probe-host.

    The fake runtime's pids are made up: entering their namespaces would probe some
    unrelated process of the host, so hollow nodes pass every probe instead.
    """
    from nodeagent.runtime.fake import FakeRuntime

    if isinstance(runtime, FakeRuntime):
        log.debug("probes.unprobed", runtime=type(runtime).__name__)
        return Unprobed()
    if callable(getattr(runtime, "exec", None)):
        return ProbeHandlers(RuntimeExec(runtime), allow_host=allow_host)
    runc = getattr(runtime, "runc", None)
    state_dir = getattr(runtime, "state_dir", None)
    if isinstance(runc, str) and state_dir is not None:
        # The runc runtime keeps runc's state under <state>/runc (nodeagent.runtime.runc).
        return ProbeHandlers(
            RuncExec(runc=runc, root=Path(state_dir) / "runc"), allow_host=allow_host
        )
    log.debug("probes.unprobed", runtime=type(runtime).__name__)
    return Unprobed()
