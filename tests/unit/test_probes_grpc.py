"""The grpc probe's health check against a real gRPC server (grpcio, on loopback): SERVING is
healthy; NOT_SERVING, an unknown service and a server without the health service are not,
each in the kubelet's words."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from nodeagent.probes import grpchealth

SERVING, NOT_SERVING = b"\x08\x01", b"\x08\x02"


@pytest.fixture
async def server() -> AsyncIterator[int]:
    """A gRPC server on loopback whose health says SERVING for "" and NOT_SERVING for "db"."""

    async def check(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        service = request[2:].decode() if request else ""
        if service == "":
            return SERVING
        if service == "db":
            return NOT_SERVING
        await context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return b""

    handler = grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health",
        {
            "Check": grpc.unary_unary_rpc_method_handler(
                check, request_deserializer=None, response_serializer=None
            )
        },
    )
    srv = grpc.aio.server()
    srv.add_generic_rpc_handlers((handler,))
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    yield port
    await srv.stop(None)


async def call(port: int, service: str = "") -> tuple[bool, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await asyncio.wait_for(
            grpchealth.check(reader, writer, authority=f"127.0.0.1:{port}", service=service), 5
        )
    finally:
        writer.close()


async def test_serving_is_healthy(server: int) -> None:
    assert await call(server) == (True, "")


async def test_not_serving_says_so(server: int) -> None:
    assert await call(server, "db") == (False, 'service unhealthy (responded with "NOT_SERVING")')


async def test_an_unknown_service_fails(server: int) -> None:
    healthy, why = await call(server, "nope")
    assert not healthy and "without a status" in why
