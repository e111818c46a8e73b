"""A client given several control-plane members keeps working when one of them is gone
(connection refused) or frozen (accepts connections, never answers), and sticks to the member
that answered."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

import pytest

from pilothouse.client import Client
from pilothouse.client.failover import ATTEMPT_TIMEOUT
from pilothouse.kinds import Kind
from tests import factories


def _refused() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"  # closed again: nothing listens


@pytest.fixture
async def frozen() -> AsyncIterator[str]:
    """A member that accepts connections and never answers, like a SIGSTOPped process."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()


async def test_calls_fail_over_to_a_member_that_answers(memory_control_plane, frozen) -> None:  # type: ignore[no-untyped-def]
    live = memory_control_plane.address
    async with Client(f"{_refused()},{frozen},{live}", timeout=20) as client:
        started = time.monotonic()
        await client.apply(factories.node(name="n1"))
        first = time.monotonic() - started
        assert first < ATTEMPT_TIMEOUT + 2, f"failing over took {first:.1f} s"
        started = time.monotonic()
        listed = await client.list(Kind.NODE)
        again = time.monotonic() - started
    assert [n.metadata.name for n in listed.items] == ["n1"]
    assert again < 1.0, f"the next call did not go straight to the live member ({again:.1f} s)"
