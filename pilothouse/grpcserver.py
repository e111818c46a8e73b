"""gRPC server plumbing shared by the control plane and the node agent.

Invariants: both processes serve with the same options (large messages, clients may keep idle
watches open and ping); a listen address that cannot be bound raises `BindError` naming the
address, never a silent port 0; the bound address keeps the host that was asked for, with the
port actually bound (port 0 resolved).
"""

from __future__ import annotations

import grpc

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
