"""Node leases: a heartbeat one control-plane member accepted is seen by every member within a
flush interval, with its age kept; what was stored before a member started does not count."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from controlplane.nodes.leases import PREFIX, NodeLeases
from controlplane.store.memory import MemoryStore
from tests.unit.waiting import eventually


@contextlib.asynccontextmanager
async def running(*members: NodeLeases) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(m.run()) for m in members]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_beat_on_one_member_is_seen_by_the_others_and_writes_are_coalesced() -> None:
    store = MemoryStore()
    await store.create(PREFIX + "old", b'{"beats": {"n1": 0.0}}')  # from a run long ago
    one = NodeLeases(store, member="cp-1", flush_interval=0.1)
    two = NodeLeases(store, member="cp-2", flush_interval=0.1)
    async with running(one, two):
        await asyncio.sleep(0.3)
        assert two.last_seen("n1") is None, "a stored lease from before the start counted"
        before = store.revision
        for node in ("n1", "n2", "n3"):
            one.beat(node)
        heard = time.time()
        await eventually(lambda: two.last_seen("n3") is not None, "cp-2 heard of n3")
        assert abs(two.last_seen("n1") - heard) < 0.3  # type: ignore[operator]
        await asyncio.sleep(0.3)
        assert store.revision - before == 1, "three beats took more than one write"
        assert one.last_seen("n2") is not None


async def test_nodes_heard_through_open_streams_are_published_at_every_flush() -> None:
    store = MemoryStore()
    one = NodeLeases(store, member="cp-1", flush_interval=0.1)
    two = NodeLeases(store, member="cp-2", flush_interval=0.1)
    streaming = ["n1"]
    one.follow(lambda: streaming)
    async with running(one, two):
        await eventually(lambda: two.last_seen("n1") is not None, "cp-2 heard of n1")
        first = two.last_seen("n1")
        # No beat at all, only the open stream: cp-2 keeps hearing n1 as time goes on.
        await eventually(
            lambda: two.last_seen("n1") > first + 0.3,  # type: ignore[operator]
            "cp-2 stopped hearing a node whose stream is open on cp-1",
        )
        streaming.clear()  # the stream ended: cp-2's view of n1 falls behind (10 flushes)
        await eventually(
            lambda: time.time() - two.last_seen("n1") > 1.0,  # type: ignore[operator]
            "cp-2 went on hearing n1 after its stream ended",
        )
