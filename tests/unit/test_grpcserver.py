"""Binding a listen address: a taken port is a clear error, port 0 resolves to the real port."""

from __future__ import annotations

import socket

import grpc
import pytest

from pilothouse.process.grpcserver import SERVER_OPTIONS, BindError, bind, bound_address


async def test_a_taken_port_is_an_error_naming_the_address() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    listen = f"127.0.0.1:{taken.getsockname()[1]}"
    server = grpc.aio.server(options=SERVER_OPTIONS)
    try:
        with pytest.raises(BindError, match=f"cannot listen on {listen}"):
            bind(server, listen)
    finally:
        taken.close()
        await server.stop(None)


async def test_port_zero_gives_the_bound_address() -> None:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    try:
        port = bind(server, "127.0.0.1:0")
        assert port > 0, "port 0 was not resolved to the bound port"
        assert bound_address("127.0.0.1:0", port) == f"127.0.0.1:{port}"
    finally:
        await server.stop(None)
