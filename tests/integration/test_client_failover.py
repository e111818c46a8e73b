"""A client given several control-plane members keeps working when one of them is gone
(connection refused) or frozen (accepts connections, never answers), and sticks to the member
that answered."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest

from pilothouse.client import Client
from pilothouse.client.failover import ATTEMPT_TIMEOUT
from pilothouse.kinds import Kind
from tests import factories

TIMEOUT = 20.0  # the client's deadline per call
assert TIMEOUT > 2 * ATTEMPT_TIMEOUT  # a frozen member leaves time for the next one


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
    members = [_refused(), frozen, live]
    async with Client(",".join(members), timeout=TIMEOUT) as client:
        # Answered at all: the frozen member cost one attempt (ATTEMPT_TIMEOUT), not the
        # call's whole deadline, which would have left none for the live member.
        await client.apply(factories.node(name="n1"))
        current = client._members.current  # the member the next call goes to first
        assert members[current] == live, f"the client went back to {members[current]}"
        listed = await client.list(Kind.NODE)
    assert [n.metadata.name for n in listed.items] == ["n1"]
