"""gRPC servers of the control plane and the node agent: options, binding, start and stop.

Invariants:
- Both processes serve with the same options (large messages, clients may keep idle watches
  open and ping).
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

import grpc
import structlog

log = structlog.get_logger(__name__)

SERVER_OPTIONS = (
    ("grpc.max_receive_message_length", 64 * 1024**2),
    ("grpc.max_send_message_length", 64 * 1024**2),
    # Clients may keep idle watches open for hours; let them ping.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
)


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
    ) -> None:
        self.name = name
        self._listen = listen
        self._setup = setup
        self._interceptors = tuple(interceptors)
        self._grace = grace
        self._server: grpc.aio.Server | None = None
        self._address: str | None = None

    @property
    def address(self) -> str:
        if self._address is None:
            raise RuntimeError(f"the {self.name} server has not been started")
        return self._address

    @property
    def serving(self) -> bool:
        """Started and not stopped yet."""
        return self._server is not None

    async def start(self) -> str:
        """Bind and serve; returns the bound address."""
        server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=self._interceptors or None)
        port = self._setup(server)
        await server.start()
        self._server = server
        self._address = bound_address(self._listen, port)
        return self._address

    async def run(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        try:
            await self._server.wait_for_termination()
        finally:
            await asyncio.shield(self.stop())

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop(self._grace)
            log.info("grpc.stopped", server=self.name, address=self._address or "")
