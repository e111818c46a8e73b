"""Prometheus metrics over HTTP for either process: the address rule and the serving runnable.

Where metrics may be served (`check_listen`): nothing by default; a loopback or private
address (the node's own, on its cluster network) when `--metrics-listen HOST:PORT` names one;
a wildcard (0.0.0.0, ::) or public address only with `--metrics-public`, since the endpoint
has no authentication and tells a reader the cluster's pods, nodes and load.

Invariants: the server serves exactly one registry (the process's own, never the library's
global default with its process collectors mixed into both processes'), in the text format
`prometheus_client` writes, from a thread of its own (a scrape never waits for the event
loop); `run()` serves until cancelled and then closes the socket.
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import start_http_server

log = structlog.get_logger(__name__)


def check_listen(listen: str, *, public: bool = False) -> str:
    """`listen` as given when it may be served on, else ValueError saying why ("" is off)."""
    if not listen:
        return ""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"must be HOST:PORT, got {listen!r}")
    host = host.strip("[]")
    if host == "localhost":
        return listen
    try:
        address = ipaddress.ip_address(host or "0.0.0.0")
    except ValueError:
        raise ValueError(f"the host must be an IP address, got {host!r}") from None
    if public:
        return listen
    if address.is_unspecified:
        raise ValueError(
            f"{listen} listens on every interface, public ones too, and metrics have no "
            "authentication: name the node's address or 127.0.0.1 (or add --metrics-public)"
        )
    if not (address.is_loopback or address.is_private or address.is_link_local):
        raise ValueError(
            f"{host} is a public address and metrics have no authentication: name the node's "
            "private address or 127.0.0.1 (or add --metrics-public)"
        )
    return listen


class MetricsServer:
    """A runnable ("metrics") serving `registry` on `listen` (HOST:PORT; port 0: any)."""

    name = "metrics"

    def __init__(self, *, listen: str, registry: CollectorRegistry) -> None:
        self._listen = listen
        self._registry = registry
        self._server: object | None = None
        self._thread: threading.Thread | None = None
        self.address = ""

    def start(self) -> str:
        host, _, port = self._listen.rpartition(":")
        server, thread = start_http_server(
            int(port), addr=host.strip("[]"), registry=self._registry
        )
        self._server, self._thread = server, thread
        bound = server.server_address  # type: ignore[attr-defined]
        self.address = f"{host}:{bound[1]}"
        log.info("metrics.serving", address=self.address)
        return self.address

    async def run(self) -> None:
        if self._server is None:
            self.start()
        try:
            await asyncio.Event().wait()
        finally:
            self.stop()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()  # type: ignore[attr-defined]
            server.server_close()  # type: ignore[attr-defined]
