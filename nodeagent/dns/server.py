"""The node's DNS server for its pods: UDP and TCP on one address, answers from plain data.

`DnsServer(host=..., port=53, resolv_conf=...)` binds both transports on `host` with
IP_FREEBIND, so it can start before the address exists (the pod bridge's gateway address
appears with the node's first pod). `update(records)` swaps the cluster zone whole; queries
in flight finish on the zone they started with. Names outside the cluster go to the resolvers
of `resolv_conf` (see `dns.upstream`).

Invariants: the responder (and with it dnspython, ~5 MiB per agent) is made on the first
query, so a node whose pods never ask costs nothing for it; every query is answered on its
own task, so a slow upstream never delays cluster answers; `close()` stops both listeners
and cancels what is in flight; a TCP connection serves queries one after another (RFC 7766
framing) and is closed after `TCP_IDLE_S` idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import TYPE_CHECKING, Any

import structlog

from nodeagent.dns.records import ClusterRecords, Zone

if TYPE_CHECKING:
    from nodeagent.dns.responder import Responder

log = structlog.get_logger(__name__)

TCP_IDLE_S = 10.0
_IP_FREEBIND = 15  # linux/in.h; not exported by Python's socket module


class DnsServer:
    """Serve the cluster zone on `host`:`port` (UDP and TCP); port 0 picks a free one."""

    def __init__(
        self,
        *,
        host: str,
        port: int = 53,
        resolv_conf: str | os.PathLike[str] | None = "/etc/resolv.conf",
        records: ClusterRecords | None = None,
        upstream_port: int = 53,
        upstream_timeout_s: float = 2.0,
    ) -> None:
        self.host = host
        self.port = port
        self._resolv_conf = resolv_conf
        self._upstream_port = upstream_port
        self._upstream_timeout_s = upstream_timeout_s
        self._zone = Zone.build(records or ClusterRecords())
        self._responder: Responder | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def update(self, records: ClusterRecords) -> None:
        """Answer from `records` from now on."""
        self._zone = Zone.build(records)
        if self._responder is not None:
            self._responder.zone = self._zone

    @property
    def responder(self) -> Responder:
        """What answers queries, made on the first one (after `start`: the upstream must
        never be this server's own address)."""
        if self._responder is None:
            from nodeagent.dns.responder import Responder
            from nodeagent.dns.upstream import Upstream

            upstream = None
            if self._resolv_conf is not None:
                upstream = Upstream(
                    self._resolv_conf,
                    port=self._upstream_port,
                    timeout_s=self._upstream_timeout_s,
                    exclude=frozenset({(self.host, self.port)}),
                )
            self._responder = Responder(self._zone, upstream)
        return self._responder

    async def start(self) -> tuple[str, int]:
        """Bind UDP and TCP; the address served (with the port chosen when 0 was asked)."""
        udp, tcp = _bind_pair(self.host, self.port)
        self.port = udp.getsockname()[1]
        self._responder = None  # made again on the next query, excluding this address
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=udp)
        self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp)
        log.info("dns.started", address=f"{self.host}:{self.port}")
        return self.address

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._tcp is not None:
            await self._tcp.wait_closed()
        self._udp = self._tcp = None
        log.info("dns.stopped", address=f"{self.host}:{self.port}")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_udp(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = await self.responder.respond(data, tcp=False)
        if reply is not None and self._udp is not None:
            self._udp.sendto(reply, addr)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE_S):
                    size = int.from_bytes(await reader.readexactly(2))
                async with asyncio.timeout(TCP_IDLE_S):
                    wire = await reader.readexactly(size)
                reply = await self.responder.respond(wire, tcp=True)
                if reply is None:
                    break
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server._spawn(self.server._answer_udp(data, addr))


def _bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on the same address and port (a free pair when port is 0)."""
    for _ in range(20 if port == 0 else 1):
        udp = _socket(socket.SOCK_DGRAM)
        tcp = _socket(socket.SOCK_STREAM)
        try:
            udp.bind((host, port))
            tcp.bind((host, udp.getsockname()[1]))
            tcp.listen(128)
        except OSError:
            udp.close()
            tcp.close()
            if port != 0:
                raise
            continue
        return udp, tcp
    raise OSError(f"no port free for both UDP and TCP on {host}")


def _socket(kind: socket.SocketKind) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind)
    sock.setsockopt(socket.SOL_IP, _IP_FREEBIND, 1)
    if kind == socket.SOCK_STREAM:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setblocking(False)
    return sock
