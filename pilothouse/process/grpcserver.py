"""gRPC servers of the control plane and the node agent: options, binding, start and stop.

Invariants:
- Every server is made with explicit `Limits` (issue 11: bounded inputs): `API_LIMITS` (4 MiB
  per received message, 100 concurrent streams per connection; clients may keep idle watches
  open and ping) unless it says otherwise. `JOIN_LIMITS` is for the one port anonymous
  callers reach: 64 KiB messages, 4 streams per connection, idle connections closed after
  30 s and every connection after 5 min, and an HTTP/2 flow-control window of 64 KiB with
  BDP probing off, so a stream never has more than that buffered: gRPC checks the message
  size only once it has the whole message, and without the small window a 60 MiB request
  is read into memory before it is refused.
- A listen address that cannot be bound raises `BindError` naming the address, never a silent
  port 0; the bound address keeps the host that was asked for, with the port actually bound
  (port 0 resolved).
- `Server.start()` binds before anything else of the process runs, so a taken port is a clear
  startup error. As a runnable, `run()` serves until cancelled and then stops with the
  server's grace period, so in-flight calls finish and open watches end; the stop is
  shielded, so a second cancellation cannot cut it short.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
import structlog

from pilothouse.process.pings import ping_options

log = structlog.get_logger(__name__)

KiB = 1024
MiB = 1024**2


@dataclass(frozen=True, slots=True)
class Limits:
    """What one server accepts from its callers (see the module docstring)."""

    max_receive: int = 4 * MiB  # bytes of one received message
    max_send: int = 64 * MiB  # bytes of one message sent (our own answers)
    max_concurrent_streams: int = 100  # per connection
    flow_window: int | None = None  # HTTP/2 stream window; None: gRPC's (grows with BDP)
    max_connection_idle_ms: int | None = None
    max_connection_age_ms: int | None = None
    # Ping every connection this often and close it when a ping is not answered within
    # `ping_timeout_ms` (None: no pings of ours). HTTP/2 pings are answered by the peer's gRPC
    # core, with no Python on either side: the control plane's liveness of its agents.
    ping_interval_ms: int | None = None
    ping_timeout_ms: int | None = None

    def options(self) -> tuple[tuple[str, int], ...]:
        options = [
            ("grpc.max_receive_message_length", self.max_receive),
            ("grpc.max_send_message_length", self.max_send),
            ("grpc.max_concurrent_streams", self.max_concurrent_streams),
            # Clients may keep idle watches open for hours and ping; agents ping every second
            # to notice a member that stopped answering (`nodeagent.registration`).
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 500),
        ]
        if self.ping_interval_ms is not None:
            options += ping_options(
                interval_ms=self.ping_interval_ms,
                timeout_ms=self.ping_timeout_ms or self.ping_interval_ms,
            )
        if self.flow_window is not None:
            options += [
                ("grpc.http2.lookahead_bytes", self.flow_window),
                ("grpc.http2.bdp_probe", 0),
            ]
        if self.max_connection_idle_ms is not None:
            options.append(("grpc.max_connection_idle_ms", self.max_connection_idle_ms))
        if self.max_connection_age_ms is not None:
            options.append(("grpc.max_connection_age_ms", self.max_connection_age_ms))
        return tuple(options)


API_LIMITS = Limits()
# The agent's server: only the control plane may call it (mutual TLS), and SyncPods carries a
# node's whole desired state with every Service and EndpointSlice of the cluster.
AGENT_LIMITS = Limits(max_receive=16 * MiB)
JOIN_LIMITS = Limits(
    max_receive=64 * KiB,
    max_send=64 * KiB,
    max_concurrent_streams=4,
    flow_window=64 * KiB,
    max_connection_idle_ms=30_000,
    max_connection_age_ms=300_000,
)
SERVER_OPTIONS = API_LIMITS.options()


class BindError(RuntimeError):
    """The listen address cannot be bound."""


def bind(
    server: grpc.aio.Server, listen: str, credentials: grpc.ServerCredentials | None = None
) -> int:
    """Add a port for `listen` (TLS with `credentials`, else plaintext); return the port bound."""
    try:
        if credentials is None:
            port = server.add_insecure_port(listen)
        else:
            port = server.add_secure_port(listen, credentials)
    except RuntimeError as error:
        raise BindError(f"cannot listen on {listen}: {error}") from None
    if port == 0:
        raise BindError(f"cannot listen on {listen}: the address is in use or invalid")
    return port


def bound_address(listen: str, port: int) -> str:
    """`listen`'s host with the port actually bound."""
    return f"{listen.rpartition(':')[0]}:{port}"


Setup = Callable[[grpc.aio.Server], int]


class Server:
    """One grpc.aio server of a process, as a runnable named `name`.

    `setup(server)` adds the services and binds the ports (with `bind`), and returns the port
    bound for `listen`; `address` is then `listen`'s host with that port.
    """

    def __init__(
        self,
        *,
        name: str,
        listen: str,
        setup: Setup,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        grace: float,
        limits: Limits = API_LIMITS,
    ) -> None:
        self.name = name
        self.limits = limits
        self._listen = listen
        self._setup = setup
        self._interceptors = tuple(interceptors)
        self._grace = grace
        self._server: grpc.aio.Server | None = None
        self._started = False
        self._address: str | None = None

    @property
    def address(self) -> str:
        if self._address is None:
            raise RuntimeError(f"the {self.name} server has not been started")
        return self._address

    @property
    def serving(self) -> bool:
        """Started and not stopped yet."""
        return self._server is not None and self._started

    def bind(self) -> str:
        """Make the server and bind its ports (`setup`), not serving yet; the bound address.
        `start()` does this itself when it has not been done."""
        if self._server is None:
            server = grpc.aio.server(
                options=self.limits.options(), interceptors=self._interceptors or None
            )
            port = self._setup(server)
            self._server = server
            self._address = bound_address(self._listen, port)
        return self.address

    async def start(self) -> str:
        """Bind (unless `bind()` did) and serve; returns the bound address."""
        self.bind()
        assert self._server is not None
        if not self._started:
            await self._server.start()
            self._started = True
        return self.address

    async def run(self) -> None:
        await self.start()
        assert self._server is not None
        try:
            await self._server.wait_for_termination()
        finally:
            await asyncio.shield(self.stop())

    async def stop(self) -> None:
        server, self._server = self._server, None
        self._started = False
        if server is not None:
            await server.stop(self._grace)
            log.info("grpc.stopped", server=self.name, address=self._address or "")
